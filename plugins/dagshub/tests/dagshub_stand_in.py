"""A DagsHub stand-in on 127.0.0.1: a real ``mlflow server`` behind DagsHub's URI shape, and a
small stub of the two web API calls ``dagshub.init`` makes (DagsHub itself cannot be reached).

* ``mlflow server`` (sqlite backend, its own process group, stopped by PID) runs with
  ``--static-prefix /ci-user/ci-repo.mlflow``;
* the stub answers ``GET /api/v1/user`` and ``GET /api/v1/repos/ci-user/ci-repo`` and forwards
  ``/ci-user/ci-repo.mlflow/*`` to that server, so ``dagshub.init(host=<stub>)`` yields exactly
  the tracking URI it yields on dagshub.com, and every request is recorded.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

OWNER, REPO, TOKEN = "ci-user", "ci-repo", "dummy-token"
_USER = {"id": 1, "login": OWNER, "username": OWNER, "full_name": "CI", "avatar_url": None,
         "public_email": None, "website": None, "company": None, "description": None}
_REPO = {"id": 1, "owner": _USER, "name": REPO, "full_name": f"{OWNER}/{REPO}", "description": "",
         "private": True, "fork": False, "parent": None, "empty": False, "mirror": False,
         "size": 0, "html_url": "", "ssh_url": None, "clone_url": "", "website": None,
         "stars_count": 0, "forks_count": 0, "watchers_count": 0, "open_issues_count": 0,
         "default_branch": "main", "created_at": "", "updated_at": "", "permissions": None}


class DagsHubStandIn:
    """The MLflow server and the stub; ``host`` is what ``dagshub.init(host=...)`` takes."""

    def __init__(self, root: Path) -> None:
        self.mlflow_port, self.port = free_port(), free_port()
        self.log = root / "server.log"
        self.server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
             "--port", str(self.mlflow_port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{root}/server.db",
             "--artifacts-destination", str(root / "artifacts"),
             "--static-prefix", f"/{OWNER}/{REPO}.mlflow"],
            cwd=root, stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                 "MLFLOW_DISABLE_TELEMETRY": "true"})
        self.host = f"http://127.0.0.1:{self.port}"
        self.tracking_uri = f"{self.host}/{OWNER}/{REPO}.mlflow"  # dagshub.init's shape
        self.requests: list[tuple[str, str, str]] = []  # method, path, Authorization scheme
        self.stub = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        threading.Thread(target=self.stub.serve_forever, daemon=True).start()

    def _handler(self) -> type:
        stand_in = self

        class Stub(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def handle_one(self) -> None:
                path = self.path.split("?")[0]
                auth = self.headers.get("Authorization", "")
                stand_in.requests.append((self.command, path, auth.split(" ")[0]))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if path.startswith(f"/{OWNER}/{REPO}.mlflow/"):
                    code, data, kind = stand_in._forward(self, body)
                elif path in (f"/api/v1/repos/{OWNER}/{REPO}", "/api/v1/user"):
                    payload = _USER if path.endswith("/user") else _REPO
                    ok = auth == f"Bearer {TOKEN}"
                    code, data, kind = (200 if ok else 401), json.dumps(
                        payload if ok else {}).encode(), "application/json"
                else:
                    code, data, kind = 404, b"{}", "application/json"
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one

        return Stub

    def _forward(self, request: http.server.BaseHTTPRequestHandler,
                 body: bytes) -> tuple[int, bytes, str]:
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "authorization", "content-length")}
        forwarded = urllib.request.Request(f"http://127.0.0.1:{self.mlflow_port}{request.path}",
                                           data=body or None, method=request.command,
                                           headers=headers)
        try:
            with urllib.request.urlopen(forwarded, timeout=30) as response:
                return response.status, response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as error:
            return error.code, error.read(), error.headers.get("Content-Type", "")
        except OSError as error:  # the server is gone
            return 502, str(error).encode(), "text/plain"

    def wait(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.server.poll() is None:
            try:
                direct = f"http://127.0.0.1:{self.mlflow_port}/{OWNER}/{REPO}.mlflow/health"
                with urllib.request.urlopen(direct, timeout=1) as reply:
                    if reply.read() == b"OK":
                        self.requests.clear()
                        return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"mlflow server did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.stub.shutdown()
        self.stub.server_close()
        if self.server.poll() is None:
            os.killpg(self.server.pid, signal.SIGTERM)  # its own process group, by PID
            try:
                self.server.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.server.pid, signal.SIGKILL)
                self.server.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
