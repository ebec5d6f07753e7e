"""neptune offline: every test gets its own NEPTUNE_DATA_DIRECTORY (<tmp_path>/.neptune, where the
offline operation logs go) and working directory, and no neptune credentials or mode from the
machine's environment, so nothing ever tries the network."""

from __future__ import annotations

from pathlib import Path

import pytest

from hooktrain.testing import environment

pytest_plugins = ["hooktrain.testing"]

#: Variables that would make a run go online, or change which run it is.
ONLINE = ("NEPTUNE_API_TOKEN", "NEPTUNE_PROJECT", "NEPTUNE_MODE", "NEPTUNE_CUSTOM_RUN_ID")
OFFLINE = {
    # bound any request anyway: a test that went online by mistake fails fast
    "NEPTUNE_REQUEST_TIMEOUT": "5",
    "NEPTUNE_RETRIES_TIMEOUT": "5",
}


@pytest.fixture(scope="session", autouse=True)
def offline_environment():
    with environment(OFFLINE, unset=ONLINE):
        yield


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in ONLINE:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NEPTUNE_DATA_DIRECTORY", str(tmp_path / ".neptune"))
    monkeypatch.chdir(tmp_path)  # neptune's default data directory is ./.neptune
    return tmp_path
