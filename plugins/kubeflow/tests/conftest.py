"""Each test runs in its own working directory with the KUBEFLOW_* variables cleared; the status
servers it starts (status_server.py) listen on 127.0.0.1 and are stopped when it ends."""

from __future__ import annotations

from pathlib import Path

import pytest
from status_server import TOKEN, Pki, StatusServer, check_body, make_pki, start

from hooktrain.testing import environment

ENV = ("KUBEFLOW_TRAINER_SERVER_URL", "KUBEFLOW_TRAINER_SERVER_TOKEN",
       "KUBEFLOW_TRAINER_SERVER_CA_CERT", "DISABLE_KUBEFLOW_INTEGRATION")


@pytest.fixture(scope="session", autouse=True)
def no_proxy_for_localhost():
    """urllib honours *_proxy: never send the tests' 127.0.0.1 traffic through a proxy."""
    with environment({"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}):
        yield


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr("hooktrain_kubeflow._SAID_OFF", set())  # "switched off" said per test
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")  # the plugin strips the newline
    return path


@pytest.fixture
def status_server(pki: Pki):
    """``status_server(tls="trusted" | "rogue" | None, delay=0.0)`` -> a running StatusServer."""
    stops, servers = [], []

    def run(tls: str | None = "trusted", delay: float = 0.0) -> StatusServer:
        server, stop = start(pki, tls, delay)
        stops.append(stop)
        servers.append(server)
        return server

    yield run
    for stop in stops:
        stop()
    for server in servers:  # every body any test received is a valid status request
        for received in server.received:
            check_body(received.body)
