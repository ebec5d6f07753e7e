"""Comet offline for the whole session, each test in its own working directory, no network."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

#: Comet's own variables a developer's shell may have; none of them may leak into the tests.
COMET_VARIABLES = (
    "COMET_API_KEY", "COMET_MODE", "COMET_START_ONLINE", "COMET_START_MODE", "COMET_PROJECT_NAME",
    "COMET_WORKSPACE", "COMET_LOG_ASSETS", "COMET_OFFLINE_DIRECTORY", "COMET_EXPERIMENT_KEY",
    "COMET_URL_OVERRIDE", "COMET_DISABLE_AUTO_LOGGING", "COMET_AUTO_LOG_ENV_DETAILS",
)


@pytest.fixture(scope="session", autouse=True)
def comet_offline_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Offline as docs/integrations/comet_ml.md (Tests) says: no API key, no ~/.comet.config,
    no sentry, no CO2."""
    with pytest.MonkeyPatch.context() as mp:
        for name in COMET_VARIABLES:
            mp.delenv(name, raising=False)
        mp.setenv("COMET_CONFIG", str(tmp_path_factory.mktemp("comet") / "no.comet.config"))
        mp.setenv("COMET_ERROR_TRACKING_ENABLE", "false")
        mp.setenv("COMET_AUTO_LOG_CO2", "false")
        yield


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """comet writes offline archives to ./.cometml-runs by default."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def network_attempts(no_network: list[str]) -> list[str]:
    """No network beyond 127.0.0.1 (hooktrain.testing's guard; attempts fail the test)."""
    return no_network
