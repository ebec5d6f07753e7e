"""Resume restores every plugin's state (issue 4): per instance, HF-style and pluggy-style,
early-stopping counters, one warning for a plugin in only one of checkpoint and run; and the new
arguments, not the checkpoint, decide the schedule and max_steps.

Interrupted runs are stopped by a callback that raises right after the checkpoint at step K was
written (``checkpoint_runs.py``); parity with an uninterrupted run is in ``test_resume.py``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import torch
from checkpoint_runs import resumable_trainer, run_interrupted

from hooktrain import EarlyStoppingCallback, ExportableState, TrainerCallback, hookimpl
from hooktrain.testing import HookRecorder

# ---- plugin state ----------------------------------------------------------------------------


class StepCounter(TrainerCallback, ExportableState):
    """HF-style stateful callback: counts optimizer steps by ``increment``."""

    def __init__(self, increment: int = 1) -> None:
        self.increment = increment
        self.count = 0
        self.at_train_begin: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.at_train_begin = self.count

    def on_step_end(self, args, state, control, **kwargs):
        self.count += self.increment

    def state(self) -> dict[str, Any]:
        return {"args": {"increment": self.increment}, "attributes": {"count": self.count}}


class PluggyCounter:
    """Pluggy-style stateful plugin with state_dict / load_state_dict."""

    def __init__(self, increment: int = 1) -> None:
        self.increment = increment
        self.count = 0
        self.loaded: list[dict[str, Any]] = []
        self.at_train_begin: int | None = None

    @hookimpl
    def on_train_begin(self, state):
        self.at_train_begin = self.count

    @hookimpl
    def on_step_end(self, state):
        self.count += self.increment

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loaded.append(dict(state))
        self.count = state["count"]


def test_plugin_states_are_restored_per_instance(tmp_path):
    out = tmp_path / "run"
    kwargs = {"num_train_epochs": 3}  # 12 steps
    first = [StepCounter(1), StepCounter(10), PluggyCounter(1), PluggyCounter(100)]
    run_interrupted(out, 6, plugins=first, **kwargs)
    assert [p.count for p in first] == [6, 60, 6, 600]

    stored = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
    states = stored["stateful_callbacks"]
    plugin_states = {k: v for k, v in states.items()
                     if k not in ("TrainerControl", "HooktrainTimings")}
    assert len(plugin_states) == 4, states  # one key per instance
    assert all(isinstance(v, dict) for v in plugin_states.values())  # replaced, never appended
    counts = sorted(v["attributes"]["count"] if "attributes" in v else v["count"]
                    for v in plugin_states.values())
    assert counts == [6, 6, 60, 600]

    second = [StepCounter(1), StepCounter(10), PluggyCounter(1), PluggyCounter(100)]
    resumable_trainer(out, plugins=second, **kwargs).train(
        resume_from_checkpoint=str(out / "checkpoint-6"))
    assert [p.at_train_begin for p in second] == [6, 60, 6, 600]
    assert [p.count for p in second] == [12, 120, 12, 1200]
    assert second[2].loaded == [{"count": 6}] and second[3].loaded == [{"count": 600}]


def test_plugin_state_is_replaced_at_every_save_not_appended(tmp_path):
    """HF #33875: with two instances of one class, each save appended both states again."""
    out = tmp_path / "run"
    resumable_trainer(out, plugins=[StepCounter(1), StepCounter(2)], save_steps=2).train()
    for step in (2, 4, 6, 8):
        states = json.loads((out / f"checkpoint-{step}" / "trainer_state.json").read_text())
        plugin = {k: v for k, v in states["stateful_callbacks"].items()
                  if k not in ("TrainerControl", "HooktrainTimings")}
        assert sorted(v["attributes"]["count"] for v in plugin.values()) == [step, 2 * step]


def test_plugin_state_restored_by_default_without_opt_in(tmp_path):
    """HF restores callback state only with restore_callback_states_from_checkpoint=True."""
    out = tmp_path / "run"
    run_interrupted(out, 3, plugins=[StepCounter(1)])
    counter = StepCounter(1)
    resumable_trainer(out, plugins=[counter]).train(resume_from_checkpoint=True)
    assert counter.at_train_begin == 3
    assert counter.count == 8


SCORES = [1.0, 1.0, 1.2, 1.2, 1.2, 1.2]  # one per evaluation, every 2 of 12 steps


def _scores(values: list[float]):
    calls = iter(values)

    def compute_metrics(prediction: Any) -> dict[str, float]:
        return {"score": next(calls)}

    return compute_metrics


ES_ARGS = {
    "num_train_epochs": 3, "eval_size": 8, "eval_strategy": "steps", "eval_steps": 2,
    "save_steps": 2, "metric_for_best_model": "score", "greater_is_better": True,
}


