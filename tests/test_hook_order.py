"""Golden tests of the order in which hooks fire (Lightning ``test_hooks.py`` style).

Each test records every hook with :class:`~hooktrain.testing.HookRecorder`, registered as a user
callback (so after ``DefaultFlowCallback``, as HF's verified traces were taken), and compares the
whole run with a literal list. One entry per call::

    (event, global_step, round(epoch, 2), flags)                   # most events
    (event, global_step, round(epoch, 2), flags, sorted keys)      # on_log, on_evaluate, on_predict

``flags`` is :func:`~hooktrain.testing.control_flags`: L(og) E(valuate) S(ave) sT(op), ``-`` for
none. The reference for every list is ``HF_TRAINER_REFERENCE.md`` §1.4 (HF 5.23, verified).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hooktrain import EarlyStoppingCallback, Trainer, TrainerCallback, hookimpl
from hooktrain.events import EVENT_NAMES
from hooktrain.testing import HookRecorder, RegressionDataset, TinyRegressor, tiny_args

# ---- helpers -----------------------------------------------------------------------------

#: Events whose dict argument is part of the trace, and the argument's name.
KEYED = {"on_pre_log": "logs", "on_log": "logs", "on_evaluate": "metrics", "on_predict": "metrics"}

TRAIN_LOG = ("epoch", "grad_norm", "learning_rate", "loss")
EVAL = ("epoch", "eval_loss", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second")
SUMMARY = (
    "epoch", "total_flos", "train_loss", "train_runtime", "train_samples_per_second",
    "train_steps_per_second",
)
TEST = ("test_loss", "test_runtime", "test_samples_per_second", "test_steps_per_second")


def eval_keys(prefix: str) -> tuple[str, ...]:
    return ("epoch", f"{prefix}_loss", f"{prefix}_runtime", f"{prefix}_samples_per_second",
            f"{prefix}_steps_per_second")


def trace(recorder: HookRecorder) -> list[tuple[Any, ...]]:
    """The recorder's calls as comparable tuples (see the module docstring)."""
    rows: list[tuple[Any, ...]] = []
    for call in recorder.calls:
        row: tuple[Any, ...] = (call.event, call.global_step, round(call.epoch, 2), call.flags)
        if call.event in KEYED:
            row += (tuple(sorted(call.payload[KEYED[call.event]])),)
        rows.append(row)
    return rows


def update(gs: int, before: float, after: float, flags: str = "-", micro_batches: int = 1):
    """One optimizer update that starts at ``global_step == gs``.

    ``on_step_begin``, one ``on_substep_end`` per micro-batch that is not the last of its
    accumulation group, ``on_pre_optimizer_step``, ``on_optimizer_step``, then ``on_step_end`` with
    the step counted, the epoch advanced and ``flags`` as ``DefaultFlowCallback`` left them.
    """
    rows = [("on_step_begin", gs, before, "-")]
    rows += [("on_substep_end", gs, before, "-")] * (micro_batches - 1)
    rows += [
        ("on_pre_optimizer_step", gs, before, "-"),
        ("on_optimizer_step", gs, before, "-"),
        ("on_step_end", gs + 1, after, flags),
    ]
    return rows


def make_trainer(
    output_dir: Path,
    recorder: HookRecorder,
    *,
    callbacks: tuple[Any, ...] = (),
    recorder_first: bool = False,
    train_size: int = 8,
    eval_dataset: Any = "default",
    **overrides: Any,
) -> Trainer:
    """A quiet Trainer on TinyRegressor with ``recorder`` among the user callbacks."""
    if eval_dataset == "default":
        eval_dataset = RegressionDataset(8, seed=1)
    plugins = [recorder, *callbacks] if recorder_first else [*callbacks, recorder]
    return Trainer(
        model=TinyRegressor(),
        args=tiny_args(output_dir, **overrides),
        train_dataset=RegressionDataset(train_size, seed=0),
        eval_dataset=eval_dataset,
        callbacks=plugins,
    )


# ---- a. the verified trace of HF_TRAINER_REFERENCE.md §1.4 -------------------------------


