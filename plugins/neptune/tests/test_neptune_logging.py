"""What the neptune plugin logs, read back from neptune's offline operation log: the trainer's
and model's parameters, every metric at every step, a run of your own, evaluate() outside train().

Every ``fetch()`` raises offline, so the fetch API is checked in debug mode (in memory; it numbers
series values by position, not by step).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from neptunefiles import expected_series, metric_series, offline_runs
from neptunetraining import FAST, offline_messages, train

import hooktrain
from hooktrain.testing import TinyRegressor, run_training

pytestmark = pytest.mark.timeout(120)


# ---- what is logged --------------------------------------------------------------------------


def test_parameters_and_every_metric_at_every_step(tmp_path: Path, caplog, said_offline,
                                                   init_calls) -> None:
    caplog.set_level(logging.INFO, logger="hooktrain")
    model = TinyRegressor()
    model.config = {"hidden": 8, "activation": "relu"}
    run = train(model=model, learning_rate=0.02, eval_strategy="steps", eval_steps=4,
                logging_steps=2, run_name="tiny")
    history = run.trainer.state.log_history
    (got,) = offline_runs(tmp_path)

    fields = got.fields
    assert fields["finetuning/trainer_parameters/learning_rate"] == 0.02
    assert fields["finetuning/trainer_parameters/output_dir"] == "out"
    assert fields["finetuning/trainer_parameters/eval_steps"] == 4
    assert fields["finetuning/trainer_parameters/report_to"] == "['neptune']"
    assert fields["finetuning/model_parameters/activation"] == "relu"
    assert fields["finetuning/model_parameters/hidden"] == 8
    assert not [k for k in fields if "model_config" in k]
    assert fields["source_code/integrations/hooktrain"] == hooktrain.__version__
    assert fields["sys/name"] == "tiny" and fields["sys/failed"] is False

    series = metric_series(got)
    assert series == expected_series(history)  # every value at every step, float64 exact
    assert {"finetuning/train/loss", "finetuning/train/grad_norm", "finetuning/eval/loss",
            "finetuning/train/epoch"} <= set(series)
    assert [s for s, _ in series["finetuning/train/loss"]] == [2, 4, 6, 8]
    assert [s for s, _ in series["finetuning/train/epoch"]] == [2, 4, 6, 8]
    final = history[-1]  # the summary: one value at the last step
    for key in ("train_runtime", "train_samples_per_second", "train_loss", "total_flos"):
        assert series[f"finetuning/train/{key}"] == [(8, final[key])]
    assert not got.files, "checkpoints are uploaded only on request"

    plugin = run.plugin("NeptunePlugin")
    assert init_calls[0]["_run"].get_state() == "stopped"  # the run the plugin started
    assert plugin.state_dict() == {"mode": "offline", "sys_id": None, "custom_run_id": None}
    (message,) = offline_messages(caplog)
    assert "NEPTUNE_API_TOKEN or NEPTUNE_PROJECT" in message and "neptune sync" in message

    train(output_dir="out2")  # said once per process
    assert len(offline_messages(caplog)) == 1
    assert len(offline_runs(tmp_path)) == 2


def test_debug_mode_through_neptunes_fetch_api(tmp_path: Path, monkeypatch, stopped,
                                              caplog, said_offline) -> None:
    monkeypatch.setenv("NEPTUNE_MODE", "debug")
    run = train(learning_rate=0.03, eval_strategy="steps", eval_steps=4)

    (snapshot,) = stopped
    assert snapshot["fields"]["finetuning/trainer_parameters/learning_rate"] == 0.03
    assert snapshot["fields"]["sys/failed"] is False
    expected = expected_series(run.trainer.state.log_history)
    assert snapshot["series"] == {k: [v for _, v in points] for k, points in expected.items()}
    assert snapshot["seconds"] == 60.0
    plugin = run.plugin("NeptunePlugin")
    assert plugin.mode == "debug" and plugin.sys_id is None
    assert not (tmp_path / ".neptune" / "offline").exists() and not offline_messages(caplog)


def test_a_run_of_your_own(tmp_path: Path) -> None:
    import neptune

    from hooktrain_neptune import NeptunePlugin, NeptuneSettings

    mine = neptune.init_run(mode="debug", **FAST)
    plugin = NeptunePlugin(NeptuneSettings(base_namespace=""), run=mine)
    run = run_training(output_dir="out", report_to="none", plugins=[plugin])

    assert mine.get_state() == "started", "the plugin leaves a run it did not start open"
    assert mine["trainer_parameters/output_dir"].fetch() == "out"
    expected = expected_series(run.trainer.state.log_history, base="")
    assert list(mine["train/loss"].fetch_values()["value"]) == [
        v for _, v in expected["train/loss"]]
    assert not mine.exists("finetuning")
    mine.stop()
    with pytest.raises(TypeError, match="neptune.Run"):
        NeptunePlugin(run=object())


def test_evaluate_outside_train_logs_into_new_offline_runs(tmp_path: Path, caplog) -> None:
    from hooktrain import Trainer
    from hooktrain.testing import RegressionDataset, tiny_args

    args = tiny_args("out", report_to=["neptune"], plugin_settings={"neptune": {"init_run": FAST}})
    trainer = Trainer(TinyRegressor(), args, train_dataset=RegressionDataset(16),
                      eval_dataset=RegressionDataset(8, seed=1))
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    runs = offline_runs(tmp_path)  # offline, a stopped run cannot be reopened: one run each
    assert [r.series.get("finetuning/eval/loss") for r in runs] == [
        [(0, before["eval_loss"])], None, [(8, after["eval_loss"])]]
    assert metric_series(runs[1]) == expected_series(trainer.state.log_history[:-1])
    assert [r.fields["sys/name"] for r in runs] == ["out"] * 3
    assert sum("cannot be reopened" in r.getMessage() for r in caplog.records
               if r.name.startswith("hooktrain")) == 2
