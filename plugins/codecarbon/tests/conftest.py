"""codecarbon reads CODECARBON_* variables and ``.codecarbon.config`` in $HOME and the working
directory: every test runs in its own temporary directory with its own $HOME and none of the
machine's CODECARBON_* variables, codecarbon's chatter down to errors, and a guard that fails
the test if anything tries to reach a host other than this machine."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

pytest_plugins = ["hooktrain.testing"]

OFFLINE = {
    "CODECARBON_LOG_LEVEL": "error",  # its INFO lines and per-run warnings
}
LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost", None, ""}


@pytest.fixture(scope="session", autouse=True)
def offline_environment():
    saved = {key: value for key, value in os.environ.items()
             if key.lower().startswith("codecarbon_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(OFFLINE)
    yield
    for key in OFFLINE:
        os.environ.pop(key, None)
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # no ~/.codecarbon.config of the machine's
    monkeypatch.chdir(tmp_path)             # nor ./.codecarbon.config
    return tmp_path


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch):
    """Refuse (and remember) every DNS lookup or connection to a host that is not local.

    codecarbon swallows its own errors, so a refused call would not fail the test by itself:
    the attempts are checked after the test.
    """
    attempts: list[str] = []
    getaddrinfo, connect, connect_ex = socket.getaddrinfo, socket.socket.connect, \
        socket.socket.connect_ex

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host not in LOCAL_HOSTS:
            attempts.append(f"getaddrinfo({host!r})")
            raise socket.gaierror(f"network refused in tests: {host}")
        return getaddrinfo(host, *args, **kwargs)

    def check(address):
        host = address[0] if isinstance(address, tuple) else None
        if isinstance(address, tuple) and host not in LOCAL_HOSTS:
            attempts.append(f"connect({address!r})")
            raise ConnectionRefusedError(f"network refused in tests: {address}")

    def guarded_connect(self, address):
        check(address)
        return connect(self, address)

    def guarded_connect_ex(self, address):
        check(address)
        return connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    yield attempts
    assert attempts == [], f"tried to reach the network: {attempts}"