def test_reference_trace_accumulation_log_eval_save_then_predict(run_training):
    # 10 samples / batch 2 = 5 micro-batches per epoch; GA=2 -> updates of 2, 2 and 1 micro-batches
    # (3 per epoch), 2 epochs to reach max_steps=6. Log every 2, evaluate and save every 3.
    run = run_training(
        train_size=10, eval_size=8, per_device_train_batch_size=2,
        per_device_eval_batch_size=4, gradient_accumulation_steps=2, max_steps=6,
        logging_steps=2, eval_strategy="steps", eval_steps=3, save_strategy="steps",
        save_steps=3,
    )
    run.trainer.predict(RegressionDataset(8, seed=2))

    assert trace(run.recorder) == [
        ("on_init_end", 0, 0, "-"),
        ("on_train_begin", 0, 0, "-"),
        # epoch 0
        ("on_epoch_begin", 0, 0, "-"),
        ("on_step_begin", 0, 0, "-"),
        ("on_substep_end", 0, 0, "-"),
        ("on_pre_optimizer_step", 0, 0, "-"),
        ("on_optimizer_step", 0, 0, "-"),
        ("on_step_end", 1, 0.4, "-"),
        ("on_step_begin", 1, 0.4, "-"),
        ("on_substep_end", 1, 0.4, "-"),
        ("on_pre_optimizer_step", 1, 0.4, "-"),
        ("on_optimizer_step", 1, 0.4, "-"),
        ("on_step_end", 2, 0.8, "L"),
        ("on_pre_log", 2, 0.8, "L", TRAIN_LOG),
        ("on_log", 2, 0.8, "-", TRAIN_LOG),
        ("on_step_begin", 2, 0.8, "-"),  # a 1-micro-batch group: no on_substep_end
        ("on_pre_optimizer_step", 2, 0.8, "-"),
        ("on_optimizer_step", 2, 0.8, "-"),
        ("on_step_end", 3, 1.0, "ES"),
        ("on_prediction_step", 3, 1.0, "ES"),
        ("on_prediction_step", 3, 1.0, "ES"),
        ("on_pre_log", 3, 1.0, "ES", EVAL),
        ("on_log", 3, 1.0, "ES", EVAL),
        ("on_evaluate", 3, 1.0, "S", EVAL),
        ("on_save", 3, 1.0, "-"),
        ("on_epoch_end", 3, 1.0, "-"),
        # epoch 1
        ("on_epoch_begin", 3, 1.0, "-"),
        ("on_step_begin", 3, 1.0, "-"),
        ("on_substep_end", 3, 1.0, "-"),
        ("on_pre_optimizer_step", 3, 1.0, "-"),
        ("on_optimizer_step", 3, 1.0, "-"),
        ("on_step_end", 4, 1.4, "L"),
        ("on_pre_log", 4, 1.4, "L", TRAIN_LOG),
        ("on_log", 4, 1.4, "-", TRAIN_LOG),
        ("on_step_begin", 4, 1.4, "-"),
        ("on_substep_end", 4, 1.4, "-"),
        ("on_pre_optimizer_step", 4, 1.4, "-"),
        ("on_optimizer_step", 4, 1.4, "-"),
        ("on_step_end", 5, 1.8, "-"),
        ("on_step_begin", 5, 1.8, "-"),
        ("on_pre_optimizer_step", 5, 1.8, "-"),
        ("on_optimizer_step", 5, 1.8, "-"),
        ("on_step_end", 6, 2.0, "LEST"),  # last step: log, evaluate, forced save, stop
        ("on_pre_log", 6, 2.0, "LEST", TRAIN_LOG),
        ("on_log", 6, 2.0, "EST", TRAIN_LOG),
        ("on_prediction_step", 6, 2.0, "EST"),
        ("on_prediction_step", 6, 2.0, "EST"),
        ("on_pre_log", 6, 2.0, "EST", EVAL),
        ("on_log", 6, 2.0, "EST", EVAL),
        ("on_evaluate", 6, 2.0, "ST", EVAL),
        ("on_save", 6, 2.0, "T"),
        ("on_epoch_end", 6, 2.0, "T"),
        ("on_pre_log", 6, 2.0, "T", SUMMARY),
        ("on_log", 6, 2.0, "T", SUMMARY),
        ("on_train_end", 6, 2.0, "T"),
        # predict(): should_training_stop stays set after train() (HF §1.6); no on_log
        ("on_prediction_step", 6, 2.0, "T"),
        ("on_prediction_step", 6, 2.0, "T"),
        ("on_predict", 6, 2.0, "T", TEST),
    ]
    saved = [Path(call.payload["checkpoint_dir"]).name for call in run.recorder.of("on_save")]
    assert saved == ["checkpoint-3", "checkpoint-6"]
    never_fired_here = {"on_push_begin", "on_exception", "on_load_checkpoint"}
    assert set(EVENT_NAMES) - never_fired_here <= set(run.recorder.events)


