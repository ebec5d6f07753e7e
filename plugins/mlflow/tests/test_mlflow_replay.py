"""``hooktrain replay`` into MLflow: a real ``mlflow server`` on 127.0.0.1 holds the same
parameters and metrics for a replayed run as for a live run with the plugin on."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from hooktrain.testing import TIMING_KEYS, logged_series, replay_command, run_to_replay

pytestmark = pytest.mark.timeout(180)


def _train(directory: Path, monkeypatch: pytest.MonkeyPatch, report_to: str) -> Any:
    directory.mkdir()
    monkeypatch.chdir(directory)
    return run_to_replay(report_to)


def _metrics(client: Any, run_id: str) -> dict[str, list[tuple[int, float]]]:
    keys = client.get_run(run_id).data.metrics
    return {key: [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key),
                                                    key=lambda m: m.step)] for key in keys}


def _only_run(client: Any, experiment: str) -> Any:
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


def test_replay_records_what_the_live_run_recorded(
        mlflow_server: str, tmp_path: Path, monkeypatch, capsys) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "replay-live")
    _train(tmp_path / "live", monkeypatch, "mlflow")
    live = _only_run(client, "replay-live")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "replay-later")
    trainer = _train(tmp_path / "later", monkeypatch, "none")
    assert client.get_experiment_by_name("replay-later") is None  # nothing sent yet

    assert replay_command("run", "--report-to", "mlflow") == 0
    replayed = _only_run(client, "replay-later")
    assert f"into mlflow (run {replayed.info.run_id})" in capsys.readouterr().out

    assert replayed.info.status == "FINISHED"
    assert replayed.data.params == live.data.params
    assert replayed.info.run_name == live.info.run_name == "run"
    metrics = _metrics(client, replayed.info.run_id)
    assert metrics == logged_series(trainer.state.log_history, name=lambda key: key)
    live_metrics = _metrics(client, live.info.run_id)
    assert metrics.keys() == live_metrics.keys()
    for key, points in live_metrics.items():
        assert [s for s, _ in metrics[key]] == [s for s, _ in points], key
        if not key.endswith(TIMING_KEYS):
            assert metrics[key] == points, key


def test_the_final_model_and_checkpoints_are_uploaded(
        mlflow_server: str, tmp_path: Path, monkeypatch) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "replay-artifacts")
    _train(tmp_path / "run_dir", monkeypatch, "none")
    assert replay_command("run", "--report-to", "mlflow", "--plugins.mlflow.log_model", "true",
                 "--plugins.mlflow.log_artifacts", "true") == 0
    run_id = _only_run(client, "replay-artifacts").info.run_id

    assert {a.path for a in client.list_artifacts(run_id)} == {
        "model", "checkpoint-4", "checkpoint-8"}
    model = Path(client.download_artifacts(run_id, "model/model.safetensors", str(tmp_path)))
    final = Path("run/checkpoint-8/model.safetensors")
    assert hashlib.sha256(model.read_bytes()).digest() == hashlib.sha256(
        final.read_bytes()).digest()


def test_a_second_replay_continues_or_refuses_and_new_run_makes_another(
        mlflow_server: str, tmp_path: Path, monkeypatch, capsys) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "replay-twice")
    trainer = _train(tmp_path / "run_dir", monkeypatch, "none")
    assert replay_command("run", "--report-to", "mlflow") == 0
    first = _only_run(client, "replay-twice").info.run_id
    capsys.readouterr()

    assert replay_command("run", "--report-to", "mlflow") == 2
    error = capsys.readouterr().err
    assert f"mlflow already holds this run (run {first}" in error and "--new-run" in error
    assert _metrics(client, first) == logged_series(trainer.state.log_history,
                                                    name=lambda key: key)  # nothing doubled

    assert replay_command("run", "--report-to", "mlflow", "--new-run") == 0
    experiment = client.get_experiment_by_name("replay-twice").experiment_id
    runs = {r.info.run_id for r in client.search_runs([experiment])}
    assert len(runs) == 2 and first in runs


def test_a_stopped_run_that_went_on_continues_its_mlflow_run(
        mlflow_server: str, tmp_path: Path, monkeypatch) -> None:
    import json

    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "replay-continued")
    trainer = _train(tmp_path / "run_dir", monkeypatch, "none")
    state_file = Path("run/trainer_state.json")
    full = state_file.read_text()
    stopped = {**json.loads(full), "global_step": 4}
    stopped["log_history"] = stopped["log_history"][:3]
    state_file.write_text(json.dumps(stopped))  # as if stopped after step 4's checkpoint
    Path("run/checkpoint-8").rename("later-checkpoint-8")
    assert replay_command("run", "--report-to", "mlflow") == 0
    state_file.write_text(full)
    Path("later-checkpoint-8").rename("run/checkpoint-8")
    assert replay_command("run", "--report-to", "mlflow") == 0

    run = _only_run(client, "replay-continued")  # the same run, reopened
    assert run.info.status == "FINISHED"
    assert _metrics(client, run.info.run_id) == logged_series(trainer.state.log_history,
                                                              name=lambda key: key)
