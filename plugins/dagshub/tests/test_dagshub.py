"""The DagsHub plugin against the real dagshub client, a real mlflow server behind DagsHub's URI
shape and a stub of DagsHub's two web API calls; read back with MlflowClient and the files."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagshub_stand_in import OWNER, REPO, DagsHubStandIn, free_port

from hooktrain.plugin import run_config, save_model
from hooktrain.testing import FailAtStep, TinyRegressor, logged_series, run_training

pytestmark = pytest.mark.timeout(120)


def history_by_metric(log_history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """What MLflow should hold: every numeric value of ``log_history`` under HF's key, by step."""
    return logged_series(log_history, name=lambda key: key)  # MLflow keeps HF's keys


def metrics_csv(path: Path) -> dict[str, list[tuple[int, float]]]:
    """DagsHub's metrics.csv (Name, Value, Timestamp, Step) by metric, in file order."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    found: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        found.setdefault(row["Name"], []).append((int(row["Step"]), float(row["Value"])))
    return found


def runs_in(client: Any, experiment: str) -> list[Any]:
    """The runs of the experiment named ``experiment``."""
    return list(client.search_runs([client.get_experiment_by_name(experiment).experiment_id]))


def stored_metrics(client: Any, run_id: str) -> dict[str, list[tuple[int, float]]]:
    keys = client.get_run(run_id).data.metrics
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
            for key in keys}


def repo_settings(dagshub: DagsHubStandIn, **more: Any) -> dict[str, Any]:
    return {"dagshub": {"repo_owner": OWNER, "repo_name": REPO, "host": dagshub.host, **more}}


def test_dagshub_init_then_mlflow_and_the_logger_files(dagshub: DagsHubStandIn,
                                                       tmp_path: Path) -> None:
    from mlflow import MlflowClient

    model = TinyRegressor()
    model.config = {"hidden": 8, "activation": "relu"}
    run = run_training(output_dir=tmp_path / "out", report_to=["dagshub"], model=model,
                       eval_strategy="steps", eval_steps=4,
                       plugin_settings=repo_settings(dagshub, experiment_name="dh"))

    # dagshub.init: its two web API calls, with the token; MLflow on <host>/<owner>/<repo>.mlflow
    api = [(m, p, a) for m, p, a in dagshub.requests if p.startswith("/api/")]
    assert set(api) == {("GET", f"/api/v1/repos/{OWNER}/{REPO}", "Bearer"),
                        ("GET", "/api/v1/user", "Bearer")}
    assert os.environ["MLFLOW_TRACKING_URI"] == dagshub.tracking_uri
    mlflow_calls = [r for r in dagshub.requests if not r[1].startswith("/api/")]
    assert mlflow_calls and all(p.startswith(f"/{OWNER}/{REPO}.mlflow/api/") and a == "Basic"
                                for _, p, a in mlflow_calls)

    client = MlflowClient(dagshub.tracking_uri)
    stored = client.get_run(run.plugin("DagsHubPlugin").run_id)
    expected = history_by_metric(run.trainer.state.log_history)
    assert stored.info.status == "FINISHED"
    assert stored.data.params == {k: str(v) for k, v in run_config(run.trainer.args, model).items()}
    assert stored_metrics(client, stored.info.run_id) == expected
    assert {"loss", "eval_loss", "train_loss"} <= set(expected)

    # DagsHub's own logger files, next to the checkpoints
    assert metrics_csv(tmp_path / "out" / "metrics.csv") == expected
    params = yaml.safe_load((tmp_path / "out" / "params.yml").read_text())
    config = run_config(run.trainer.args, model)
    assert params == {k: v if v is None or type(v) in (int, float, bool) else str(v)
                      for k, v in config.items()}


def test_hf_style_tracking_uri_and_hf_dagshub_log_artifacts(
    dagshub: DagsHubStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    # what dagshub.init() leaves behind, the only set-up HF's DagsHubCallback accepts
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dagshub.tracking_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", OWNER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "dummy-token")
    monkeypatch.setenv("HF_DAGSHUB_LOG_ARTIFACTS", "yes")
    run = run_training(output_dir=tmp_path / "out", report_to=["dagshub"])

    assert not [r for r in dagshub.requests if r[1].startswith("/api/v1/")]
    client, run_id = MlflowClient(dagshub.tracking_uri), run.plugin("DagsHubPlugin").run_id
    assert {a.path for a in client.list_artifacts(run_id, "dagshub")} == {
        "dagshub/metrics.csv", "dagshub/params.yml"}
    got = client.download_artifacts(run_id, "dagshub/metrics.csv", str(tmp_path / "a"))
    assert Path(got).read_bytes() == (tmp_path / "out" / "metrics.csv").read_bytes()
    got = client.download_artifacts(run_id, "model/model.safetensors", str(tmp_path / "b"))
    save_model(run.trainer.model, tmp_path / "final")
    assert Path(got).read_bytes() == (tmp_path / "final" / "model.safetensors").read_bytes()


def test_without_credentials_only_the_files_are_written_and_it_says_so_once(
    dagshub: DagsHubStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture
) -> None:
    from dagshub.common import config

    monkeypatch.setattr(config, "token", None)  # as if DAGSHUB_USER_TOKEN were unset; no cache
    caplog.set_level(logging.WARNING, logger="hooktrain")
    run = run_training(output_dir=tmp_path / "out", report_to=["dagshub"],
                       plugin_settings=repo_settings(dagshub))

    assert dagshub.requests == [], "nothing may reach DagsHub, nor start its OAuth login"
    assert run.faults == []
    notes = [r.getMessage() for r in caplog.records if r.name.startswith("hooktrain")]
    assert len(notes) == 1 and "no DagsHub token" in notes[0] and "metrics.csv" in notes[0]
    assert metrics_csv(tmp_path / "out" / "metrics.csv") == history_by_metric(
        run.trainer.state.log_history)

    caplog.clear()
    run_training(output_dir=tmp_path / "plain", report_to=["dagshub"])  # no repo, no URI
    notes = [r.getMessage() for r in caplog.records if r.name.startswith("hooktrain")]
    assert len(notes) == 1 and "no repository" in notes[0]
    assert (tmp_path / "plain" / "metrics.csv").exists()


def test_a_resumed_training_is_one_run_and_one_metrics_file(dagshub: DagsHubStandIn,
                                                           tmp_path: Path) -> None:
    from mlflow import MlflowClient

    settings = repo_settings(dagshub, experiment_name="dh-resume")
    first = run_training(output_dir=tmp_path / "out", report_to=["dagshub"], num_train_epochs=1,
                         save_strategy="steps", save_steps=2, plugin_settings=settings)
    second = run_training(output_dir=tmp_path / "out", report_to=["dagshub"], num_train_epochs=2,
                          save_strategy="steps", save_steps=2, plugin_settings=settings,
                          resume_from_checkpoint=True)
    client = MlflowClient(dagshub.tracking_uri)
    runs = runs_in(client, "dh-resume")

    first_id, second_id = (run.plugin("DagsHubPlugin").run_id for run in (first, second))
    assert [r.info.run_id for r in runs] == [first_id] == [second_id]
    assert runs[0].info.status == "FINISHED"
    history = history_by_metric(first.trainer.state.log_history + [
        e for e in second.trainer.state.log_history if e["step"] > 4])
    assert stored_metrics(client, runs[0].info.run_id) == history
    assert metrics_csv(tmp_path / "out" / "metrics.csv") == history  # appended, not truncated


def test_a_crashed_training_ends_its_run_as_failed(dagshub: DagsHubStandIn, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    with pytest.raises(RuntimeError, match="boom"):
        run_training(output_dir=tmp_path / "out", report_to=["dagshub"], plugins=[FailAtStep(5)],
                     plugin_settings=repo_settings(dagshub, experiment_name="dh-crash"))
    client = MlflowClient(dagshub.tracking_uri)
    (stored,) = runs_in(client, "dh-crash")
    assert stored.info.status == "FAILED"
    assert [step for step, _ in metrics_csv(tmp_path / "out" / "metrics.csv")["loss"]] == [2, 4]


def test_an_unreachable_dagshub_is_isolated_and_costs_seconds(dagshub: DagsHubStandIn,
                                                              tmp_path: Path) -> None:
    start = time.monotonic()
    run = run_training(output_dir=tmp_path / "out", report_to=["dagshub"], plugin_settings={
        "dagshub": {"repo_owner": OWNER, "repo_name": REPO,
                    "host": f"http://127.0.0.1:{free_port()}"}})
    elapsed = time.monotonic() - start

    assert run.output.global_step == 8
    faults = run.faults
    assert [(f.plugin.split()[0], f.hook) for f in faults] == [("dagshub", "on_train_begin")]
    assert elapsed < 30, f"an unreachable DagsHub cost {elapsed:.0f} s"


def test_repo_owner_without_repo_name_is_a_clear_error(tmp_path: Path) -> None:
    from hooktrain.plugin import ConfigError

    with pytest.raises(ConfigError, match="both repo_owner and repo_name"):
        run_training(output_dir=tmp_path / "out", report_to=["dagshub"],
                     plugin_settings={"dagshub": {"repo_owner": OWNER}})


def test_listed_without_importing_dagshub_or_mlflow() -> None:
    code = ("import sys, hooktrain_dagshub\n"
            "assert not {'dagshub', 'mlflow', 'torch'} & set(sys.modules)\n"
            "import runpy\n"  # the `hooktrain plugins --json` command, in this process
            "sys.argv = ['hooktrain', 'plugins', '--json']\n"
            "runpy.run_module('hooktrain.cli', run_name='__main__')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)
    (entry,) = [p for p in json.loads(result.stdout) if p["name"] == "dagshub"]
    assert entry["distribution"] == "hooktrain-dagshub" and entry["status"] == "enabled"
