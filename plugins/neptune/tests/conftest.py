"""neptune offline: every test gets its own NEPTUNE_DATA_DIRECTORY (<tmp_path>/.neptune, where the
offline operation logs go) and working directory, and no neptune credentials or mode from the
machine's environment, so nothing ever tries the network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hooktrain.testing import environment

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


@pytest.fixture
def init_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every ``neptune.init_run`` call's keyword arguments, plus the run it made (``_run``)."""
    import neptune

    calls: list[dict[str, Any]] = []
    original = neptune.init_run

    def init_run(**kwargs):
        calls.append(dict(kwargs))
        calls[-1]["_run"] = run = original(**kwargs)
        return run

    monkeypatch.setattr(neptune, "init_run", init_run)
    return calls


@pytest.fixture
def stopped(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """For every run stopped in debug mode: its fields and series values just before stop()."""
    from neptune import Run
    from neptune.attributes.series.float_series import FloatSeries

    snapshots: list[dict[str, Any]] = []
    original = Run.stop

    def walk(node: dict, prefix: str = ""):
        for key, value in node.items():
            path = f"{prefix}/{key}" if prefix else key
            yield from walk(value, path) if isinstance(value, dict) else [(path, value)]

    def stop(self, *, seconds=None):
        if self._mode.value == "debug":  # the only mode with a fetch() and no server
            attributes = dict(walk(self.get_structure()))
            fields = {p: self[p].fetch() for p, a in attributes.items()
                      if hasattr(a, "fetch") and not isinstance(a, FloatSeries)
                      and not p.startswith("sys/")}
            snapshots.append({
                "fields": fields | {"sys/failed": self["sys/failed"].fetch()},
                "series": {p: list(a.fetch_values()["value"]) for p, a in attributes.items()
                           if isinstance(a, FloatSeries)},
                "seconds": seconds,
            })
        return original(self, seconds=seconds)

    monkeypatch.setattr(Run, "stop", stop)
    return snapshots


@pytest.fixture
def said_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget that this process already announced the offline fallback."""
    import hooktrain_neptune

    monkeypatch.setattr(hooktrain_neptune, "_said_offline", False)