# ---- b. epoch strategies -----------------------------------------------------------------


def test_epoch_strategies_log_evaluate_save_at_epoch_end(tmp_path, hook_recorder):
    trainer = make_trainer(
        tmp_path, hook_recorder, per_device_train_batch_size=4, num_train_epochs=2,
        logging_strategy="epoch", eval_strategy="epoch", save_strategy="epoch",
    )
    trainer.train()

    assert trace(hook_recorder) == [
        ("on_init_end", 0, 0, "-"),
        ("on_train_begin", 0, 0, "-"),
        ("on_epoch_begin", 0, 0, "-"),
        *update(0, 0, 0.5),
        *update(1, 0.5, 1.0),  # nothing at step level
        ("on_epoch_end", 2, 1.0, "LES"),
        ("on_pre_log", 2, 1.0, "LES", TRAIN_LOG),
        ("on_log", 2, 1.0, "ES", TRAIN_LOG),
        ("on_prediction_step", 2, 1.0, "ES"),
        ("on_prediction_step", 2, 1.0, "ES"),
        ("on_pre_log", 2, 1.0, "ES", EVAL),
        ("on_log", 2, 1.0, "ES", EVAL),
        ("on_evaluate", 2, 1.0, "S", EVAL),
        ("on_save", 2, 1.0, "-"),
        ("on_epoch_begin", 2, 1.0, "-"),
        *update(2, 1.0, 1.5),
        *update(3, 1.5, 2.0, "T"),  # epoch strategies: no forced evaluation or save
        ("on_epoch_end", 4, 2.0, "LEST"),
        ("on_pre_log", 4, 2.0, "LEST", TRAIN_LOG),
        ("on_log", 4, 2.0, "EST", TRAIN_LOG),
        ("on_prediction_step", 4, 2.0, "EST"),
        ("on_prediction_step", 4, 2.0, "EST"),
        ("on_pre_log", 4, 2.0, "EST", EVAL),
        ("on_log", 4, 2.0, "EST", EVAL),
        ("on_evaluate", 4, 2.0, "ST", EVAL),
        ("on_save", 4, 2.0, "T"),
        ("on_pre_log", 4, 2.0, "T", SUMMARY),
        ("on_log", 4, 2.0, "T", SUMMARY),
        ("on_train_end", 4, 2.0, "T"),
    ]


# ---- c. fractional steps -----------------------------------------------------------------


