"""HF's examples and built-in callbacks run on hooktrain as on HF (docs/events.md,
docs/migrating-from-transformers.md): control flags set by a callback, ``PrinterCallback``,
``ProgressCallback`` and ``EarlyStoppingCallback``."""

from __future__ import annotations

import ast
import json

from trainers import make_trainer

from hooktrain import (
    EarlyStoppingCallback,
    PrinterCallback,
    ProgressCallback,
    TrainerCallback,
    TrainerControl,
    TrainerState,
)
from hooktrain.testing import run_training, tiny_args

# ---- HF examples -------------------------------------------------------------------------


def test_should_training_stop_at_step_3_stops_there(tmp_path):
    class StopAt3(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                control.should_training_stop = True

    run = run_training(tmp_path / "run", plugins=[StopAt3()], num_train_epochs=3)
    assert run.trainer.state.max_steps == 12
    assert run.output.global_step == 3
    assert run.trainer.state.global_step == 3
    assert [c.global_step for c in run.recorder.of("on_step_end")] == [1, 2, 3]
    assert run.recorder.events[-2:] == ["on_log", "on_train_end"]
    assert run.recorder.of("on_epoch_end")[-1].global_step == 3


def test_should_save_in_on_evaluate_saves_right_after_evaluation(tmp_path):
    class SaveOnEvaluate(TrainerCallback):
        def on_evaluate(self, args, state, control, **kwargs):
            control.should_save = True

    run = run_training(
        tmp_path / "run", plugins=[SaveOnEvaluate()], eval_strategy="steps", eval_steps=3,
        save_strategy="no",
    )
    events = run.recorder.events
    evaluate_positions = [i for i, e in enumerate(events) if e == "on_evaluate"]
    assert len(evaluate_positions) == 3  # steps 3 and 6, and the final step 8
    for i in evaluate_positions:
        assert events[i + 1] == "on_save"
        assert run.recorder.calls[i + 1].global_step == run.recorder.calls[i].global_step
    saved = sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*"))
    assert saved == ["checkpoint-3", "checkpoint-6", "checkpoint-8"]


def test_printer_callback_prints_four_significant_digits(capsys):
    PrinterCallback().on_log(
        None, TrainerState(), TrainerControl(),
        logs={"loss": 0.123456789, "learning_rate": 5e-05, "epoch": 1.0, "grad_norm": 12345.678,
              "step": 3, "name": "x", "total_flos": 99.0},
    )
    out = capsys.readouterr().out.strip()
    assert out == str({"loss": "0.1235", "learning_rate": "5e-05", "epoch": "1",
                       "grad_norm": "1.235e+04", "step": 3, "name": "x"})


def test_printer_callback_prints_only_on_local_main_process(capsys):
    state = TrainerState(is_local_process_zero=False)
    logs = {"loss": 0.5, "total_flos": 1.0}
    PrinterCallback().on_log(None, state, TrainerControl(), logs=logs)
    assert capsys.readouterr().out == ""
    assert logs == {"loss": 0.5}  # it pops total_flos from the dict it is handed, as HF


def test_printer_callback_prints_every_log_of_a_run(tmp_path, capsys):
    run = run_training(tmp_path / "run", disable_tqdm=True)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) == len(run.trainer.state.log_history)
    assert "'loss': '" in lines[0]
    assert "total_flos" not in lines[-1]
    assert "'train_loss': '" in lines[-1]


def test_progress_callback_writes_logs_only_while_training(tmp_path, capsys):
    trainer = make_trainer(
        tmp_path / "out", disable_tqdm=False, eval_strategy="steps", eval_steps=4,
    )
    assert isinstance(trainer.callbacks[-1], ProgressCallback)
    trainer.train()
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert len(lines) == len(trainer.state.log_history)
    assert any("'loss': '" in line for line in lines)
    assert any("'eval_loss': '" in line for line in lines)
    assert "total_flos" not in out
    assert "'train_loss': '" in lines[-1]

    trainer.evaluate()  # outside train(): no training bar, so no log line
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("{")] == []
    assert "eval_loss" not in out


