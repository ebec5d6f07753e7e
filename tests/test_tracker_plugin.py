"""``hooktrain.plugin.TrackerPlugin``: the run lifecycle tracker plugins inherit.

A small in-memory tracker stands in for a tracking library: each "run" records what was logged
and how it ended, which is exactly what the base class decides.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from typing import Literal

import pytest

from hooktrain import Trainer
from hooktrain.errors import ConfigError, PluginError
from hooktrain.plugin import TrackerPlugin, hookimpl, setting
from hooktrain.plugin_host import Band
from hooktrain.testing import RegressionDataset, TinyRegressor, run_training, tiny_args


@dataclass
class Run:
    id: str
    metrics: list[tuple[int, dict[str, float]]]
    ended: str | None = None


@dataclass
class MemorySettings:
    project: str = setting("default", env="MEMORY_PROJECT")
    log_model: Literal["false", "end"] = setting("false", env="MEMORY_LOG_MODEL")


class MemoryTracker(TrackerPlugin):
    plugin_name = "memory"
    settings = MemorySettings

    def __init__(self, settings: MemorySettings | None = None, *, user_run: Run | None = None,
                 fail_at_step: int | None = None) -> None:
        super().__init__(settings)
        self.runs: dict[str, Run] = {}
        self.user_run = user_run
        self.fail_at_step = fail_at_step
        self.finals: list[str] = []

    def open_run(self, args, state, model, run_id):
        self.opened_resuming = getattr(self, "opened_resuming", []) + [self.resuming]
        if self.user_run is not None:
            self.owns_run = False
            return self.user_run
        if run_id is not None and run_id in self.runs:
            run = self.runs[run_id]
            run.ended = None
            return run
        run = self.runs.setdefault(run_id or f"run{len(self.runs)}",
                                   Run(run_id or f"run{len(self.runs)}", []))
        return run

    def log_metrics(self, run, metrics, state):
        if state.global_step == self.fail_at_step:
            raise OSError("disk full")
        run.metrics.append((state.global_step, metrics))

    def before_finish(self, run, args, state, model):
        self.finals.append(run.id)

    def finish_run(self, run, failure):
        run.ended = "ok" if failure is None else f"failed: {type(failure).__name__}"
        if self.own_fault:
            run.ended += " (in the plugin)"

    @hookimpl
    def on_evaluate(self) -> None:
        with self.failing():
            pass


def test_one_run_per_train_logged_at_each_step_and_finished(tmp_path):
    tracker = MemoryTracker()
    run_training(tmp_path, plugins=[tracker], max_steps=4, logging_steps=2)
    (run,) = tracker.runs.values()
    assert [step for step, _ in run.metrics if "loss" in _] == [2, 4]
    assert run.ended == "ok" and tracker.finals == [run.id]
    assert tracker.state_dict() == {"run_id": run.id}


def test_a_failing_hook_closes_the_run_as_failed_and_training_goes_on(tmp_path):
    tracker = MemoryTracker(fail_at_step=2)
    trainer = Trainer(model=TinyRegressor(), args=tiny_args(tmp_path, max_steps=4, logging_steps=2),
                      train_dataset=RegressionDataset(16))
    # as hooktrain registers an installed plugin: isolated, so its errors never stop training
    trainer.plugin_manager.register_plugin(tracker, band=Band.ENTRY_POINT, name="memory",
                                           isolated=True)
    trainer.train()
    (tracked,) = tracker.runs.values()
    assert tracked.ended == "failed: OSError (in the plugin)"
    assert trainer.state.global_step == 4
    assert [(f.plugin, f.hook) for f in trainer.plugin_faults] == [("memory", "on_log")]


def test_a_failing_user_callback_closes_its_run_before_the_error_propagates(tmp_path):
    tracker = MemoryTracker(fail_at_step=2)
    with pytest.raises(OSError, match="disk full"):
        run_training(tmp_path, plugins=[tracker], max_steps=4, logging_steps=2)
    (tracked,) = tracker.runs.values()
    assert tracked.ended == "failed: OSError (in the plugin)"


def test_resume_reopens_the_checkpoint_run(tmp_path):
    first = MemoryTracker()
    run_training(tmp_path, plugins=[first], max_steps=2, save_strategy="steps", save_steps=2,
                 logging_steps=1)
    (run_id,) = first.runs
    second = MemoryTracker()
    second.runs = first.runs  # the same "server"
    run_training(tmp_path, plugins=[second], max_steps=4, logging_steps=1,
                 resume_from_checkpoint=True)
    assert list(second.runs) == [run_id]
    assert second.opened_resuming == [True] and first.opened_resuming == [False]
    assert [s for s, _ in second.runs[run_id].metrics if s > 2][:1] == [3]


def test_a_users_run_is_logged_into_and_left_open(tmp_path):
    users = Run("mine", [])
    tracker = MemoryTracker(user_run=users)
    run_training(tmp_path, plugins=[tracker], max_steps=2, logging_steps=1)
    assert users.metrics and users.ended is None


def test_a_second_train_opens_a_new_run(tmp_path):
    tracker = MemoryTracker()
    run = run_training(tmp_path, plugins=[tracker], max_steps=2, logging_steps=1)
    run.trainer.args.max_steps = 4
    run.trainer.train()
    assert len(tracker.runs) == 2 and all(r.ended == "ok" for r in tracker.runs.values())


def test_evaluate_after_train_logs_into_its_run_and_the_next_train_opens_another(tmp_path):
    tracker = MemoryTracker()
    run = run_training(tmp_path, plugins=[tracker], max_steps=2, logging_steps=1)
    run.trainer.evaluate()
    (first,) = tracker.runs.values()
    assert "eval_loss" in first.metrics[-1][1]
    run.trainer.args.max_steps = 4
    run.trainer.train()
    assert len(tracker.runs) == 2 and all(r.ended == "ok" for r in tracker.runs.values())
    assert not any("eval_loss" in m for _, m in tracker.runs["run1"].metrics[:1])


def test_literal_settings_are_checked_from_python_environment_and_config(monkeypatch):
    with pytest.raises(ConfigError, match=r"log_model must be one of 'false', 'end'"):
        MemoryTracker(MemorySettings(log_model="sometimes"))  # type: ignore[arg-type]
    assert MemoryTracker(MemorySettings(log_model="END")).config.log_model == "end"
    monkeypatch.setenv("MEMORY_LOG_MODEL", "End")
    monkeypatch.setenv("MEMORY_PROJECT", "p")
    assert (MemoryTracker().config.log_model, MemoryTracker().config.project) == ("end", "p")
    monkeypatch.setenv("MEMORY_LOG_MODEL", "maybe")
    with pytest.raises(ConfigError, match=r"\(from \$MEMORY_LOG_MODEL\) must be one of"):
        MemoryTracker()


def test_an_unmarked_override_of_a_hook_is_refused(tmp_path):
    class Forgot(MemoryTracker):
        def on_log(self, args, state, model, logs):  # no @hookimpl: would never be called
            pass

    with pytest.raises(PluginError, match="on_log"):
        run_training(tmp_path, plugins=[Forgot()], max_steps=1)


def test_the_plugin_author_module_does_not_import_torch():
    code = "import sys, hooktrain.plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_boolean_or_choice_setting_names_both_in_its_error():
    from hooktrain.plugin_host.settings import coerce

    annotation = bool | Literal["all"]
    assert (coerce("Yes", annotation, "x"), coerce("ALL", annotation, "x")) == (True, "all")
    with pytest.raises(ConfigError, match=r"x must be true, false or one of 'all', got 'some'"):
        coerce("some", annotation, "x")


def test_a_checkpoint_run_id_is_not_kept_past_the_train_that_resumed(tmp_path):
    first = MemoryTracker()
    run_training(tmp_path, plugins=[first], max_steps=2, save_strategy="steps", save_steps=2,
                 logging_steps=1)
    tracker = MemoryTracker()
    tracker.runs = first.runs
    trainer = Trainer(model=TinyRegressor(), args=tiny_args(tmp_path, max_steps=4, logging_steps=1),
                      train_dataset=RegressionDataset(16), eval_dataset=RegressionDataset(8),
                      callbacks=[tracker])
    trainer.evaluate()  # opens a run before the resumed train(), which goes on in it
    trainer.train(resume_from_checkpoint=True)
    assert tracker.resume_id is None and not tracker.resuming
    trainer.args.max_steps = 6
    trainer.train()  # a new run: not the checkpoint's run again
    assert len(tracker.runs) == 3