def _two_early_stoppers() -> list[EarlyStoppingCallback]:
    return [EarlyStoppingCallback(early_stopping_patience=100, early_stopping_threshold=0.0),
            EarlyStoppingCallback(early_stopping_patience=50, early_stopping_threshold=0.5)]


def test_two_early_stopping_callbacks_keep_their_own_counters(tmp_path):
    reference = _two_early_stoppers()
    resumable_trainer(
        tmp_path / "reference", plugins=reference, compute_metrics=_scores(SCORES), **ES_ARGS,
    ).train()
    assert [c.early_stopping_patience_counter for c in reference] == [3, 5]

    out = tmp_path / "run"
    first = _two_early_stoppers()
    run_interrupted(out, 8, plugins=first, compute_metrics=_scores(SCORES), **ES_ARGS)
    assert [c.early_stopping_patience_counter for c in first] == [1, 3]

    seen: dict[str, list[int]] = {}

    class AtLoad(TrainerCallback):
        def on_load_checkpoint(self, args, state, control, **kwargs):
            seen["at_load"] = [c.early_stopping_patience_counter for c in second]

    second = _two_early_stoppers()
    trainer = resumable_trainer(
        out, plugins=[*second, AtLoad()], compute_metrics=_scores(SCORES[4:]), **ES_ARGS,
    )
    trainer.train(resume_from_checkpoint=str(out / "checkpoint-8"))
    assert seen["at_load"] == [1, 3]
    assert [c.early_stopping_patience_counter for c in second] == [3, 5]
    assert [c.early_stopping_patience for c in second] == [100, 50]
    assert trainer.state.global_step == 12


def test_two_identical_early_stopping_callbacks_never_crash_mid_run(tmp_path):
    """Two EarlyStoppingCallbacks with the same settings share a state_key. Either the Trainer
    refuses them before training starts, or it keys them apart (docs/checkpoints.md: per instance, two
    EarlyStoppingCallbacks keep their own state); it must not fail at the first checkpoint,
    after hours of training, with advice the user cannot follow for a built-in callback."""
    out = tmp_path / "run"
    stoppers = [EarlyStoppingCallback(100), EarlyStoppingCallback(100)]
    trainer = None
    try:
        trainer = resumable_trainer(
            out, plugins=stoppers, compute_metrics=_scores(SCORES), **ES_ARGS,
        )
        trainer.train()
    except Exception:  # noqa: BLE001 - refusing up front is acceptable
        steps = trainer.state.global_step if trainer is not None else 0
        assert steps == 0, f"failed after {steps} training steps, at the first checkpoint"
        return
    assert trainer.state.global_step == 12
    resumed = [EarlyStoppingCallback(100), EarlyStoppingCallback(100)]
    resumable_trainer(out, plugins=resumed, compute_metrics=_scores([]), **ES_ARGS).train(
        resume_from_checkpoint=True)
    assert [c.early_stopping_patience_counter for c in resumed] == [
        c.early_stopping_patience_counter for c in stoppers]


def _warnings_naming(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "hooktrain" and r.levelno == logging.WARNING and text in r.getMessage()]


def test_plugin_in_checkpoint_but_not_in_run_is_one_warning(tmp_path, caplog):
    out = tmp_path / "run"
    run_interrupted(out, 3, plugins=[StepCounter(1)])
    with caplog.at_level(logging.WARNING, logger="hooktrain"):
        trainer = resumable_trainer(out)
        trainer.train(resume_from_checkpoint=True)
    assert trainer.state.global_step == 8
    assert len(_warnings_naming(caplog, "StepCounter")) == 1, caplog.text


def test_new_stateful_plugin_not_in_checkpoint_is_one_warning(tmp_path, caplog):
    out = tmp_path / "run"
    run_interrupted(out, 3)
    counter, pluggy_counter = StepCounter(1), PluggyCounter(1)
    with caplog.at_level(logging.WARNING, logger="hooktrain"):
        trainer = resumable_trainer(out, plugins=[counter, pluggy_counter])
        trainer.train(resume_from_checkpoint=True)
    assert trainer.state.global_step == 8
    assert len(_warnings_naming(caplog, "StepCounter")) == 1, caplog.text
    assert len(_warnings_naming(caplog, "PluggyCounter")) == 1, caplog.text
    assert counter.count == 5 and pluggy_counter.count == 5  # started fresh at step 3
    assert pluggy_counter.loaded == []
    # HF bug: a new stateful callback raised KeyError at the next save; here it is saved
    states = json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())
    keys = " ".join(states["stateful_callbacks"])
    assert "StepCounter" in keys and "PluggyCounter" in keys


