"""ClearML offline for the whole session (INTEGRATIONS.md), set before clearml is first imported,
and a guard that fails any test whose process tries to reach beyond 127.0.0.1.

clearml reads its configuration file once per process, at its first use: ``CLEARML_CONFIG_FILE``
points at a file of the session's (so no ``~/clearml.conf`` with credentials can make a test go
online) which keeps the reporter in a thread (its subprocess default costs ~15 s per task
closed). ``CLEARML_CACHE_DIR``, which holds the offline sessions, is read at each use: every
test gets its own under its temporary directory.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["hooktrain.testing"]

CONFIG = "sdk { development { report_use_subprocess: false } }\n"
#: What may change where a test's task goes: removed for the session.
CLEARML_VARIABLES = [
    f"{prefix}_{name}" for prefix in ("CLEARML", "TRAINS")
    for name in ("API_ACCESS_KEY", "API_SECRET_KEY", "AUTH_TOKEN", "API_HOST", "WEB_HOST",
                 "FILES_HOST", "PROJECT", "TASK", "LOG_MODEL", "TASK_ID", "PROC_MASTER_ID",
                 "OFFLINE_MODE", "CACHE_DIR", "CONFIG_FILE", "DEFERRED_TASK_INIT")
]
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
#: Every connection or name lookup that was refused: (what, where).
REFUSED: list[tuple[str, Any]] = []


def _local(address: Any) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    return not isinstance(host, str) or host in LOOPBACK  # AF_UNIX paths are strings too


@pytest.fixture(scope="session", autouse=True)
def offline_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("clearml")
    (root / "clearml.conf").write_text(CONFIG)
    with pytest.MonkeyPatch.context() as patch:
        for name in CLEARML_VARIABLES:
            patch.delenv(name, raising=False)
        patch.setenv("CLEARML_OFFLINE_MODE", "1")
        patch.setenv("CLEARML_CONFIG_FILE", str(root / "clearml.conf"))
        patch.setenv("CLEARML_CACHE_DIR", str(root / "cache"))
        yield root


@pytest.fixture(scope="session", autouse=True)
def no_network() -> Iterator[None]:
    """Refuse (and record) every connection and DNS lookup that is not to the loopback."""
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex
    getaddrinfo = socket.getaddrinfo

    def guarded_connect(self: socket.socket, address: Any) -> Any:
        if self.family != socket.AF_UNIX and not _local(address):
            REFUSED.append(("connect", address))
            raise ConnectionRefusedError(f"test guard: no network beyond 127.0.0.1 ({address})")
        return connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> Any:
        if self.family != socket.AF_UNIX and not _local(address):
            REFUSED.append(("connect_ex", address))
            return 111  # ECONNREFUSED
        return connect_ex(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _local(host if isinstance(host, str) else host.decode()):
            REFUSED.append(("getaddrinfo", host))
            raise socket.gaierror(f"test guard: no name lookups ({host})")
        return getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", guarded_connect)
        patch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
        patch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
        yield


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test in its own directory, with its own ClearML cache; no network tried in it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLEARML_CACHE_DIR", str(tmp_path / "clearml-cache"))
    before = len(REFUSED)
    yield tmp_path
    from clearml import Task

    leftover = Task.current_task()
    assert leftover is None, f"the test left ClearML task {leftover.id} open"
    assert REFUSED[before:] == [], "something tried to reach the network"