def test_fractional_steps_and_logging_first_step(tmp_path, hook_recorder):
    # 6 samples / batch 2 = 3 updates per epoch; max_steps=6 -> 2 epochs.
    trainer = make_trainer(
        tmp_path, hook_recorder, train_size=6, eval_dataset=RegressionDataset(4, seed=1),
        per_device_train_batch_size=2, max_steps=6, logging_steps=0.25, eval_strategy="steps",
        eval_steps=0.5, save_strategy="steps", save_steps=0.5, logging_first_step=True,
    )
    trainer.train()

    state = trainer.state
    assert (state.logging_steps, state.eval_steps, state.save_steps) == (2, 3, 3)
    assert trace(hook_recorder) == [
        ("on_init_end", 0, 0, "-"),
        ("on_train_begin", 0, 0, "-"),
        ("on_epoch_begin", 0, 0, "-"),
        *update(0, 0, 0.33, "L"),  # logging_first_step
        ("on_pre_log", 1, 0.33, "L", TRAIN_LOG),
        ("on_log", 1, 0.33, "-", TRAIN_LOG),
        *update(1, 0.33, 0.67, "L"),
        ("on_pre_log", 2, 0.67, "L", TRAIN_LOG),
        ("on_log", 2, 0.67, "-", TRAIN_LOG),
        *update(2, 0.67, 1.0, "ES"),
        ("on_prediction_step", 3, 1.0, "ES"),
        ("on_pre_log", 3, 1.0, "ES", EVAL),
        ("on_log", 3, 1.0, "ES", EVAL),
        ("on_evaluate", 3, 1.0, "S", EVAL),
        ("on_save", 3, 1.0, "-"),
        ("on_epoch_end", 3, 1.0, "-"),
        ("on_epoch_begin", 3, 1.0, "-"),
        *update(3, 1.0, 1.33, "L"),
        ("on_pre_log", 4, 1.33, "L", TRAIN_LOG),
        ("on_log", 4, 1.33, "-", TRAIN_LOG),
        *update(4, 1.33, 1.67),
        *update(5, 1.67, 2.0, "LEST"),
        ("on_pre_log", 6, 2.0, "LEST", TRAIN_LOG),
        ("on_log", 6, 2.0, "EST", TRAIN_LOG),
        ("on_prediction_step", 6, 2.0, "EST"),
        ("on_pre_log", 6, 2.0, "EST", EVAL),
        ("on_log", 6, 2.0, "EST", EVAL),
        ("on_evaluate", 6, 2.0, "ST", EVAL),
        ("on_save", 6, 2.0, "T"),
        ("on_epoch_end", 6, 2.0, "T"),
        ("on_pre_log", 6, 2.0, "T", SUMMARY),
        ("on_log", 6, 2.0, "T", SUMMARY),
        ("on_train_end", 6, 2.0, "T"),
    ]
    assert [entry["step"] for entry in state.log_history if "loss" in entry] == [1, 2, 4, 6]


# ---- d. eval_on_start --------------------------------------------------------------------


def test_eval_on_start_evaluates_before_the_first_epoch(tmp_path, hook_recorder):
    trainer = make_trainer(
        tmp_path, hook_recorder, train_size=4, eval_dataset=RegressionDataset(4, seed=1),
        per_device_train_batch_size=2, num_train_epochs=1, logging_steps=10,
        eval_strategy="epoch", eval_on_start=True,
    )
    trainer.train()

    assert trace(hook_recorder) == [
        ("on_init_end", 0, 0, "-"),
        ("on_train_begin", 0, 0, "-"),
        ("on_prediction_step", 0, 0, "-"),  # eval_on_start
        ("on_pre_log", 0, 0, "-", EVAL),
        ("on_log", 0, 0, "-", EVAL),
        ("on_evaluate", 0, 0, "-", EVAL),
        ("on_epoch_begin", 0, 0, "-"),
        *update(0, 0, 0.5),
        *update(1, 0.5, 1.0, "T"),
        ("on_epoch_end", 2, 1.0, "ET"),
        ("on_prediction_step", 2, 1.0, "ET"),
        ("on_pre_log", 2, 1.0, "ET", EVAL),
        ("on_log", 2, 1.0, "ET", EVAL),
        ("on_evaluate", 2, 1.0, "T", EVAL),
        ("on_pre_log", 2, 1.0, "T", SUMMARY),
        ("on_log", 2, 1.0, "T", SUMMARY),
        ("on_train_end", 2, 1.0, "T"),
    ]


# ---- e. early stopping -------------------------------------------------------------------


