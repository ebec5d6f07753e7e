"""Non-blocking plugins: same events in the same order, off the training thread, nothing lost."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from trainers import make_trainer

from hooktrain import TrainerCallback, hookimpl
from hooktrain.plugin_host import Band
from hooktrain.testing import HookRecorder, run_training


class BackgroundRecorder(HookRecorder):
    """A HookRecorder whose calls run on a worker thread; notes each call's thread."""

    hooktrain_nonblocking = True

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.threads: set[str] = set()
        original = self.on_log

        @hookimpl
        def on_log(state, control, logs):  # slow only where it matters
            time.sleep(self.delay)
            self.threads.add(threading.current_thread().name)
            original(state, control, logs)

        self.on_log = on_log


def test_background_plugin_sees_the_same_events_in_the_same_order(tmp_path) -> None:
    background = BackgroundRecorder(delay=0.002)
    run = run_training(output_dir=tmp_path, plugins=[background], logging_steps=1,
                       eval_strategy="steps", eval_steps=3, gradient_accumulation_steps=2)

    assert background.calls == run.recorder.calls  # events, steps, epochs, flags, payloads
    assert background.threads and threading.current_thread().name not in background.threads


def test_every_log_has_run_before_train_returns(tmp_path) -> None:
    background = BackgroundRecorder(delay=0.01)
    run = run_training(output_dir=tmp_path, plugins=[background], logging_steps=1,
                       train_size=64)
    assert len(background.of("on_log")) == len(run.trainer.state.log_history)
    assert background.events[-1] == "on_train_end"


def test_state_is_a_snapshot_of_the_moment_of_the_event(tmp_path) -> None:
    seen: list[tuple[int, int]] = []

    class Slow:
        hooktrain_nonblocking = True

        @hookimpl
        def on_log(self, state):
            time.sleep(0.01)  # by now the loop has moved on
            seen.append((state.global_step, len(state.log_history)))

    run_training(output_dir=tmp_path, plugins=[Slow()], logging_steps=1, train_size=16)
    assert seen == [(step, index + 1) for index, (step, _) in enumerate(seen)]
    assert [step for step, _ in seen[:-1]] == list(range(1, len(seen)))


def test_a_failing_background_logger_is_isolated(tmp_path, caplog) -> None:
    class Flaky:
        hooktrain_nonblocking = True
        calls = 0

        @hookimpl
        def on_log(self, state):
            Flaky.calls += 1
            raise OSError("disk full")

    caplog.set_level(logging.ERROR, logger="hooktrain")
    plain = run_training(output_dir=tmp_path / "plain", logging_steps=1)
    trainer = make_trainer(tmp_path / "run", eval_size=0, logging_steps=1)
    trainer.plugin_manager.register_plugin(Flaky(), band=Band.ENTRY_POINT, name="flaky",
                                           isolated=True)
    output = trainer.train()

    assert output.global_step == plain.output.global_step
    assert Flaky.calls == 1
    assert [(f.plugin, f.hook) for f in trainer.plugin_faults] == [("flaky", "on_log")]
    assert sum("flaky" in r.getMessage() for r in caplog.records) == 1


def test_raise_mode_makes_a_background_error_fatal(tmp_path) -> None:
    class Flaky:
        hooktrain_nonblocking = True

        @hookimpl
        def on_log(self):
            raise OSError("disk full")

    trainer = make_trainer(tmp_path, eval_size=0, logging_steps=1, plugin_errors="raise")
    trainer.plugin_manager.register_plugin(Flaky(), band=Band.ENTRY_POINT, name="flaky",
                                           isolated=True)
    with pytest.raises(OSError, match="disk full"):
        trainer.train()


def test_queue_is_flushed_before_the_exception_propagates(tmp_path) -> None:
    background = BackgroundRecorder(delay=0.01)

    class Boom(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 6:
                raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_training(output_dir=tmp_path, plugins=[Boom(), background], logging_steps=1)
    assert background.events[-1] == "on_exception"
    assert [c.global_step for c in background.of("on_log")] == [1, 2, 3, 4, 5]
