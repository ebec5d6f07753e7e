"""flytekit runs a called ``@task`` in process, in a local sandbox it creates when first imported
(``mkdtemp(prefix="flyte-")`` under ``$TMPDIR``). Here that sandbox is a temporary directory of
the test session, made before any test module imports flytekit and removed at the end.
flytekit needs no account, configuration or network for local execution.

The ``attempt`` fixture makes the next task execution an attempt of a retried task; running code
in a task, and reading back what it left, is ``flytetasks.py``'s."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

SANDBOX = Path(tempfile.mkdtemp(prefix="hooktrain-flyte-tests-"))


def _import_flytekit_into(sandbox: Path) -> None:
    saved = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(sandbox)
    tempfile.tempdir = None  # tempfile reads TMPDIR again
    try:
        import flytekit  # noqa: F401  (the sandbox is made now, once per process)
    finally:
        if saved is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = saved
        tempfile.tempdir = None


_import_flytekit_into(SANDBOX)


@pytest.fixture(scope="session", autouse=True)
def flyte_sandbox() -> Iterator[Path]:
    """Where flytekit's local executions write (task sandboxes, ``deck.html`` files)."""
    yield SANDBOX
    shutil.rmtree(SANDBOX, ignore_errors=True)


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    import hooktrain_flyte

    monkeypatch.setattr(hooktrain_flyte, "_said", set())  # each test sees the once-messages


@pytest.fixture
def attempt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """``attempt(n, prev)``: the next task execution is attempt ``n`` of one Flyte task.

    Its checkpoint is written to ``<tmp>/cp/attempt-<n>`` and restored from ``prev`` (the previous
    attempt's location), as the platform passes ``--checkpoint-path`` and ``--prev-checkpoint``
    to a retried task; flytekit's local execution otherwise gives each call a fresh location.
    """
    # imported here, not at the top: flytekit must first be imported into the sandbox (above)
    from flytekit.core.checkpointer import SyncCheckpoint
    from flytekit.core.context_manager import ExecutionParameters

    local_sandbox = ExecutionParameters.with_task_sandbox

    def use(n: int, prev: Path | None = None) -> Path:
        dest = tmp_path / "cp" / f"attempt-{n}"
        dest.mkdir(parents=True)

        def with_task_sandbox(self: ExecutionParameters) -> Any:
            builder = local_sandbox(self)
            builder.checkpoint = SyncCheckpoint(checkpoint_dest=str(dest),
                                                checkpoint_src=str(prev) if prev else None)
            return builder

        monkeypatch.setattr(ExecutionParameters, "with_task_sandbox", with_task_sandbox)
        return dest

    return use