def test_early_stopping_ends_the_run_after_the_triggering_evaluation(tmp_path, hook_recorder):
    # learning_rate=0: the weights never move, so eval_loss at step 6 equals that at step 3 and
    # patience 1 runs out at the second evaluation, in the middle of epoch 1.
    trainer = make_trainer(
        tmp_path, hook_recorder, callbacks=(EarlyStoppingCallback(early_stopping_patience=1),),
        eval_dataset=RegressionDataset(4, seed=1), per_device_train_batch_size=2, max_steps=10,
        learning_rate=0.0, logging_steps=100, eval_strategy="steps", eval_steps=3,
        metric_for_best_model="loss",
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

    trainer = make_trainer(tmp_path, hook_recorder, callbacks=(EndFirstEpochEarly(),),
                           per_device_train_batch_size=2, logging_steps=100)
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

    trainer = make_trainer(tmp_path, hook_recorder, callbacks=(StopAtSubstep(),),
                           per_device_train_batch_size=2, gradient_accumulation_steps=2)
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


# ---- f. evaluate() and predict() without training ----------------------------------------


def test_evaluate_alone(tmp_path, hook_recorder):
    trainer = make_trainer(tmp_path, hook_recorder)
    metrics = trainer.evaluate()

    assert trace(hook_recorder) == [
        ("on_init_end", 0, 0, "-"),
        ("on_prediction_step", 0, 0, "-"),
        ("on_prediction_step", 0, 0, "-"),
        ("on_pre_log", 0, 0, "-", EVAL),
        ("on_log", 0, 0, "-", EVAL),
        ("on_evaluate", 0, 0, "-", EVAL),
    ]
    assert tuple(sorted(metrics)) == EVAL


def test_predict_alone_does_not_log(tmp_path, hook_recorder):
    trainer = make_trainer(tmp_path, hook_recorder, eval_dataset=None)
    hook_recorder.clear()  # drop on_init_end
    output = trainer.predict(RegressionDataset(8, seed=2))

    assert trace(hook_recorder) == [
        ("on_prediction_step", 0, 0, "-"),
        ("on_prediction_step", 0, 0, "-"),
        ("on_predict", 0, 0, "-", TEST),
    ]
    assert "on_log" not in hook_recorder.events
    assert trainer.state.log_history == []
    assert tuple(sorted(output.metrics)) == TEST


# ---- g. several evaluation data sets -----------------------------------------------------


def test_two_eval_datasets_log_and_evaluate_once_each(tmp_path, hook_recorder):
    data = RegressionDataset(8, seed=1)
    trainer = make_trainer(tmp_path, hook_recorder, eval_dataset={"a": data, "b": data})
    metrics = trainer.evaluate()

    assert trace(hook_recorder) == [
        ("on_init_end", 0, 0, "-"),
        ("on_prediction_step", 0, 0, "-"),
        ("on_prediction_step", 0, 0, "-"),
        ("on_pre_log", 0, 0, "-", eval_keys("eval_a")),
        ("on_log", 0, 0, "-", eval_keys("eval_a")),
        ("on_evaluate", 0, 0, "-", eval_keys("eval_a")),
        ("on_prediction_step", 0, 0, "-"),
        ("on_prediction_step", 0, 0, "-"),
        ("on_pre_log", 0, 0, "-", eval_keys("eval_b")),
        ("on_log", 0, 0, "-", eval_keys("eval_b")),
        ("on_evaluate", 0, 0, "-", eval_keys("eval_b")),
    ]
    assert sorted(metrics) == sorted({*eval_keys("eval_a"), *eval_keys("eval_b")})
    assert metrics["eval_a_loss"] == metrics["eval_b_loss"]  # the same data set twice


def test_two_eval_datasets_during_training(tmp_path, hook_recorder):
    # HF §1.6: the second data set already sees should_evaluate cleared by the first on_evaluate.
    data = RegressionDataset(8, seed=1)
    trainer = make_trainer(
        tmp_path, hook_recorder, eval_dataset={"a": data, "b": data}, max_steps=2,
        eval_strategy="steps", eval_steps=2,
    )
    trainer.train()

    assert trace(hook_recorder) == [
        ("on_init_end", 0, 0, "-"),
        ("on_train_begin", 0, 0, "-"),
        ("on_epoch_begin", 0, 0, "-"),
        *update(0, 0, 0.5),
        *update(1, 0.5, 1.0, "LET"),
        ("on_pre_log", 2, 1.0, "LET", TRAIN_LOG),
        ("on_log", 2, 1.0, "ET", TRAIN_LOG),
        ("on_prediction_step", 2, 1.0, "ET"),
        ("on_prediction_step", 2, 1.0, "ET"),
        ("on_pre_log", 2, 1.0, "ET", eval_keys("eval_a")),
        ("on_log", 2, 1.0, "ET", eval_keys("eval_a")),
        ("on_evaluate", 2, 1.0, "T", eval_keys("eval_a")),
        ("on_prediction_step", 2, 1.0, "T"),
        ("on_prediction_step", 2, 1.0, "T"),
        ("on_pre_log", 2, 1.0, "T", eval_keys("eval_b")),
        ("on_log", 2, 1.0, "T", eval_keys("eval_b")),
        ("on_evaluate", 2, 1.0, "T", eval_keys("eval_b")),
        ("on_epoch_end", 2, 1.0, "T"),
        ("on_pre_log", 2, 1.0, "T", SUMMARY),
        ("on_log", 2, 1.0, "T", SUMMARY),
        ("on_train_end", 2, 1.0, "T"),
    ]


# ---- h. resume ---------------------------------------------------------------------------


def test_resume_newest_checkpoint_with_larger_max_steps(tmp_path):
    # 8 samples / batch 2 = 4 updates per epoch. The first run stops at step 6 (epoch 1.5) and
    # saves checkpoints 3 and 6; the second resumes from checkpoint-6 and goes on to step 10.
    schedule = dict(per_device_train_batch_size=2, save_strategy="steps", save_steps=3)
    first = HookRecorder()
    make_trainer(tmp_path, first, max_steps=6, **schedule).train()
    assert [Path(c.payload["checkpoint_dir"]).name for c in first.of("on_save")] == [
        "checkpoint-3", "checkpoint-6",
    ]

    recorder = HookRecorder()
    trainer = make_trainer(tmp_path, recorder, max_steps=10, **schedule)
    trainer.train(resume_from_checkpoint=True)

    assert trace(recorder) == [
        ("on_init_end", 0, 0, "-"),
        # Only should_training_stop is restored from the checkpoint's control: the per-step flags
        # were acted on by the step that wrote it (HF restores a stale should_save=True).
        ("on_load_checkpoint", 6, 1.5, "-"),
        ("on_train_begin", 6, 1.5, "-"),
        # epoch 0 was done: nothing fires for it; epoch 1 begins once, at its fourth batch
        ("on_epoch_begin", 6, 1.5, "-"),
        *update(6, 1.5, 1.75),
        *update(7, 1.75, 2.0, "L"),
        ("on_pre_log", 8, 2.0, "L", TRAIN_LOG),
        ("on_log", 8, 2.0, "-", TRAIN_LOG),
        ("on_epoch_end", 8, 2.0, "-"),
        ("on_epoch_begin", 8, 2.0, "-"),
        *update(8, 2.0, 2.25, "S"),
        ("on_save", 9, 2.25, "-"),
        *update(9, 2.25, 2.5, "LST"),
        ("on_pre_log", 10, 2.5, "LST", TRAIN_LOG),
        ("on_log", 10, 2.5, "ST", TRAIN_LOG),
        ("on_save", 10, 2.5, "T"),
        ("on_epoch_end", 10, 2.5, "T"),
        ("on_pre_log", 10, 2.5, "T", SUMMARY),
        ("on_log", 10, 2.5, "T", SUMMARY),
        ("on_train_end", 10, 2.5, "T"),
    ]
    (loaded,) = recorder.of("on_load_checkpoint")
    assert Path(loaded.payload["checkpoint_dir"]).name == "checkpoint-6"


def test_resume_middle_checkpoint_under_accumulation(tmp_path):
    # §1.4's run (5 micro-batches per epoch, GA=2: updates of 2, 2, 1) saving every 2 steps.
    # checkpoint-4 is one update into epoch 1, so the resume skips epoch 0 and the first two
    # micro-batches of epoch 1 silently.
    schedule = dict(
        train_size=10, per_device_train_batch_size=2, gradient_accumulation_steps=2,
        max_steps=6, logging_steps=3, save_strategy="steps", save_steps=2,
    )
    make_trainer(tmp_path, HookRecorder(), **schedule).train()

    recorder = HookRecorder()
    trainer = make_trainer(tmp_path, recorder, **schedule)
    trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-4"))

    assert trace(recorder) == [
        ("on_init_end", 0, 0, "-"),
        ("on_load_checkpoint", 4, 1.4, "-"),
        ("on_train_begin", 4, 1.4, "-"),
        ("on_epoch_begin", 4, 1.4, "-"),
        *update(4, 1.4, 1.8, micro_batches=2),
        *update(5, 1.8, 2.0, "LST"),
        ("on_pre_log", 6, 2.0, "LST", TRAIN_LOG),
        ("on_log", 6, 2.0, "ST", TRAIN_LOG),
        ("on_save", 6, 2.0, "T"),
        ("on_epoch_end", 6, 2.0, "T"),
        ("on_pre_log", 6, 2.0, "T", SUMMARY),
        ("on_log", 6, 2.0, "T", SUMMARY),
        ("on_train_end", 6, 2.0, "T"),
    ]
    (loaded,) = recorder.of("on_load_checkpoint")
    assert Path(loaded.payload["checkpoint_dir"]).name == "checkpoint-4"


def test_resume_a_finished_run_fires_no_step_events(tmp_path):
    # DESIGN §7: resuming a finished run trains no extra step (HF trains one).
    schedule = dict(per_device_train_batch_size=2, max_steps=6, save_strategy="steps",
                    save_steps=3)
    make_trainer(tmp_path, HookRecorder(), **schedule).train()

    recorder = HookRecorder()
    output = make_trainer(tmp_path, recorder, **schedule).train(resume_from_checkpoint=True)

    assert recorder.events == [
        "on_init_end", "on_load_checkpoint", "on_train_begin", "on_pre_log", "on_log",
        "on_train_end",
    ]
    assert tuple(sorted(recorder.of("on_log")[0].payload["logs"])) == SUMMARY
    assert output.global_step == 6


def test_eval_on_start_also_evaluates_a_resumed_run(tmp_path):
    # HF's loop evaluates on start unconditionally (``if args.eval_on_start: self._evaluate``),
    # resumed or not; docs/events.md shows no exception either.
    schedule = dict(per_device_train_batch_size=2, save_strategy="steps", save_steps=3)
    make_trainer(tmp_path, HookRecorder(), max_steps=6, **schedule).train()

    recorder = HookRecorder()
    trainer = make_trainer(tmp_path, recorder, max_steps=8, eval_strategy="steps",
                           eval_steps=4, eval_on_start=True, **schedule)
    trainer.train(resume_from_checkpoint=True)

    assert recorder.events[:9] == [
        "on_init_end", "on_load_checkpoint", "on_train_begin",
        "on_prediction_step", "on_prediction_step", "on_pre_log", "on_log", "on_evaluate",
        "on_epoch_begin",
    ]


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
        tmp_path, hook_recorder, callbacks=(boom,), recorder_first=True,
        per_device_train_batch_size=2, eval_strategy="steps", eval_steps=2,
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
        tmp_path, hook_recorder, callbacks=(boom,), per_device_train_batch_size=2,
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
    trainer = make_trainer(tmp_path, hook_recorder, callbacks=(boom,))
    with pytest.raises(RuntimeError) as excinfo:
        trainer.evaluate()

    assert excinfo.value is boom.error
    assert trace(hook_recorder) == [
        ("on_init_end", 0, 0, "-"),
        ("on_exception", 0, 0, "-"),  # Boom runs first: no on_prediction_step recorded
    ]
