"""trackio resolves ``TRACKIO_DIR`` once, when it is first imported, so the session's directory is
set here, when pytest imports this file, before any test module or fixture imports trackio.
Nothing reaches the network: no Space or server, no webhook, no Hugging Face token
(``HF_HOME`` is a temporary directory) and huggingface_hub offline. Each test runs in its own
temporary working directory and logs to its own trackio project."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

SESSION_DIR = Path(tempfile.mkdtemp(prefix="hooktrain-trackio-tests-"))
ENVIRONMENT = {
    "TRACKIO_DIR": str(SESSION_DIR / "trackio"),
    "HF_HOME": str(SESSION_DIR / "hf-home"),   # no stored Hugging Face token
    "HF_HUB_OFFLINE": "1",
    "TRACKIO_STORAGE_MODE": "sqlite",          # never JSONL fragments, whatever the file system
}
UNSET = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "TRACKIO_SPACE_ID", "TRACKIO_SERVER_URL",
         "TRACKIO_BUCKET_ID", "TRACKIO_DATASET_ID", "TRACKIO_WEBHOOK_URL", "TRACKIO_WRITE_TOKEN")
_SAVED = {key: os.environ.get(key) for key in (*ENVIRONMENT, *UNSET)}
os.environ.update(ENVIRONMENT)
for _key in UNSET:
    os.environ.pop(_key, None)


@pytest.fixture(scope="session", autouse=True)
def offline_environment():
    yield
    for key, value in _SAVED.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    shutil.rmtree(SESSION_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def project(tmp_path: Path) -> str:
    """A trackio project of this test's own (one database in the session's TRACKIO_DIR)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", tmp_path.name)
