"""flytekit runs a called ``@task`` in process, in a local sandbox it creates when first imported
(``mkdtemp(prefix="flyte-")`` under ``$TMPDIR``). Here that sandbox is a temporary directory of
the test session, made before any test module imports flytekit and removed at the end.
flytekit needs no account, configuration or network for local execution."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["hooktrain.testing"]

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
