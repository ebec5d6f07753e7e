"""The test kit's fixtures, in every pytest run of an environment where hooktrain is installed.

pytest loads this module through hooktrain's ``pytest11`` entry point, named ``hooktrain``, so a
plugin's tests ask for ``run_training``, ``hook_recorder`` or ``no_network`` with no
``conftest.py`` line; ``pytest -p no:hooktrain`` turns it off. The kit itself (``TinyRegressor``,
``HookRecorder``, ...) is :mod:`hooktrain.testing`.

Every pytest session of such an environment imports this module, including those that never
touch hooktrain, so it imports nothing heavy: the fixtures import :mod:`hooktrain.testing` (and
with it torch and the Trainer) when a test asks for them.

``pytest_plugins = ["hooktrain.testing"]`` in an older ``conftest.py`` is harmless, and under
``-p no:hooktrain`` it is how one directory opts back in (that module registers this one when
the entry point has not). Do not name this module in ``pytest_plugins``: pytest refuses to
register a module its entry point already registered under another name.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from hooktrain.testing import HookRecorder, TrainingRun


def _loopback(host: Any) -> bool:
    if host in ("localhost", "", None) or not isinstance(host, (str, bytes)):
        return True
    name = host.decode() if isinstance(host, bytes) else host
    try:
        return ipaddress.ip_address(name.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Refuse every connection and name lookup beyond the loopback; fail the test if any came.

    Tracking libraries often swallow their own network errors, so a refused attempt would not
    fail a test by itself: the attempts are collected (the fixture's value) and checked after
    the test. Use it from a plugin's ``conftest.py`` with an autouse fixture that requests it.
    """
    attempts: list[str] = []
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex
    getaddrinfo = socket.getaddrinfo

    def refuse(sock: socket.socket, address: Any) -> bool:
        inet = sock.family in (socket.AF_INET, socket.AF_INET6)
        if inet and isinstance(address, tuple) and not _loopback(address[0]):
            attempts.append(f"connect {address}")
            return True
        return False

    def guarded_connect(sock: socket.socket, address: Any) -> Any:
        if refuse(sock, address):
            raise ConnectionRefusedError(f"no network beyond 127.0.0.1 in tests: {address}")
        return connect(sock, address)

    def guarded_connect_ex(sock: socket.socket, address: Any) -> Any:
        return 111 if refuse(sock, address) else connect_ex(sock, address)  # ECONNREFUSED

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _loopback(host):
            attempts.append(f"lookup {host}")
            raise socket.gaierror(socket.EAI_NONAME, f"no name lookups in tests: {host}")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    yield attempts
    assert attempts == [], f"the test tried to reach the network: {attempts}"


@pytest.fixture
def hook_recorder() -> HookRecorder:
    """A fresh :class:`~hooktrain.testing.HookRecorder` to pass in ``callbacks``."""
    from hooktrain.testing import HookRecorder

    return HookRecorder()


@pytest.fixture(name="run_training")
def run_training_fixture(tmp_path: Path) -> Callable[..., TrainingRun]:
    """:func:`~hooktrain.testing.run_training` writing into the test's temporary directory."""
    from hooktrain.testing import run_training

    def run(**kwargs: Any) -> TrainingRun:
        kwargs.setdefault("output_dir", tmp_path / "run")
        return run_training(**kwargs)

    return run
