from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``report_to="all"`` also runs every other installed plugin (MLflow writes ./mlflow.db):
    in the test's directory, not the repository."""
    monkeypatch.chdir(tmp_path)
