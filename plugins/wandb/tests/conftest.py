"""W&B offline for the whole session (docs/integrations/wandb.md, Tests), set before wandb
reads its environment.

wandb reads ``WANDB_*`` once, when its first run starts in the process; tests that need another
environment for wandb itself run in a subprocess.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from wandbfiles import offline_environment


@pytest.fixture(scope="session", autouse=True)
def wandb_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's ``WANDB_DIR``: runs land in ``<it>/wandb/offline-run-*-<run id>``."""
    root = tmp_path_factory.mktemp("wandb")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("WANDB_API_KEY", "WANDB_PROJECT", "WANDB_LOG_MODEL", "WANDB_WATCH",
                     "WANDB_RUN_ID", "WANDB_RESUME", "WANDB_ENTITY", "WANDB_NAME"):
            patch.delenv(name, raising=False)
        for name, value in offline_environment(root).items():
            patch.setenv(name, value)
        yield root


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