def test_progress_callback_truncates_long_strings():
    class Bar:
        def __init__(self):
            self.written = []

        def write(self, text):
            self.written.append(text)

    callback = ProgressCallback(max_str_len=5)
    callback.training_bar = Bar()
    callback.on_log(None, TrainerState(), TrainerControl(),
                    logs={"note": "abcdefgh", "short": "abc", "loss": 1 / 3, "total_flos": 1.0})
    (text,) = callback.training_bar.written
    shown = ast.literal_eval(text)  # a dict repr written by the callback
    assert shown["short"] == "abc"
    assert shown["loss"] == "0.3333"
    assert "length: 8 > 5" in shown["note"]
    assert "total_flos" not in shown


# ---- EarlyStoppingCallback ---------------------------------------------------------------


def test_early_stopping_state_round_trip():
    callback = EarlyStoppingCallback(early_stopping_patience=3, early_stopping_threshold=0.5)
    callback.early_stopping_patience_counter = 2
    state = callback.state()
    assert state == {
        "args": {"early_stopping_patience": 3, "early_stopping_threshold": 0.5},
        "attributes": {"early_stopping_patience_counter": 2},
    }
    restored = EarlyStoppingCallback.from_state(json.loads(json.dumps(state)))
    assert isinstance(restored, EarlyStoppingCallback)
    assert restored.early_stopping_patience == 3
    assert restored.early_stopping_threshold == 0.5
    assert restored.early_stopping_patience_counter == 2
    assert restored.state() == state


def _es_args(tmp_path, greater_is_better):
    return tiny_args(tmp_path, metric_for_best_model="loss", greater_is_better=greater_is_better,
                     eval_strategy="steps")


def test_early_stopping_threshold_is_an_absolute_strict_delta(tmp_path):
    args = _es_args(tmp_path, greater_is_better=False)
    callback = EarlyStoppingCallback(early_stopping_patience=3, early_stopping_threshold=0.25)
    state, control = TrainerState(), TrainerControl()

    callback.check_metric_value(args, state, control, 5.0)  # no best yet: reset
    assert callback.early_stopping_patience_counter == 0

    state.best_metric = 1.0
    callback.check_metric_value(args, state, control, 0.875)  # better, but by 0.125 <= 0.25
    assert callback.early_stopping_patience_counter == 1
    callback.check_metric_value(args, state, control, 0.75)  # better by exactly 0.25: not >
    assert callback.early_stopping_patience_counter == 2
    callback.check_metric_value(args, state, control, 1.5)  # worse
    assert callback.early_stopping_patience_counter == 3
    callback.check_metric_value(args, state, control, 0.5)  # better by 0.5 > 0.25: reset
    assert callback.early_stopping_patience_counter == 0


def test_early_stopping_greater_is_better(tmp_path):
    args = _es_args(tmp_path, greater_is_better=True)
    callback = EarlyStoppingCallback(early_stopping_patience=2)
    state, control = TrainerState(best_metric=0.5), TrainerControl()
    callback.check_metric_value(args, state, control, 0.5)  # equal: no improvement
    assert callback.early_stopping_patience_counter == 1
    callback.check_metric_value(args, state, control, 0.25)
    assert callback.early_stopping_patience_counter == 2
    callback.check_metric_value(args, state, control, 0.75)
    assert callback.early_stopping_patience_counter == 0


def test_early_stopping_on_evaluate_stops_after_patience(tmp_path):
    args = _es_args(tmp_path, greater_is_better=False)
    callback = EarlyStoppingCallback(early_stopping_patience=2)
    state, control = TrainerState(best_metric=1.0), TrainerControl()
    callback.on_evaluate(args, state, control, metrics={"eval_loss": 1.0})
    assert not control.should_training_stop
    callback.on_evaluate(args, state, control, metrics={"eval_loss": 2.0})
    assert control.should_training_stop
    assert callback.early_stopping_patience_counter == 2
