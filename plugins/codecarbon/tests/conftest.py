"""codecarbon reads CODECARBON_* variables and ``.codecarbon.config`` in $HOME and the working
directory: every test runs in its own temporary directory with its own $HOME and none of the
machine's CODECARBON_* variables, codecarbon's chatter down to errors, and a guard that fails
the test if anything tries to reach a host other than this machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

OFFLINE = {
    "CODECARBON_LOG_LEVEL": "error",  # its INFO lines and per-run warnings
}


@pytest.fixture(scope="session", autouse=True)
def offline_environment():
    saved = {key: value for key, value in os.environ.items()
             if key.lower().startswith("codecarbon_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(OFFLINE)
    yield
    for key in OFFLINE:
        os.environ.pop(key, None)
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # no ~/.codecarbon.config of the machine's
    monkeypatch.chdir(tmp_path)             # nor ./.codecarbon.config
    return tmp_path


@pytest.fixture(autouse=True)
def offline(no_network: list[str]) -> list[str]:
    """No network beyond 127.0.0.1: codecarbon swallows its own errors, so hooktrain.testing's
    guard records every attempt and fails the test after it."""
    return no_network
