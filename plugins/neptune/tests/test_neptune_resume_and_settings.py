"""A neptune run's status and identity: a failed training marks its run failed, a resumed one
keeps its run (offline: the same custom_run_id; online: reattached by sys/id); the settings
against neptune's environment variables and the entry point; a neptune run that fails mid-training
is isolated and training finishes."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from neptunefiles import expected_series, metric_series, offline_runs
from neptunetraining import offline_messages, train

from hooktrain import hookimpl
from hooktrain.testing import FailAtStep, run_training

pytestmark = pytest.mark.timeout(120)


# ---- status, resume --------------------------------------------------------------------------


def test_a_failing_training_marks_the_run_failed_then_stops_it(tmp_path: Path, init_calls) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        train(plugins=[FailAtStep(5)])
    (got,) = offline_runs(tmp_path)
    assert got.fields["sys/failed"] is True
    assert got.fields["finetuning/error"] == "RuntimeError: boom"
    assert [s for s, _ in got.series["finetuning/train/loss"]] == [2, 4]
    (call,) = init_calls
    assert call["_run"].get_state() == "stopped"


def test_resumed_offline_training_keeps_its_identity(tmp_path: Path, monkeypatch, init_calls,
                                                     caplog) -> None:
    monkeypatch.setenv("NEPTUNE_CUSTOM_RUN_ID", "my-training")
    common = dict(save_strategy="steps", save_steps=4, eval_strategy="steps", eval_steps=2)
    with pytest.raises(RuntimeError, match="boom"):
        train(plugins=[FailAtStep(7)], **common)
    stored = json.loads((tmp_path / "out" / "checkpoint-4" / "trainer_state.json").read_text())
    assert stored["stateful_callbacks"]["NeptunePlugin#0"] == {
        "mode": "offline", "sys_id": None, "custom_run_id": "my-training"}

    monkeypatch.delenv("NEPTUNE_CUSTOM_RUN_ID")  # the id comes from the checkpoint now
    run = train(resume_from_checkpoint=True, **common)
    assert [c["custom_run_id"] for c in init_calls] == ["my-training", "my-training"]
    assert all("with_id" not in c for c in init_calls), "an offline run cannot be reopened"
    assert sum("cannot be reopened" in r.getMessage() for r in caplog.records
               if r.name.startswith("hooktrain")) == 1

    first, second = offline_runs(tmp_path)  # offline, each process writes its own run
    history = run.trainer.state.log_history
    assert first.fields["sys/failed"] is True and second.fields["sys/failed"] is False
    assert metric_series(second) == expected_series(history, after=4)
    def until_4(series: dict) -> dict:
        return {k: kept for k, v in series.items() if (kept := [p for p in v if p[0] <= 4])}

    assert until_4(metric_series(first)) == until_4(expected_series(history))
    assert second.fields["finetuning/trainer_parameters/save_steps"] == 4


def test_resumed_online_training_reattaches_by_id(tmp_path: Path, monkeypatch, stopped,
                                                  caplog) -> None:
    """Online needs a server: neptune.init_run is pointed at debug mode, which has sys/id."""
    import neptune

    calls: list[dict[str, Any]] = []
    original = neptune.init_run

    def init_run(**kwargs):
        calls.append(dict(kwargs))
        for key in ("with_id", "project", "api_token"):  # debug mode knows no server
            kwargs.pop(key, None)
        return original(**{**kwargs, "mode": "debug"})

    monkeypatch.setattr(neptune, "init_run", init_run)
    monkeypatch.setenv("NEPTUNE_API_TOKEN", "token")
    monkeypatch.setenv("NEPTUNE_PROJECT", "team/project")
    common = dict(save_strategy="steps", save_steps=4)
    with pytest.raises(RuntimeError, match="boom"):
        train(plugins=[FailAtStep(7)], **common)
    state = json.loads((tmp_path / "out" / "checkpoint-4" / "trainer_state.json").read_text())
    sys_id = state["stateful_callbacks"]["NeptunePlugin#0"]["sys_id"]
    assert sys_id and state["stateful_callbacks"]["NeptunePlugin#0"]["mode"] == "async"

    run = train(resume_from_checkpoint=True, **common)
    run.trainer.evaluate()
    assert [(c["mode"], c.get("with_id"), c["project"], c["api_token"]) for c in calls] == [
        ("async", None, "team/project", "token"),
        ("async", sys_id, "team/project", "token"),   # the resume: the same run
        ("async", sys_id, "team/project", "token"),   # evaluate() after train()
    ]
    assert "custom_run_id" not in calls[1]  # neptune refuses with_id and custom_run_id together
    assert [s["fields"]["sys/failed"] for s in stopped] == [True, False, False]
    resumed = expected_series(run.trainer.state.log_history, after=4)["finetuning/train/loss"]
    assert stopped[1]["series"]["finetuning/train/loss"] == [v for _, v in resumed]
    assert not offline_messages(caplog) and not (tmp_path / ".neptune" / "offline").exists()


# ---- settings --------------------------------------------------------------------------------


def test_settings_win_over_the_environment(tmp_path: Path, monkeypatch, caplog,
                                          said_offline) -> None:
    from hooktrain.plugin import ConfigError
    from hooktrain_neptune import NeptunePlugin

    monkeypatch.setenv("NEPTUNE_MODE", "DEBUG")
    monkeypatch.setenv("NEPTUNE_PROJECT", "env/project")
    built = NeptunePlugin()  # built by hand: neptune's variables apply
    assert (built.config.mode, built.config.project) == ("debug", "env/project")

    run = train(settings={"mode": "offline", "base_namespace": "", "name": "chosen"})
    plugin = run.plugin(NeptunePlugin)
    assert (plugin.config.mode, plugin.config.project) == ("offline", "env/project")
    (got,) = offline_runs(tmp_path)
    assert got.fields["sys/name"] == "chosen"
    assert "trainer_parameters/learning_rate" in got.fields and "train/loss" in got.series
    assert metric_series(got, base="") == expected_series(run.trainer.state.log_history, base="")

    # online asked for, a token but no project: offline, said once, naming what is missing
    monkeypatch.delenv("NEPTUNE_PROJECT")
    monkeypatch.setenv("NEPTUNE_MODE", "async")
    monkeypatch.setenv("NEPTUNE_API_TOKEN", "token")
    assert train(output_dir="out2").plugin(NeptunePlugin).mode == "offline"
    (message,) = offline_messages(caplog)
    assert "no NEPTUNE_PROJECT;" in message

    for key, value, error in (("mode", "read-only", r"mode.*'async', 'sync', 'offline', 'debug'"),
                              ("log_checkpoints", "sometimes", r"log_checkpoints.*'same', 'last'")):
        with pytest.raises(ConfigError, match=error):
            train(settings={key: value})
    with pytest.raises(ConfigError, match=r"init_run may not set mode, with_id: use the"):
        train(settings={"init_run": {"with_id": "X-1", "mode": "debug", "tags": ["a"]}})
    assert NeptunePlugin().config.log_checkpoints is None
    monkeypatch.setenv("NEPTUNE_MODE", "")
    run = train(output_dir="out3", settings={"log_checkpoints": "None"})
    assert run.plugin(NeptunePlugin).config.log_checkpoints is None


def test_network_bounds_are_set_unless_chosen(monkeypatch) -> None:
    from hooktrain_neptune import NeptunePlugin

    monkeypatch.delenv("NEPTUNE_REQUEST_TIMEOUT")
    monkeypatch.setenv("NEPTUNE_RETRIES_TIMEOUT", "7")
    NeptunePlugin()
    import os

    assert os.environ["NEPTUNE_REQUEST_TIMEOUT"] == "30"
    assert os.environ["NEPTUNE_RETRIES_TIMEOUT"] == "7"


def test_installed_entry_point_and_report_to_all(tmp_path: Path, init_calls) -> None:
    """Also neptune's own defaults: stdout/stderr capture, hardware metrics, source files."""
    from importlib.metadata import entry_points

    from hooktrain_neptune import NeptunePlugin

    (ep,) = [e for e in entry_points(group="hooktrain.plugins") if e.name == "neptune"]
    assert ep.load() is NeptunePlugin and ep.dist.name == "hooktrain-neptune"
    run = run_training(output_dir="out", report_to="all")
    assert init_calls[0]["_run"].get_state() == "stopped"  # the run the plugin started
    (got,) = offline_runs(tmp_path)
    assert metric_series(got) == expected_series(run.trainer.state.log_history)
    assert any(k.startswith("monitoring/") for k in got.fields)


