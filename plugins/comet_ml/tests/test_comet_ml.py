"""The Comet plugin against real comet_ml offline archives, read back after real runs."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cometarchive import Archive, read_archives

from hooktrain import TrainerCallback
from hooktrain.plugin import SUMMARY_KEYS, rewrite_key, run_config
from hooktrain.testing import FailAtStep, TinyRegressor, run_training

pytestmark = pytest.mark.timeout(120)

ARCHIVES = Path(".cometml-runs")  # comet's default, under the test's working directory


def metrics_from_history(log_history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    expected: dict[str, list[tuple[int, float]]] = {}
    for entry in log_history:
        for key, value in entry.items():
            if key != "step" and isinstance(value, (int, float)):
                expected.setdefault(rewrite_key(key), []).append((entry["step"], float(value)))
    return expected


def ours(metrics: dict[str, list]) -> dict[str, list]:
    """Leave out what comet logs by itself (sys.*, process duration)."""
    return {k: v for k, v in metrics.items() if k.startswith(("train/", "eval/", "test/"))}


def only_archive(directory: Path = ARCHIVES) -> Archive:
    (archive,) = read_archives(directory)
    return archive


def faults(run) -> list[tuple[str, str]]:
    return [(f.plugin.split()[0], f.hook) for f in run.faults]


def test_every_metric_at_every_step_equals_the_log_history(network_attempts, caplog) -> None:
    caplog.set_level(logging.INFO, logger="hooktrain")
    run = run_training(output_dir="out", report_to=["comet_ml"], eval_strategy="steps",
                       eval_steps=4, logging_steps=2)
    archive = only_archive()

    expected = metrics_from_history(run.trainer.state.log_history)
    assert ours(archive.metrics) == expected  # names, steps, values and their order
    assert {"train/loss", "train/grad_norm", "train/learning_rate", "eval/loss",
            "train/train_loss", "train/train_runtime"} <= set(expected)
    epochs = [e["epoch"] for e in run.trainer.state.log_history if "loss" in e]
    assert archive.epochs["train/loss"] == epochs

    final = run.trainer.state.log_history[-1]
    assert {k: archive.others[k] for k in SUMMARY_KEYS} == {k: final[k] for k in SUMMARY_KEYS}
    assert archive.others["status"] == "finished"
    assert archive.meta["customer_error_reported"] is False and archive.meta["stop_time"]
    assert archive.assets == {}, "nothing is uploaded unless asked"

    said = [r for r in caplog.records if r.name.startswith("hooktrain")
            if r.name == "hooktrain" and "comet_ml" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    assert "no Comet API key" in said[0].getMessage() and "offline" in said[0].getMessage()
    assert network_attempts == [], "offline, comet must not touch the network"


def test_parameters_are_the_run_config() -> None:
    model = TinyRegressor()
    model.config = {"hidden": 8, "activation": "relu"}  # as an HF model's config would be
    run = run_training(output_dir="out", report_to=["comet_ml"], model=model, run_name="my-run",
                       learning_rate=0.02,
                       plugin_settings={"comet_ml": {"project_name": "digits",
                                                     "tags": ["a", "b"]}})
    archive = only_archive()

    assert archive.parameters == run_config(run.trainer.args, model)
    assert archive.parameters["learning_rate"] == 0.02
    assert archive.parameters["model_config/activation"] == "relu"
    assert archive.others["Name"] == "my-run"
    assert archive.meta["project_name"] == "digits"
    assert sorted(archive.meta["tags"]) == ["a", "b"]


def test_checkpoints_and_final_model_are_assets_when_asked(monkeypatch) -> None:
    monkeypatch.setenv("COMET_LOG_ASSETS", "TRUE")  # HF's variable
    run = run_training(output_dir="out", report_to=["comet_ml"], save_strategy="steps",
                       save_steps=4, plugin_settings={"comet_ml": {"log_model": True}})
    archive = only_archive()

    for step in (4, 8):
        folder = Path("out") / f"checkpoint-{step}"
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert files
        for path in files:
            name = f"checkpoint-{step}/{path.relative_to(folder).as_posix()}"
            assert archive.assets[name] == path.read_bytes(), name
            assert archive.asset_steps[name] == step

    from safetensors.torch import load

    weights = load(archive.assets["model/model.safetensors"])
    for key, tensor in run.trainer.model.state_dict().items():
        assert weights[key].equal(tensor), key


def test_a_failed_run_is_marked_failed_and_ended() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        run_training(output_dir="out", report_to=["comet_ml"],
                     plugins=[FailAtStep(5, message="boom at step 5")])
    archive = only_archive()

    assert archive.others["status"] == "failed"
    assert archive.meta["customer_error_reported"] is True  # comet's own crash record
    assert "boom at step 5" in archive.meta["customer_error_message"]
    assert [step for step, _ in archive.metrics["train/loss"]] == [2, 4]


def test_a_resumed_run_continues_the_same_experiment() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        run_training(output_dir="out", report_to=["comet_ml"], plugins=[FailAtStep(5)],
                     save_strategy="steps", save_steps=4)
    run = run_training(output_dir="out", report_to=["comet_ml"], save_strategy="steps",
                       save_steps=4, resume_from_checkpoint=True)

    first, second = read_archives(ARCHIVES)
    plugin = run.plugin("CometPlugin")
    assert first.key == second.key == plugin.experiment_key
    assert second.meta["resume_strategy"] == "get_or_create"  # appended to on upload
    assert (first.others["status"], second.others["status"]) == ("failed", "finished")

    merged: dict[str, list] = {}
    for archive in (first, second):
        for name, points in ours(archive.metrics).items():
            merged.setdefault(name, []).extend(points)
    assert merged == metrics_from_history(run.trainer.state.log_history)
    assert [s for s, _ in second.metrics["train/loss"]] == [6, 8]


def test_the_experiment_key_is_in_the_checkpoint() -> None:
    run = run_training(output_dir="out", report_to=["comet_ml"], save_strategy="steps",
                       save_steps=8)
    state = json.loads((Path("out") / "checkpoint-8" / "trainer_state.json").read_text())
    plugin_state = state["stateful_callbacks"]["CometPlugin#0"]
    assert plugin_state == {"experiment_key": only_archive().key}
    assert not faults(run)


def test_settings_win_over_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COMET_PROJECT_NAME", "from-env")
    monkeypatch.setenv("COMET_OFFLINE_DIRECTORY", str(tmp_path / "env-dir"))
    run_training(output_dir="a", report_to=["comet_ml"])
    assert only_archive(tmp_path / "env-dir").meta["project_name"] == "from-env"

    monkeypatch.setenv("COMET_LOG_ASSETS", "1")
    run_training(output_dir="b", report_to=["comet_ml"], save_strategy="steps", save_steps=8,
                 plugin_settings={"comet_ml": {"project_name": "from-setting",
                                               "offline_directory": str(tmp_path / "set-dir"),
                                               "log_assets": False}})
    archive = only_archive(tmp_path / "set-dir")
    assert archive.meta["project_name"] == "from-setting"
    assert archive.assets == {}
    assert len(read_archives(tmp_path / "env-dir")) == 1


def test_offline_by_choice_says_nothing_alarming(monkeypatch, caplog) -> None:
    monkeypatch.setenv("COMET_API_KEY", "k" * 32)
    monkeypatch.setenv("COMET_START_ONLINE", "0")
    caplog.set_level(logging.INFO, logger="hooktrain")
    run_training(output_dir="out", report_to=["comet_ml"])
    assert only_archive().others["status"] == "finished"
    said = [r for r in caplog.records if r.name.startswith("hooktrain")
            if r.name == "hooktrain" and "comet_ml" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.INFO]

    monkeypatch.delenv("COMET_START_ONLINE")
    monkeypatch.setenv("COMET_MODE", "OFFLINE")  # HF's deprecated spelling still works
    run_training(output_dir="out2", report_to=["comet_ml"])
    assert len(read_archives(ARCHIVES)) == 2


def test_comet_mode_disabled_logs_nothing_with_one_warning(monkeypatch, caplog) -> None:
    monkeypatch.setenv("COMET_MODE", "DISABLED")
    caplog.set_level(logging.WARNING, logger="hooktrain")
    run = run_training(output_dir="out", report_to=["comet_ml"], eval_strategy="steps",
                       eval_steps=4)
    assert not ARCHIVES.exists() and not faults(run)
    assert sum("disabled" in r.getMessage() for r in caplog.records
               if r.name.startswith("hooktrain")) == 1


def test_an_invalid_comet_mode_is_a_clear_error(monkeypatch) -> None:
    from hooktrain.plugin import ConfigError

    monkeypatch.setenv("COMET_MODE", "sometimes")
    with pytest.raises(ConfigError, match=r"COMET_MODE.*get_or_create.*'sometimes'"):
        run_training(output_dir="out", report_to=["comet_ml"])


def test_an_unreachable_server_costs_seconds_and_logs_offline(monkeypatch, caplog) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("COMET_API_KEY", "k" * 32)
    monkeypatch.setenv("COMET_URL_OVERRIDE", f"http://127.0.0.1:{port}/clientlib/")
    caplog.set_level(logging.WARNING, logger="hooktrain")

    started = time.monotonic()
    run = run_training(output_dir="out", report_to=["comet_ml"])
    assert time.monotonic() - started < 30
    assert not faults(run)
    archive = only_archive()
    assert ours(archive.metrics) == metrics_from_history(run.trainer.state.log_history)
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("hooktrain")
                if r.name == "hooktrain" and "comet_ml" in r.getMessage()]
    assert len(warnings) == 1 and "could not start an online experiment" in warnings[0]


def test_a_backend_error_mid_run_is_isolated(monkeypatch, caplog) -> None:
    import comet_ml

    calls = []
    real = comet_ml.OfflineExperiment.log_metrics

    def failing(self, *args, **kwargs):
        calls.append(kwargs.get("step"))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(comet_ml.OfflineExperiment, "log_metrics", failing)
    plain = run_training(output_dir="plain", report_to="none")
    run = run_training(output_dir="out", report_to=["comet_ml"])
    comet_ml.end()  # the switched-off plugin never ends it; comet's exit hook would

    assert run.output.global_step == plain.output.global_step
    assert faults(run) == [("comet_ml", "on_log")]
    assert calls == [2, 4], "switched off after the failure"
    reports = [r for r in caplog.records if r.name.startswith("hooktrain")
               if r.levelno >= logging.ERROR and "comet_ml" in
               r.getMessage() and r.name == "hooktrain"]
    assert len(reports) == 1


def test_a_lost_archive_is_reported_not_silent() -> None:
    """comet only logs an error when its temporary directory vanishes mid-run."""
    import comet_ml

    class Wipe(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 5:
                shutil.rmtree(comet_ml.get_running_experiment().tmpdir)

    run = run_training(output_dir="out", report_to=["comet_ml"], plugins=[Wipe()])
    assert run.output.global_step == 8
    assert faults(run) == [("comet_ml", "on_train_end")]
    assert "archive" in run.faults[0].error


def test_an_unusable_offline_directory_switches_the_plugin_off(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    run = run_training(output_dir="out", report_to=["comet_ml"],
                       plugin_settings={"comet_ml": {"offline_directory": str(blocker / "x")}})
    assert run.output.global_step == 8
    assert faults(run) == [("comet_ml", "on_train_begin")]

    # comet leaves its half-built experiment behind as the running one; the next run must
    # not log into it
    run = run_training(output_dir="next", report_to=["comet_ml"])
    assert not faults(run) and only_archive().others["status"] == "finished"


def test_evaluate_and_predict_outside_training_log_to_the_same_experiment() -> None:
    """Each call outside train() closes its own archive; uploaded, they are one experiment."""
    from hooktrain import Trainer
    from hooktrain.testing import RegressionDataset, tiny_args

    trainer = Trainer(TinyRegressor(), tiny_args("out", report_to=["comet_ml"]),
                      train_dataset=RegressionDataset(16), eval_dataset=RegressionDataset(8))
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    predicted = trainer.predict(RegressionDataset(8, seed=3)).metrics

    first, training, evaluation, prediction = read_archives(ARCHIVES)
    assert len({first.key, training.key, evaluation.key, prediction.key}) == 1
    assert first.metrics["eval/loss"] == [(0, before["eval_loss"])]
    assert training.others["status"] == "finished"
    assert evaluation.metrics["eval/loss"] == [(8, after["eval_loss"])]
    assert prediction.metrics["test/loss"] == [(8, predicted["test_loss"])]
    merged: dict[str, list] = {}
    for archive in (training, evaluation):  # train() starts a fresh log_history
        for name, points in ours(archive.metrics).items():
            merged.setdefault(name, []).extend(points)
    assert merged == metrics_from_history(trainer.state.log_history)


def test_listed_by_hooktrain_plugins() -> None:
    listing = subprocess.run([sys.executable, "-m", "hooktrain.cli", "plugins", "--json"],
                             check=True, capture_output=True, text=True)
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    assert rows["comet_ml"]["status"] == "enabled"
    assert rows["comet_ml"]["distribution"] == "hooktrain-comet-ml"
    assert {"on_train_begin", "on_log", "on_save", "on_train_end", "on_exception"} <= set(
        rows["comet_ml"]["hooks"])
