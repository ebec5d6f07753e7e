"""``mlflow server`` on a free 127.0.0.1 port with a sqlite backend, in its own process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


class MlflowServer:
    """``mlflow server`` on a free 127.0.0.1 port, sqlite backend, in its own process group."""

    def __init__(self, root: Path, static_prefix: str = "") -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}{static_prefix}"
        command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
                   "--port", str(self.port), "--workers", "1",
                   "--backend-store-uri", f"sqlite:///{root}/server.db",
                   "--artifacts-destination", str(root / "artifacts")]
        if static_prefix:
            command += ["--static-prefix", static_prefix]
        self.log = root / "server.log"
        self.process = subprocess.Popen(
            command, cwd=root, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() kills it and its workers
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                 "MLFLOW_DISABLE_TELEMETRY": "true"},
        )

    def wait(self, timeout: float = 90.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as response:
                    if response.read() == b"OK":
                        return self.uri
            except OSError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"mlflow server did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
