"""Golden hook order around evaluation (Lightning ``test_hooks.py`` style): ``eval_on_start``,
``evaluate()`` and ``predict()`` without training, and several evaluation data sets.

Each test compares the whole trace with a literal list (format: ``hook_trace.py``); the
reference for every list is transformers' own Trainer (HF 5.23, verified; docs/events.md).
"""

from __future__ import annotations

from hook_trace import EVAL, SUMMARY, TEST, TRAIN_LOG, trace, update
from trainers import make_trainer

from hooktrain.testing import RegressionDataset


def eval_keys(prefix: str) -> tuple[str, ...]:
    return ("epoch", f"{prefix}_loss", f"{prefix}_runtime", f"{prefix}_samples_per_second",
            f"{prefix}_steps_per_second")


# ---- d. eval_on_start --------------------------------------------------------------------


def test_eval_on_start_evaluates_before_the_first_epoch(tmp_path, hook_recorder):
    trainer = make_trainer(
        tmp_path, plugins=[hook_recorder], train_size=4, eval_size=4,
        per_device_train_batch_size=2, num_train_epochs=1, logging_steps=10, eval_strategy="epoch",
        eval_on_start=True,
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


# ---- f. evaluate() and predict() without training ----------------------------------------


def test_evaluate_alone(tmp_path, hook_recorder):
    trainer = make_trainer(tmp_path, plugins=[hook_recorder], train_size=8)
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
    trainer = make_trainer(tmp_path, plugins=[hook_recorder], train_size=8, eval_size=0)
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
    trainer = make_trainer(
        tmp_path, plugins=[hook_recorder], train_size=8,
        trainer_kwargs={"eval_dataset": {"a": data, "b": data}},
    )
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
    # As in HF (docs/events.md, "Control flags"): the second data set already sees
    # should_evaluate cleared by the first on_evaluate.
    data = RegressionDataset(8, seed=1)
    trainer = make_trainer(
        tmp_path, plugins=[hook_recorder], train_size=8,
        trainer_kwargs={"eval_dataset": {"a": data, "b": data}}, max_steps=2,
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
