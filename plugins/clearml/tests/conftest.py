"""ClearML offline for the whole session (docs/integrations/clearml.md), set before clearml is
first imported, and a guard that fails any test whose process tries to reach beyond 127.0.0.1.

clearml reads its configuration file once per process, at its first use: ``CLEARML_CONFIG_FILE``
points at a file of the session's (so no ``~/clearml.conf`` with credentials can make a test go
online) which keeps the reporter in a thread (its subprocess default costs ~15 s per task
closed). ``CLEARML_CACHE_DIR``, which holds the offline sessions, is read at each use: every
test gets its own under its temporary directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

CONFIG = "sdk { development { report_use_subprocess: false } }\n"
#: What may change where a test's task goes: removed for the session.
CLEARML_VARIABLES = [
    f"{prefix}_{name}" for prefix in ("CLEARML", "TRAINS")
    for name in ("API_ACCESS_KEY", "API_SECRET_KEY", "AUTH_TOKEN", "API_HOST", "WEB_HOST",
                 "FILES_HOST", "PROJECT", "TASK", "LOG_MODEL", "TASK_ID", "PROC_MASTER_ID",
                 "OFFLINE_MODE", "CACHE_DIR", "CONFIG_FILE", "DEFERRED_TASK_INIT")
]


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


@pytest.fixture(autouse=True)
def offline(no_network: list[str]) -> list[str]:
    """No network beyond 127.0.0.1 (hooktrain.testing's guard; attempts fail the test)."""
    return no_network


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test in its own directory, with its own ClearML cache; no network tried in it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLEARML_CACHE_DIR", str(tmp_path / "clearml-cache"))
    yield tmp_path
    from clearml import Task

    leftover = Task.current_task()
    assert leftover is None, f"the test left ClearML task {leftover.id} open"