def test_new_arguments_schedule_wins_over_the_checkpoint(tmp_path):
    """HF #36303: the checkpoint's logging/eval/save steps must not override new arguments."""
    out = tmp_path / "run"
    old = {"num_train_epochs": 3, "eval_size": 8, "eval_strategy": "steps"}
    run_interrupted(out, 4, logging_steps=2, eval_steps=2, save_steps=2, **old)
    saves: list[int] = []

    class Saves(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            saves.append(state.global_step)

    trainer = resumable_trainer(
        out, plugins=[Saves()], logging_steps=3, eval_steps=3, save_steps=3, **old,
    )
    trainer.train(resume_from_checkpoint=str(out / "checkpoint-4"))
    state = trainer.state
    assert (state.logging_steps, state.eval_steps, state.save_steps) == (3, 3, 3)
    loss_steps = [e["step"] for e in state.log_history if "loss" in e]
    eval_steps = [e["step"] for e in state.log_history if "eval_loss" in e]
    assert loss_steps == [2, 4, 6, 9, 12]
    assert eval_steps == [2, 4, 6, 9, 12]
    assert saves == [6, 9, 12]
    stored = json.loads((out / "checkpoint-12" / "trainer_state.json").read_text())
    assert (stored["logging_steps"], stored["eval_steps"], stored["save_steps"]) == (3, 3, 3)


ES_STOP_ARGS = {
    "num_train_epochs": 3, "eval_size": 8, "eval_strategy": "steps", "eval_steps": 2,
    "save_steps": 2, "metric_for_best_model": "score", "greater_is_better": True,
}


@pytest.mark.parametrize("resume", ["path", True])
def test_resume_after_early_stopping_trains_on_until_the_restored_counter_stops_it(tmp_path,
                                                                                    resume):
    """As HF: the stop is not carried over, the stopper's counter is; the first evaluation that
    does not improve stops the resumed run again."""
    out = tmp_path / "run"
    stopper = EarlyStoppingCallback(early_stopping_patience=1)
    first = resumable_trainer(
        out, plugins=[stopper], compute_metrics=_scores([2.0, 1.0, 3.0, 4.0]), **ES_STOP_ARGS,
    )
    first.train()
    assert first.state.global_step == 4  # stopped by early stopping, max_steps is 12
    assert stopper.early_stopping_patience_counter == 1
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-2", "checkpoint-4"]

    recorder = HookRecorder()
    again_stopper = EarlyStoppingCallback(early_stopping_patience=1)
    again = resumable_trainer(
        out, plugins=[again_stopper, recorder], compute_metrics=_scores([0.5, 4.0, 5.0, 6.0]),
        **ES_STOP_ARGS,
    )
    again.train(resume_from_checkpoint=str(out / "checkpoint-4") if resume == "path" else True)
    assert [c.global_step for c in recorder.of("on_evaluate")] == [6]
    assert again.state.global_step == 6
    assert again_stopper.early_stopping_patience_counter == 2


def test_a_run_a_callback_stopped_continues_when_resumed_to_the_uninterrupted_weights(tmp_path):
    class StopAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 4:
                control.should_training_stop = True

    schedule = {"max_steps": 8, "save_steps": 4}
    reference = resumable_trainer(tmp_path / "reference", **schedule)
    reference.train()
    out = tmp_path / "run"
    resumable_trainer(out, plugins=[StopAt()], **schedule).train()
    resumed = resumable_trainer(out, **schedule)
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 8
    for key, value in resumed.model.state_dict().items():
        assert torch.equal(value, reference.model.state_dict()[key]), key


def test_resume_with_larger_max_steps_continues_a_finished_run(tmp_path):
    """The stop saved at the old max_steps does not stop a longer run (docs/checkpoints.md)."""
    out = tmp_path / "run"
    resumable_trainer(out, max_steps=6).train()
    trainer = resumable_trainer(out, max_steps=10)
    trainer.train(resume_from_checkpoint=True)
    assert trainer.state.global_step == 10


def test_a_default_early_stopper_resumes_with_the_saved_patience_and_counter(tmp_path):
    """HF 5.x rebuilds a stateful callback from its saved arguments: a default
    EarlyStoppingCallback() takes over the saved one (patience 3, counter 1), matched by class
    since its key (which names its settings) differs."""
    out = tmp_path / "run"
    schedule = {k: v for k, v in ES_STOP_ARGS.items() if k != "num_train_epochs"}
    first = EarlyStoppingCallback(early_stopping_patience=3)
    resumable_trainer(
        out, plugins=[first], compute_metrics=_scores([2.0, 1.0, 3.0]), max_steps=4, **schedule,
    ).train()
    assert first.early_stopping_patience_counter == 1
    default = EarlyStoppingCallback()
    resumed = resumable_trainer(out, plugins=[default], max_steps=4, **schedule)
    resumed.train(resume_from_checkpoint=True)
    assert (default.early_stopping_patience, default.early_stopping_patience_counter) == (3, 1)
