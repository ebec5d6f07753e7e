"""The DagsHub stand-in (``dagshub_stand_in.py``), one per session, and dagshub kept offline.

``DAGSHUB_USER_TOKEN`` is set for the session (any value: nothing waits for a login) before
dagshub is first imported, since dagshub reads its environment at import.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagshub_stand_in import TOKEN, DagsHubStandIn

_CLEARED = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
            "MLFLOW_TRACKING_TOKEN", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID",
            "MLFLOW_TAGS", "MLFLOW_NESTED_RUN", "MLFLOW_RUN_ID", "HF_MLFLOW_LOG_ARTIFACTS",
            "HF_DAGSHUB_LOG_ARTIFACTS", "DAGSHUB_CLIENT_HOST", "DAGSHUB_HTTP_TIMEOUT")


@pytest.fixture(scope="session", autouse=True)
def offline_dagshub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name in _CLEARED:
            patch.delenv(name, raising=False)
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")  # else a lookup of its telemetry host
        patch.setenv("DAGSHUB_USER_TOKEN", TOKEN)
        patch.setenv("DAGSHUB_DISABLE_ANALYTICS", "1")  # else POSTs to <host>/api/internal/...
        patch.setenv("DAGSHUB_CLIENT_TOKENS_CACHE", str(tmp_path_factory.mktemp("tokens") / "t"))
        yield


@pytest.fixture(scope="session")
def dagshub_stand_in(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsHubStandIn]:
    stand_in = DagsHubStandIn(tmp_path_factory.mktemp("dagshub"))
    try:
        stand_in.wait()
        yield stand_in
    finally:
        stand_in.stop()


@pytest.fixture
def dagshub(dagshub_stand_in: DagsHubStandIn, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[DagsHubStandIn]:
    """The stand-in, its request log cleared; what dagshub.init sets is undone afterwards."""
    from dagshub.common import config

    monkeypatch.chdir(tmp_path)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)  # restored to unset after the test
    for name in ("host", "hostname", "parsed_host"):  # dagshub.init(host=...) sets these
        monkeypatch.setattr(config, name, getattr(config, name))
    dagshub_stand_in.requests.clear()
    yield dagshub_stand_in
    import mlflow

    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None: back to the default
