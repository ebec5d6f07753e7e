"""dvclive writes into the working directory (dvc.yaml, its default ./dvclive): every test runs in
its own temporary directory, with dvc's analytics and DVC Studio switched off for the session."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hooktrain.testing import environment

OFFLINE = {
    "DVC_NO_ANALYTICS": "1",       # dvc's usage analytics
    "DVC_STUDIO_OFFLINE": "1",     # never post live metrics to DVC Studio
    "DVCLIVE_LOGLEVEL": "WARNING",
    # git identity for the test repositories' commits, whatever the machine's git config says
    "GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@localhost",
    "GIT_COMMITTER_NAME": "ci", "GIT_COMMITTER_EMAIL": "ci@localhost",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture(scope="session", autouse=True)
def offline_environment():
    with environment(OFFLINE):
        yield


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("HF_DVCLIVE_LOG_MODEL", raising=False)
    monkeypatch.delenv("DVCLIVE_RESUME", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def dvc_repo(tmp_path: Path) -> Path:
    """``git init``, ``dvc init`` and one commit in ``tmp_path`` (artifacts need a DVC repo)."""
    from dvc.repo import Repo

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    Repo.init(str(tmp_path)).close()
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=tmp_path, check=True)
    return tmp_path
