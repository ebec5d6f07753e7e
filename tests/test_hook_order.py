"""Golden tests of the order in which hooks fire in training (Lightning ``test_hooks.py`` style).

HF's verified trace, epoch strategies, fractional steps and resumed runs. Each test records every
hook with :class:`~hooktrain.testing.HookRecorder` and compares the whole run with a literal list
(the entry format is in ``hook_trace.py``); the reference for every list is
transformers' own Trainer (HF 5.23, verified; docs/events.md). Evaluation and prediction are in
``test_hook_order_evaluate.py``, stopping early and ``on_exception`` in
``test_hook_order_control.py``.
"""

from __future__ import annotations

from pathlib import Path

from hook_trace import EVAL, SUMMARY, TEST, TRAIN_LOG, trace, update
from trainers import make_trainer

from hooktrain.events import EVENT_NAMES
from hooktrain.testing import HookRecorder, RegressionDataset

# ---- a. the verified trace of transformers' Trainer (docs/events.md) ---------------------


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
        # predict(): should_training_stop stays set after train() (as in HF; docs/events.md,
        # "Control flags"); no on_log
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
        tmp_path, plugins=[hook_recorder], train_size=8, per_device_train_batch_size=4,
        num_train_epochs=2, logging_strategy="epoch", eval_strategy="epoch", save_strategy="epoch",
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
        tmp_path, plugins=[hook_recorder], train_size=6, eval_size=4,
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


# ---- h. resume ---------------------------------------------------------------------------


def test_resume_newest_checkpoint_with_larger_max_steps(tmp_path):
    # 8 samples / batch 2 = 4 updates per epoch. The first run stops at step 6 (epoch 1.5) and
    # saves checkpoints 3 and 6; the second resumes from checkpoint-6 and goes on to step 10.
    schedule = dict(train_size=8, per_device_train_batch_size=2, save_strategy="steps",
                    save_steps=3)
    first = HookRecorder()
    make_trainer(tmp_path, plugins=[first], max_steps=6, **schedule).train()
    assert [Path(c.payload["checkpoint_dir"]).name for c in first.of("on_save")] == [
        "checkpoint-3", "checkpoint-6",
    ]

    recorder = HookRecorder()
    trainer = make_trainer(tmp_path, plugins=[recorder], max_steps=10, **schedule)
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
    # The reference trace's run (5 micro-batches per epoch, GA=2: updates of 2, 2, 1) saving every
    # 2 steps.
    # checkpoint-4 is one update into epoch 1, so the resume skips epoch 0 and the first two
    # micro-batches of epoch 1 silently.
    schedule = dict(
        train_size=10, per_device_train_batch_size=2, gradient_accumulation_steps=2,
        max_steps=6, logging_steps=3, save_strategy="steps", save_steps=2,
    )
    make_trainer(tmp_path, plugins=[HookRecorder()], **schedule).train()

    recorder = HookRecorder()
    trainer = make_trainer(tmp_path, plugins=[recorder], **schedule)
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
    # docs/checkpoints.md: resuming a finished run trains no extra step (HF trains one).
    schedule = dict(train_size=8, per_device_train_batch_size=2, max_steps=6,
                    save_strategy="steps", save_steps=3)
    make_trainer(tmp_path, plugins=[HookRecorder()], **schedule).train()

    recorder = HookRecorder()
    trainer = make_trainer(tmp_path, plugins=[recorder], **schedule)
    output = trainer.train(resume_from_checkpoint=True)

    assert recorder.events == [
        "on_init_end", "on_load_checkpoint", "on_train_begin", "on_pre_log", "on_log",
        "on_train_end",
    ]
    assert tuple(sorted(recorder.of("on_log")[0].payload["logs"])) == SUMMARY
    assert output.global_step == 6


def test_eval_on_start_also_evaluates_a_resumed_run(tmp_path):
    # HF's loop evaluates on start unconditionally (``if args.eval_on_start: self._evaluate``),
    # resumed or not; docs/events.md shows no exception either.
    schedule = dict(train_size=8, per_device_train_batch_size=2, save_strategy="steps",
                    save_steps=3)
    make_trainer(tmp_path, plugins=[HookRecorder()], max_steps=6, **schedule).train()

    recorder = HookRecorder()
    trainer = make_trainer(tmp_path, plugins=[recorder], max_steps=8, eval_strategy="steps",
                           eval_steps=4, eval_on_start=True, **schedule)
    trainer.train(resume_from_checkpoint=True)

    assert recorder.events[:9] == [
        "on_init_end", "on_load_checkpoint", "on_train_begin",
        "on_prediction_step", "on_prediction_step", "on_pre_log", "on_log", "on_evaluate",
        "on_epoch_begin",
    ]
