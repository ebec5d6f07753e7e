"""swanlab is never left on its cloud default here: the session runs offline with no API key, no
user configuration or stored credentials (``SWANLAB_ROOT`` is a temporary directory) and without
the slow package listing of its environment probe; every test runs in its own temporary working
directory, where swanlab's default ``./swanlog`` then lands."""

from __future__ import annotations

from pathlib import Path

import pytest

from hooktrain.testing import environment

OFFLINE = {
    "SWANLAB_MODE": "offline",               # tests that check the plugin's own choice unset it
    "SWANLAB_INTERACTIVE": "false",          # swanlab's own switch: never prompt
    "SWANLAB_PROBE_REQUIREMENTS": "false",   # lists every installed package: 1-3 s per run
    "SWANLAB_PROBE_MONITOR": "false",        # the periodic hardware monitor thread
}
UNSET = ("SWANLAB_API_KEY", "SWANLAB_LOG_DIR", "SWANLAB_PROJECT", "SWANLAB_LOG_MODEL",
         "SWANLAB_WORKSPACE", "SWANLAB_RUN_ID", "SWANLAB_RESUME", "SWANLAB_WEBHOOK",
         "SWANLAB_API_HOST", "SWANLAB_WEB_HOST", "SWANLAB_SAVE_DIR")


@pytest.fixture(scope="session", autouse=True)
def offline_environment(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("swanlab-root")
    with environment({**OFFLINE, "SWANLAB_ROOT": str(root)}, unset=UNSET):
        yield


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    import swanlab

    if swanlab.has_run():  # a failed test must not leave its run open for the next one
        swanlab.get_run().finish()
