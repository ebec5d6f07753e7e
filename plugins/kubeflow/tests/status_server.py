"""A stand-in for the Kubeflow Trainer status server, and the certificates it needs.

:func:`make_pki` writes two throw-away CAs with ``cryptography``: one the plugin is told to
trust, which signs the server's certificate for 127.0.0.1, and an unrelated one whose server
certificate the plugin must reject. :func:`start` runs an HTTP(S) server on 127.0.0.1 in a
thread; it records every POST (arrival time, path, headers, JSON body) and can answer slowly or
with an error code. TLS handshakes happen in the request threads, so a failed one is recorded
and never blocks the server.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

STATUS_PATH = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/ns/trainjobs/job/status"
TOKEN = "test-sa-token"  # what the token file holds


# ---- certificates --------------------------------------------------------------------------


@dataclass
class Pki:
    ca_cert: Path                    # the CA the plugin is told to trust
    server: tuple[Path, Path]        # (cert, key) signed by that CA
    rogue_server: tuple[Path, Path]  # (cert, key) signed by another CA


def _cert(subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(root: Path) -> Pki:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    def write(name: str, obj: Any) -> Path:
        if hasattr(obj, "private_bytes"):
            data = obj.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        else:
            data = obj.public_bytes(serialization.Encoding.PEM)
        (root / name).write_bytes(data)
        return root / name

    paths: dict[str, Path] = {}
    for name in ("trusted", "rogue"):
        ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), \
            ec.generate_private_key(ec.SECP256R1())
        ca = _cert(f"{name} test CA", ca_key, f"{name} test CA", ca_key, ca=True)
        server = _cert("127.0.0.1", server_key, f"{name} test CA", ca_key, ca=False)
        paths[f"{name}-ca"] = write(f"{name}-ca.crt", ca)
        paths[f"{name}-crt"] = write(f"{name}-server.crt", server)
        paths[f"{name}-key"] = write(f"{name}-server.key", server_key)
    return Pki(paths["trusted-ca"], (paths["trusted-crt"], paths["trusted-key"]),
               (paths["rogue-crt"], paths["rogue-key"]))


# ---- the protocol --------------------------------------------------------------------------


def check_body(body: dict[str, Any]) -> None:
    """Parses as Kubeflow's own UpdateTrainJobStatusRequest model (strict ints, string metric
    values) and keeps the CRD's rules: 0-100, int32, non-empty strings, RFC 3339 time."""
    from kubeflow_trainer_api.models import TrainerV1alpha1UpdateTrainJobStatusRequest

    parsed = TrainerV1alpha1UpdateTrainJobStatusRequest.from_dict(body).trainer_status
    status = body["trainerStatus"]
    assert set(body) == {"trainerStatus"}
    assert set(status) <= {"progressPercentage", "estimatedRemainingSeconds", "metrics",
                           "lastUpdatedTime"}
    assert parsed.progress_percentage == status.get("progressPercentage")
    assert parsed.estimated_remaining_seconds == status.get("estimatedRemainingSeconds")
    assert [(m.name, m.value) for m in parsed.metrics] == [
        (m["name"], m["value"]) for m in status["metrics"]]
    assert parsed.last_updated_time.utcoffset() == datetime.timedelta(0)
    if "progressPercentage" in status:
        percentage = status["progressPercentage"]
        assert type(percentage) is int and 0 <= percentage <= 100
    if "estimatedRemainingSeconds" in status:
        eta = status["estimatedRemainingSeconds"]
        assert type(eta) is int and 0 <= eta < 2**31
    for metric in status["metrics"]:
        assert set(metric) == {"name", "value"}
        assert isinstance(metric["name"], str) and metric["name"]
        assert isinstance(metric["value"], str) and metric["value"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", status["lastUpdatedTime"])
    datetime.datetime.strptime(status["lastUpdatedTime"], "%Y-%m-%dT%H:%M:%SZ")


# ---- the server ----------------------------------------------------------------------------


@dataclass
class Received:
    at: float  # time.monotonic() when the request arrived
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def status(self) -> dict[str, Any]:
        return self.body["trainerStatus"]

    @property
    def metrics(self) -> dict[str, str]:
        return {m["name"]: m["value"] for m in self.status.get("metrics", [])}


@dataclass
class StatusServer:
    url: str = ""
    received: list[Received] = field(default_factory=list)
    #: seconds to sleep before answering each request
    delay: float = 0.0
    #: the HTTP code for the n-th request (1-based); default 200
    answer: Callable[[int], int] = lambda n: 200
    #: errors from requests that failed before their POST was read (TLS handshakes)
    handshake_errors: list[str] = field(default_factory=list)


def start(pki: Pki, tls: str | None = "trusted",
          delay: float = 0.0) -> tuple[StatusServer, Callable[[], None]]:
    """A running server (``tls``: ``"trusted"``, ``"rogue"`` or ``None`` for plain HTTP) and
    the function that stops it."""
    record = StatusServer(delay=delay)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            arrived = time.monotonic()
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            record.received.append(Received(arrived, self.path, dict(self.headers), body))
            if record.delay:
                time.sleep(record.delay)
            code = record.answer(len(record.received))
            payload = b"" if code == 200 else b'{"message": "refused by the test server"}'
            self.send_response(code)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            record.handshake_errors.append(repr(sys.exc_info()[1]))

    server = Server(("127.0.0.1", 0), Handler)
    scheme = "http"
    if tls is not None:
        cert, key = pki.server if tls == "trusted" else pki.rogue_server
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True,
                                            do_handshake_on_connect=False)
        scheme = "https"
    record.url = f"{scheme}://127.0.0.1:{server.server_port}{STATUS_PATH}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(10)

    return record, stop
