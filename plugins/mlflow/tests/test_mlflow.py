"""The MLflow plugin against a real ``mlflow server`` and sqlite stores, read with MlflowClient."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow_server import MlflowServer

from hooktrain import TrainerCallback
from hooktrain.testing import FailAtStep, TinyRegressor, logged_series, run_training

pytestmark = pytest.mark.timeout(120)


def history_by_metric(log_history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """What MLflow should hold: every numeric value of ``log_history`` under HF's key, by step."""
    return logged_series(log_history, name=lambda key: key)  # MLflow keeps HF's keys


def runs_in(client: Any, experiment: str) -> list[Any]:
    """The runs of the experiment named ``experiment``."""
    return list(client.search_runs([client.get_experiment_by_name(experiment).experiment_id]))


def stored_metrics(client: Any, run_id: str) -> dict[str, list[tuple[int, float]]]:
    keys = client.get_run(run_id).data.metrics
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
            for key in keys}


def expected_params(args: Any, model: Any) -> dict[str, str]:
    from hooktrain.plugin import run_config

    return {k: str(v) for k, v in run_config(args, model).items()}


def test_parameters_and_every_metric_at_every_step_reach_the_server(
    mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    batches: list[int] = []
    original = MlflowClient.log_batch

    def counting(self: Any, run_id: str, metrics: Any = (), *args: Any, **kwargs: Any) -> Any:
        if metrics:
            batches.append(len(metrics))
        return original(self, run_id, metrics, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", counting)
    model = TinyRegressor()
    model.config = {"hidden": 8, "activation": "relu"}  # as an HF model's config would be
    run = run_training(output_dir=Path("out"), report_to=["mlflow"], model=model,
                       eval_strategy="steps", eval_steps=4, logging_steps=2,
                       plugin_settings={"mlflow": {"tracking_uri": mlflow_server,
                                                   "experiment_name": "main",
                                                   "tags": {"team": "nlp"}}})
    client = MlflowClient(mlflow_server)
    stored = client.get_run(run.plugin("MLflowPlugin").run_id)

    assert stored.info.status == "FINISHED"
    assert [r.info.run_id for r in runs_in(client, "main")] == [stored.info.run_id]
    assert stored.info.run_name == run.trainer.args.run_name
    assert stored.data.tags["team"] == "nlp"
    assert stored.data.params == expected_params(run.trainer.args, model)
    assert stored.data.params["model_config/activation"] == "relu"
    expected = history_by_metric(run.trainer.state.log_history)
    assert stored_metrics(client, stored.info.run_id) == expected
    assert {"loss", "eval_loss", "learning_rate", "train_loss", "train_runtime"} <= set(expected)
    assert stored.data.metrics["train_loss"] == run.output.training_loss  # the summary
    # one log_batch request per on_log, never one request per value
    assert batches == [len(e) - 1 for e in run.trainer.state.log_history]


def test_checkpoints_and_final_model_are_artifacts(mlflow_server: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("HF_MLFLOW_LOG_ARTIFACTS", "true")
    run = run_training(output_dir=tmp_path / "out", report_to=["mlflow"], save_strategy="steps",
                       save_steps=4, plugin_settings={"mlflow": {"log_model": True}})
    client, run_id = MlflowClient(mlflow_server), run.plugin("MLflowPlugin").run_id

    assert {a.path for a in client.list_artifacts(run_id)} == {
        "checkpoint-4", "checkpoint-8", "model"}
    local = tmp_path / "out" / "checkpoint-8" / "model.safetensors"
    downloaded = client.download_artifacts(run_id, "checkpoint-8/model.safetensors",
                                           str(tmp_path / "dl"))
    assert Path(downloaded).read_bytes() == local.read_bytes()
    final = client.download_artifacts(run_id, "model/model.safetensors", str(tmp_path / "dl2"))
    assert Path(final).read_bytes() == local.read_bytes()  # no step after the last save


def test_environment_variables_keep_hf_meaning_on_a_sqlite_store(
    sqlite_store: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from mlflow import MlflowClient

    for name, value in {"MLFLOW_TRACKING_URI": sqlite_store, "MLFLOW_EXPERIMENT_NAME": "from-env",
                        "MLFLOW_TAGS": json.dumps({"source": "env", "n": 1}),
                        "MLFLOW_FLATTEN_PARAMS": "1", "MLFLOW_MAX_LOG_PARAMS": "300"}.items():
        monkeypatch.setenv(name, value)
    model = TinyRegressor()
    model.config = {"nested": {"a": 1, "b": [2, 3]}, "notes": "x" * 7000}
    caplog.set_level(logging.WARNING, logger="hooktrain")
    run = run_training(output_dir=Path("out"), report_to=["mlflow"], model=model)
    client = MlflowClient(sqlite_store)
    stored = client.get_run(run.plugin("MLflowPlugin").run_id)

    assert client.get_experiment(stored.info.experiment_id).name == "from-env"
    assert {"source": "env", "n": "1"}.items() <= stored.data.tags.items()
    params = stored.data.params
    assert params["model_config/nested.a"] == "1" and params["model_config/nested.b"] == "[2, 3]"
    assert "lr_scheduler_kwargs" in params  # an empty dict stays one parameter, as in HF
    flat = set(expected_params(run.trainer.args, model)) - {"model_config/nested"}
    assert set(params) == flat | {"model_config/nested.a", "model_config/nested.b"}  # < 300
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    assert params["model_config/notes"] == "x" * MAX_PARAM_VAL_LENGTH  # truncated, not dropped
    assert MAX_PARAM_VAL_LENGTH == 6000
    warnings = [r.getMessage() for r in caplog.records
                if r.name.startswith("hooktrain") if "truncated" in r.getMessage()]
    assert len(warnings) == 1 and "model_config/notes" in warnings[0]
    assert stored_metrics(client, stored.info.run_id) == history_by_metric(
        run.trainer.state.log_history)

    monkeypatch.setenv("MLFLOW_MAX_LOG_PARAMS", "5")
    run = run_training(output_dir=Path("out2"), report_to=["mlflow"],
                       plugin_settings={"mlflow": {"experiment_name": "from-setting"}})
    stored = client.get_run(run.plugin("MLflowPlugin").run_id)
    assert len(stored.data.params) == 5
    assert client.get_experiment(stored.info.experiment_id).name == "from-setting"  # setting wins


def test_no_tracking_uri_logs_to_the_local_default_and_says_so_once(
    sqlite_template: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    from mlflow import MlflowClient

    shutil.copy(sqlite_template, tmp_path / "mlflow.db")  # MLflow's default store, migrated
    caplog.set_level(logging.WARNING, logger="hooktrain")
    run = run_training(output_dir=tmp_path / "out", report_to=["mlflow"])

    notes = [r.getMessage() for r in caplog.records
             if r.name.startswith("hooktrain") if "no tracking URI" in r.getMessage()]
    # MLflow 3.10+ names the default store by its absolute path, 3.9 relative to the cwd
    assert len(notes) == 1
    assert f"sqlite:///{tmp_path}/mlflow.db" in notes[0] or "sqlite:///mlflow.db." in notes[0]
    stored = MlflowClient("sqlite:///mlflow.db").get_run(run.plugin("MLflowPlugin").run_id)
    assert stored.info.status == "FINISHED" and stored.data.metrics["train_loss"]


def test_a_crashed_training_ends_its_run_as_failed(mlflow_server: str) -> None:
    from mlflow import MlflowClient

    with pytest.raises(RuntimeError, match="boom"):
        run_training(output_dir=Path("out"), report_to=["mlflow"], plugins=[FailAtStep(5)],
                     plugin_settings={"mlflow": {"tracking_uri": mlflow_server,
                                                 "experiment_name": "crash"}})
    client = MlflowClient(mlflow_server)
    (stored,) = runs_in(client, "crash")
    # set before the exception left train(): MLflow's exit handler would have said FINISHED
    assert stored.info.status == "FAILED"
    assert [m.step for m in client.get_metric_history(stored.info.run_id, "loss")] == [2, 4]


def test_a_resumed_training_continues_the_same_run(mlflow_server: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    settings = {"mlflow": {"tracking_uri": mlflow_server, "experiment_name": "resume"}}
    first = run_training(output_dir=tmp_path / "out", report_to=["mlflow"], num_train_epochs=1,
                         save_strategy="steps", save_steps=2, plugin_settings=settings)
    second = run_training(output_dir=tmp_path / "out", report_to=["mlflow"], num_train_epochs=2,
                          save_strategy="steps", save_steps=2, plugin_settings=settings,
                          resume_from_checkpoint=True)
    client = MlflowClient(mlflow_server)
    runs = runs_in(client, "resume")

    first_id, second_id = (run.plugin("MLflowPlugin").run_id for run in (first, second))
    assert [r.info.run_id for r in runs] == [first_id] == [second_id]
    assert runs[0].info.status == "FINISHED"
    assert second.output.global_step == 8
    history = first.trainer.state.log_history + [
        e for e in second.trainer.state.log_history if e["step"] > 4]
    assert stored_metrics(client, runs[0].info.run_id) == history_by_metric(history)
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "loss")] == [2, 4, 6, 8]
    assert runs[0].data.params["num_train_epochs"] == "1"  # MLflow parameters cannot change


def test_a_resume_whose_run_is_not_in_the_store_starts_a_new_run(
    mlflow_server: str, sqlite_store: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from mlflow import MlflowClient

    first = run_training(output_dir=tmp_path / "out", report_to=["mlflow"], num_train_epochs=1,
                         save_strategy="steps", save_steps=4,
                         plugin_settings={"mlflow": {"tracking_uri": mlflow_server}})
    caplog.set_level(logging.WARNING, logger="hooktrain")
    second = run_training(output_dir=tmp_path / "out", report_to=["mlflow"], num_train_epochs=2,
                          resume_from_checkpoint=True,
                          plugin_settings={"mlflow": {"tracking_uri": sqlite_store}})

    assert second.plugin("MLflowPlugin").run_id != first.plugin("MLflowPlugin").run_id
    assert any(f"checkpoint's run {first.plugin('MLflowPlugin').run_id} is not in" in r.getMessage()
               for r in caplog.records if r.name.startswith("hooktrain"))
    stored = MlflowClient(sqlite_store).get_run(second.plugin("MLflowPlugin").run_id)
    assert stored.info.status == "FINISHED" and stored.data.metrics["train_loss"]


def test_active_nested_and_given_runs(mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    client = MlflowClient(mlflow_server)
    with mlflow.start_run() as outer:  # HF: a run the user opened around train() is used
        run = run_training(output_dir=Path("a"), report_to=["mlflow"])
        assert run.plugin("MLflowPlugin").run_id == outer.info.run_id
        assert client.get_run(outer.info.run_id).info.status == "RUNNING"  # theirs to end

        monkeypatch.setenv("MLFLOW_NESTED_RUN", "true")
        inner = run_training(output_dir=Path("b"), report_to=["mlflow"])
        child = inner.plugin("MLflowPlugin").run_id
        stored = client.get_run(child)
        assert stored.data.tags["mlflow.parentRunId"] == outer.info.run_id
        assert stored.info.status == "FINISHED"
    monkeypatch.delenv("MLFLOW_NESTED_RUN")
    assert client.get_run(outer.info.run_id).data.metrics["train_loss"]

    given = client.create_run("0").info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", given)
    run = run_training(output_dir=Path("c"), report_to=["mlflow"])
    assert run.plugin("MLflowPlugin").run_id == given
    assert client.get_run(given).info.status == "FINISHED"
    assert client.get_run(given).data.metrics["train_loss"] == run.output.training_loss


def test_a_server_killed_mid_run_is_isolated_and_costs_seconds(
    spare_server: MlflowServer, tmp_path: Path
) -> None:
    class KillServer(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 3:
                spare_server.stop(signal.SIGKILL)

    start = time.monotonic()
    run = run_training(output_dir=tmp_path / "out", report_to=["mlflow"], plugins=[KillServer()],
                       plugin_settings={"mlflow": {"tracking_uri": spare_server.uri}})
    elapsed = time.monotonic() - start

    assert run.output.global_step == 8
    faults = run.faults
    assert [(f.plugin.split()[0], f.hook) for f in faults] == [("mlflow", "on_log")]
    assert "Connection refused" in faults[0].error or "Max retries" in faults[0].error
    assert elapsed < 30, f"a dead server cost {elapsed:.0f} s"


def test_bad_mlflow_tags_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from hooktrain.plugin import ConfigError

    monkeypatch.setenv("MLFLOW_TAGS", "team=nlp")
    with pytest.raises(ConfigError, match="MLFLOW_TAGS.*JSON object"):
        run_training(output_dir=Path("out"), report_to=["mlflow"])


def test_listed_without_importing_mlflow() -> None:
    code = ("import sys, hooktrain_mlflow\n"
            "assert 'mlflow' not in sys.modules and 'torch' not in sys.modules\n"
            "import runpy\n"  # the `hooktrain plugins --json` command, in this process
            "sys.argv = ['hooktrain', 'plugins', '--json']\n"
            "runpy.run_module('hooktrain.cli', run_name='__main__')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)
    (entry,) = [p for p in json.loads(result.stdout) if p["name"] == "mlflow"]
    assert entry["distribution"] == "hooktrain-mlflow" and entry["status"] == "enabled"
    assert {"on_train_begin", "on_log", "on_save", "on_train_end", "on_exception"} <= set(
        entry["hooks"])
