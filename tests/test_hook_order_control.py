"""Golden hook order when a run ends early (Lightning ``test_hooks.py`` style): early stopping,
``should_epoch_stop``, a stop requested at a substep, and ``on_exception``.

Each test compares the whole trace with a literal list (format: ``hook_trace.py``); the
reference for every list is transformers' own Trainer (HF 5.23, verified; docs/events.md).
"""

from __future__ import annotations

from typing import Any

import pytest
from hook_trace import EVAL, SUMMARY, trace, update
from trainers import make_trainer

from hooktrain import EarlyStoppingCallback, TrainerCallback, hookimpl

# ---- e. early stopping -------------------------------------------------------------------


def test_early_stopping_ends_the_run_after_the_triggering_evaluation(tmp_path, hook_recorder):
    # learning_rate=0: the weights never move, so eval_loss at step 6 equals that at step 3 and
    # patience 1 runs out at the second evaluation, in the middle of epoch 1.
    trainer = make_trainer(
        tmp_path, plugins=[EarlyStoppingCallback(early_stopping_patience=1), hook_recorder],
        train_size=8, eval_size=4, per_device_train_batch_size=2, max_steps=10, learning_rate=0.0,
        logging_steps=100, eval_strategy="steps", eval_steps=3, metric_for_best_model="loss",
    )
    output = trainer.train()

    assert trace(hook_recorder) == [
        ("on_init_end", 0, 0, "-"),
        ("on_train_begin", 0, 0, "-"),
        ("on_epoch_begin", 0, 0, "-"),
        *update(0, 0, 0.25),
        *update(1, 0.25, 0.5),
        *update(2, 0.5, 0.75, "E"),
        ("on_prediction_step", 3, 0.75, "E"),
        ("on_pre_log", 3, 0.75, "E", EVAL),
        ("on_log", 3, 0.75, "E", EVAL),
        ("on_evaluate", 3, 0.75, "-", EVAL),  # first evaluation sets the best metric
        *update(3, 0.75, 1.0),
        ("on_epoch_end", 4, 1.0, "-"),
        ("on_epoch_begin", 4, 1.0, "-"),
        *update(4, 1.0, 1.25),
        *update(5, 1.25, 1.5, "E"),
        ("on_prediction_step", 6, 1.5, "E"),
        ("on_pre_log", 6, 1.5, "E", EVAL),
        ("on_log", 6, 1.5, "E", EVAL),
        ("on_evaluate", 6, 1.5, "T", EVAL),  # no improvement: patience exhausted
        ("on_epoch_end", 6, 1.5, "T"),  # the epoch is cut short ...
        ("on_pre_log", 6, 1.5, "T", SUMMARY),
        ("on_log", 6, 1.5, "T", SUMMARY),  # ... and no further epoch begins
        ("on_train_end", 6, 1.5, "T"),
    ]
    assert output.global_step == 6 < trainer.state.max_steps == 10


def test_should_epoch_stop_ends_only_the_current_epoch(tmp_path, hook_recorder):
    class EndFirstEpochEarly:
        @hookimpl
        def on_step_end(self, state, control) -> None:
            if state.global_step == 1:
                control.should_epoch_stop = True

    trainer = make_trainer(
        tmp_path, plugins=[EndFirstEpochEarly(), hook_recorder], train_size=8,
        per_device_train_batch_size=2, logging_steps=100,
    )
    output = trainer.train()

    assert trace(hook_recorder) == [
        ("on_init_end", 0, 0, "-"),
        ("on_train_begin", 0, 0, "-"),
        ("on_epoch_begin", 0, 0, "-"),
        *update(0, 0, 0.25),
        ("on_epoch_end", 1, 0.25, "-"),  # three batches of epoch 0 never run
        ("on_epoch_begin", 1, 0.25, "-"),
        *update(1, 0.25, 1.25),
        *update(2, 1.25, 1.5),
        *update(3, 1.5, 1.75),
        *update(4, 1.75, 2.0),
        ("on_epoch_end", 5, 2.0, "-"),  # the epochs ran out before max_steps (8): no stop flag
        ("on_pre_log", 5, 2.0, "-", SUMMARY),
        ("on_log", 5, 2.0, "-", SUMMARY),
        ("on_train_end", 5, 2.0, "-"),
    ]
    assert output.global_step == 5


