"""azureml-core outside Azure ML for the whole session: no AZUREML_* job variables, so
``Run.get_context()`` is the offline run, which prints every call; no network beyond 127.0.0.1."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["hooktrain.testing"]


@pytest.fixture(scope="session", autouse=True)
def outside_azure_ml() -> Iterator[None]:
    """A developer's shell or a CI runner inside Azure ML may carry a job's variables."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("AZUREML_"):
                mp.delenv(name)
        yield


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # The plugin announces the offline fallback once per process; each test sees it afresh.
    import hooktrain_azure_ml

    monkeypatch.setattr(hooktrain_azure_ml, "_said_offline", False)


def _local(host: object) -> bool:
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def network_attempts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Refuses every connection and name lookup beyond 127.0.0.1; any attempt fails the test."""
    attempts: list[str] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
            attempts.append(f"connect {address}")
            raise OSError(f"no network in these tests: {address}")

    def connect(sock: socket.socket, address: object) -> None:
        check(sock, address)
        return real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: object) -> int:
        check(sock, address)
        return real_connect_ex(sock, address)

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> list:
        name = host.decode() if isinstance(host, bytes) else host
        if not _local(name):
            attempts.append(f"lookup {name}")
            raise socket.gaierror(socket.EAI_NONAME, f"no network in these tests: {name}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts
    assert attempts == [], "the test tried to reach the network"
