"""Comet offline for the whole session, each test in its own working directory, no network."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["hooktrain.testing"]

#: Comet's own variables a developer's shell may have; none of them may leak into the tests.
COMET_VARIABLES = (
    "COMET_API_KEY", "COMET_MODE", "COMET_START_ONLINE", "COMET_START_MODE", "COMET_PROJECT_NAME",
    "COMET_WORKSPACE", "COMET_LOG_ASSETS", "COMET_OFFLINE_DIRECTORY", "COMET_EXPERIMENT_KEY",
    "COMET_URL_OVERRIDE", "COMET_DISABLE_AUTO_LOGGING", "COMET_AUTO_LOG_ENV_DETAILS",
)


@pytest.fixture(scope="session", autouse=True)
def comet_offline_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """INTEGRATIONS.md's offline set-up: no API key, no ~/.comet.config, no sentry, no CO2."""
    with pytest.MonkeyPatch.context() as mp:
        for name in COMET_VARIABLES:
            mp.delenv(name, raising=False)
        mp.setenv("COMET_CONFIG", str(tmp_path_factory.mktemp("comet") / "no.comet.config"))
        mp.setenv("COMET_ERROR_TRACKING_ENABLE", "false")
        mp.setenv("COMET_AUTO_LOG_CO2", "false")
        yield


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """comet writes offline archives to ./.cometml-runs by default."""
    monkeypatch.chdir(tmp_path)


def _local(host: str) -> bool:
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
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