def test_stop_requested_at_a_substep_skips_the_optimizer_step(tmp_path, hook_recorder):
    # HF checks the stop flags after every micro-batch, on_substep_end included.
    class StopAtSubstep:
        @hookimpl
        def on_substep_end(self, control) -> None:
            control.should_training_stop = True

    trainer = make_trainer(
        tmp_path, plugins=[StopAtSubstep(), hook_recorder], train_size=8,
        per_device_train_batch_size=2, gradient_accumulation_steps=2,
    )
    output = trainer.train()

    assert trace(hook_recorder) == [
        ("on_init_end", 0, 0, "-"),
        ("on_train_begin", 0, 0, "-"),
        ("on_epoch_begin", 0, 0, "-"),
        ("on_step_begin", 0, 0, "-"),
        ("on_substep_end", 0, 0, "T"),
        ("on_epoch_end", 0, 0, "T"),
        ("on_pre_log", 0, 0, "T", SUMMARY),
        ("on_log", 0, 0, "T", SUMMARY),
        ("on_train_end", 0, 0, "T"),
    ]
    assert output.global_step == 0


# ---- i. on_exception ---------------------------------------------------------------------


class Boom(TrainerCallback):
    """Raises ``self.error`` from ``hook`` once ``global_step`` reaches ``at_step``."""

    def __init__(self, hook: str, at_step: int = 0) -> None:
        self.hook = hook
        self.at_step = at_step
        self.error = RuntimeError(f"boom in {hook}")

    def _maybe_raise(self, hook: str, state: Any) -> None:
        if hook == self.hook and state.global_step >= self.at_step:
            raise self.error

    def on_step_end(self, args, state, control, **kwargs):
        self._maybe_raise("on_step_end", state)

    def on_prediction_step(self, args, state, control, **kwargs):
        self._maybe_raise("on_prediction_step", state)

    def on_evaluate(self, args, state, control, **kwargs):
        self._maybe_raise("on_evaluate", state)


def test_on_exception_fires_once_and_the_error_propagates(tmp_path, hook_recorder):
    boom = Boom("on_step_end", at_step=2)
    trainer = make_trainer(
        tmp_path, plugins=[hook_recorder, boom], train_size=8, per_device_train_batch_size=2,
        eval_strategy="steps", eval_steps=2,
    )
    with pytest.raises(RuntimeError) as excinfo:
        trainer.train()

    assert excinfo.value is boom.error
    assert trace(hook_recorder) == [
        ("on_init_end", 0, 0, "-"),
        ("on_train_begin", 0, 0, "-"),
        ("on_epoch_begin", 0, 0, "-"),
        *update(0, 0, 0.25),
        *update(1, 0.25, 0.5, "LE"),  # the recorder runs before Boom
        ("on_exception", 2, 0.5, "LE"),
    ]
    (call,) = hook_recorder.of("on_exception")
    assert call.payload["exception"] is boom.error


@pytest.mark.parametrize("hook", ["on_prediction_step", "on_evaluate"])
def test_on_exception_fires_once_from_nested_evaluate(tmp_path, hook_recorder, hook):
    # train() -> evaluate() nest; only the outermost call fires on_exception.
    boom = Boom(hook)
    trainer = make_trainer(
        tmp_path, plugins=[boom, hook_recorder], train_size=8, per_device_train_batch_size=2,
        eval_strategy="steps", eval_steps=2,
    )
    with pytest.raises(RuntimeError) as excinfo:
        trainer.train()

    assert excinfo.value is boom.error
    assert hook_recorder.events.count("on_exception") == 1
    assert hook_recorder.events[-1] == "on_exception"
    assert "on_train_end" not in hook_recorder.events
    assert hook_recorder.of("on_exception")[0].payload["exception"] is boom.error


def test_on_exception_from_evaluate_alone(tmp_path, hook_recorder):
    boom = Boom("on_prediction_step")
    trainer = make_trainer(tmp_path, plugins=[boom, hook_recorder], train_size=8)
    with pytest.raises(RuntimeError) as excinfo:
        trainer.evaluate()

    assert excinfo.value is boom.error
    assert trace(hook_recorder) == [
        ("on_init_end", 0, 0, "-"),
        ("on_exception", 0, 0, "-"),  # Boom runs first: no on_prediction_step recorded
    ]
