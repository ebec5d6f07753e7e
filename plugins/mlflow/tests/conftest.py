"""One real ``mlflow server`` per test session, a migrated sqlite store to copy, offline MLflow.

The server listens on 127.0.0.1 with a sqlite backend, runs in its own process group and is
stopped by its PID. Creating an MLflow sqlite database runs its migrations (~9 s on 2 cores), so
the session creates one while the server starts, and each sqlite test copies the file.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow_server import MlflowServer

#: Variables a developer's shell may carry that would send the tests elsewhere.
_CLEARED = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_TAGS",
            "MLFLOW_NESTED_RUN", "MLFLOW_RUN_ID", "MLFLOW_FLATTEN_PARAMS", "MLFLOW_MAX_LOG_PARAMS",
            "HF_MLFLOW_LOG_ARTIFACTS", "MLFLOW_HTTP_REQUEST_TIMEOUT",
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_TRACKING_USERNAME",
            "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


@pytest.fixture(scope="session", autouse=True)
def offline_mlflow() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name in _CLEARED:
            patch.delenv(name, raising=False)
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")  # else a lookup of its telemetry host
        yield


@pytest.fixture(scope="session")
def _stores(tmp_path_factory: pytest.TempPathFactory, offline_mlflow: None) -> Iterator[dict]:
    # Started together (the machine has 2 cores and each start is mostly imports): the session's
    # server, a spare that one test kills mid-run, and the migrated sqlite template.
    servers = [MlflowServer(tmp_path_factory.mktemp("mlflow-server")),
               MlflowServer(tmp_path_factory.mktemp("mlflow-spare"))]
    try:
        template = tmp_path_factory.mktemp("sqlite-template") / "mlflow.db"
        from mlflow import MlflowClient

        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(template.parent)  # the Default experiment's artifacts: ./mlruns here
            MlflowClient(f"sqlite:///{template}").search_experiments()  # runs the migrations
        yield {"server": servers[0].wait(), "spare": servers[1], "template": template}
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def mlflow_server(_stores: dict) -> str:
    """The session's ``mlflow server`` URI."""
    return _stores["server"]


@pytest.fixture
def spare_server(_stores: dict) -> MlflowServer:
    """A second server, started with the session's, for one test to kill."""
    server: MlflowServer = _stores["spare"]
    server.wait()
    return server


@pytest.fixture
def sqlite_template(_stores: dict) -> Path:
    """An empty, migrated MLflow sqlite database: copy it, never write to it."""
    template: Path = _stores["template"]
    return template


@pytest.fixture
def sqlite_store(sqlite_template: Path, tmp_path: Path) -> str:
    """A fresh, migrated ``sqlite:///`` store in the test's directory."""
    shutil.copy(sqlite_template, tmp_path / "store.db")
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """MLflow writes ./mlflow.db and ./mlruns; no fluent run or URI outlives a test."""
    monkeypatch.chdir(tmp_path)
    yield
    import mlflow

    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None: back to the default