# ---- faults ----------------------------------------------------------------------------------


def test_a_failing_backend_mid_run_is_isolated(tmp_path: Path, init_calls, caplog) -> None:
    class StopTheRun:
        """After the step-4 log the neptune run is gone: every later write raises."""

        @hookimpl
        def on_step_end(self, state) -> None:
            if state.global_step == 5:
                init_calls[0]["_run"].stop()

    caplog.set_level(logging.ERROR, logger="hooktrain")
    run = train(plugins=[StopTheRun()])
    assert run.output.global_step == 8
    faults = run.faults
    assert [(f.plugin.split()[0], f.hook) for f in faults] == [("neptune", "on_log")]
    assert "InactiveRunException" in faults[0].error
    assert sum("neptune" in r.getMessage() for r in caplog.records
               if r.name.startswith("hooktrain")) == 1
    (got,) = offline_runs(tmp_path)
    assert [s for s, _ in got.series["finetuning/train/loss"]] == [2, 4]


@pytest.mark.parametrize("spelling", ["none", "None", "false", "no", "off", "0", False])
def test_false_spellings_of_log_checkpoints_mean_none(spelling) -> None:
    from hooktrain_neptune import NeptunePlugin, NeptuneSettings

    assert NeptunePlugin(NeptuneSettings(log_checkpoints=spelling)).config.log_checkpoints is None
