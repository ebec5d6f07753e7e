"""HF callback code runs on hooktrain with only the import changed (HF_TRAINER_REFERENCE §1.2,
§2, §3, §4)."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
import torch

from hooktrain import (
    EarlyStoppingCallback,
    ExportableState,
    PrinterCallback,
    ProgressCallback,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
)
from hooktrain.testing import HookRecorder, RegressionDataset, TinyRegressor, run_training, tiny_args

HF_EVENTS = (
    "on_init_end", "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
    "on_step_begin", "on_pre_optimizer_step", "on_optimizer_step", "on_substep_end",
    "on_step_end", "on_evaluate", "on_predict", "on_save", "on_log", "on_prediction_step",
)
COMMON_KWARGS = {
    "model", "processing_class", "optimizer", "lr_scheduler", "train_dataloader",
    "eval_dataloader",
}
EXTRA_KWARGS = {"on_log": {"logs"}, "on_evaluate": {"metrics"}, "on_predict": {"metrics"}}


class KwargsRecorder(TrainerCallback):
    """An HF callback overriding every event; records ``(event, global_step, kwargs)``."""

    def __init__(self):
        self.calls = []

    def of(self, event):
        return [(step, kwargs) for name, step, kwargs in self.calls if name == event]


def _recording_method(event):
    def method(self, args, state, control, **kwargs):
        self.calls.append((event, state.global_step, dict(kwargs)))

    method.__name__ = event
    return method


for _event in HF_EVENTS:
    setattr(KwargsRecorder, _event, _recording_method(_event))


def make_trainer(tmp_path, callbacks=(), **overrides):
    return Trainer(
        model=TinyRegressor(),
        args=tiny_args(tmp_path / "out", **overrides),
        train_dataset=RegressionDataset(16, seed=0),
        eval_dataset=RegressionDataset(8, seed=1),
        callbacks=list(callbacks),
    )


# ---- kwargs exactly as HF passes them ----------------------------------------------------


@pytest.fixture(scope="module")
def kwargs_run(tmp_path_factory):
    recorder = KwargsRecorder()
    trainer = make_trainer(
        tmp_path_factory.mktemp("kwargs"), callbacks=[recorder], gradient_accumulation_steps=2,
        eval_strategy="steps", eval_steps=3, save_strategy="steps", save_steps=2,
        logging_steps=1, num_train_epochs=3,
    )
    init_calls = len(recorder.calls)
    trainer.train()
    train_calls = len(recorder.calls)
    test_set = RegressionDataset(4, seed=2)
    trainer.predict(test_set)
    return trainer, recorder, init_calls, train_calls


def test_every_hf_event_fired(kwargs_run):
    _, recorder, _, _ = kwargs_run
    assert {event for event, _, _ in recorder.calls} == set(HF_EVENTS)


def test_kwargs_keys_are_exactly_hfs(kwargs_run):
    _, recorder, _, _ = kwargs_run
    for event, step, kwargs in recorder.calls:
        expected = COMMON_KWARGS | EXTRA_KWARGS.get(event, set())
        assert set(kwargs) == expected, (event, step)


def test_model_is_the_trainers_model(kwargs_run):
    trainer, recorder, _, _ = kwargs_run
    assert all(kwargs["model"] is trainer.model for _, _, kwargs in recorder.calls)


def test_optimizer_and_scheduler_none_at_init_then_real(kwargs_run):
    trainer, recorder, init_calls, train_calls = kwargs_run
    ((_, init_kwargs),) = recorder.of("on_init_end")
    assert init_kwargs["optimizer"] is None
    assert init_kwargs["lr_scheduler"] is None
    assert init_kwargs["train_dataloader"] is None
    assert init_kwargs["eval_dataloader"] is None
    assert isinstance(trainer.optimizer, torch.optim.Optimizer)
    for event, _, kwargs in recorder.calls[init_calls:]:
        assert kwargs["optimizer"] is trainer.optimizer, event
        assert kwargs["lr_scheduler"] is trainer.lr_scheduler, event
        assert kwargs["train_dataloader"] is not None, event


def test_eval_dataloader_none_before_first_evaluation_then_sticky(kwargs_run):
    _, recorder, init_calls, train_calls = kwargs_run
    first_eval = next(
        i for i, (event, _, _) in enumerate(recorder.calls) if event == "on_prediction_step"
    )
    assert first_eval > init_calls
    for event, _, kwargs in recorder.calls[:first_eval]:
        assert kwargs["eval_dataloader"] is None, event
    eval_loader = recorder.calls[first_eval][2]["eval_dataloader"]
    assert eval_loader is not None
    train_part = recorder.calls[first_eval:train_calls]
    # sticky: later step events still carry the (one) evaluation dataloader
    assert any(event == "on_step_end" for event, _, _ in train_part)
    for event, _, kwargs in train_part:
        assert kwargs["eval_dataloader"] is not None, event
    predict_loader = recorder.of("on_predict")[0][1]["eval_dataloader"]
    assert predict_loader is not None
    assert len(predict_loader.dataset) == 4  # after predict() it holds the test dataloader


def test_no_hooktrain_additions_reach_hf_callbacks(kwargs_run):
    _, recorder, _, _ = kwargs_run
    for event, _, kwargs in recorder.calls:
        assert "loss" not in kwargs, event
        assert "checkpoint_dir" not in kwargs, event


# ---- control chaining --------------------------------------------------------------------


def test_returned_control_replaces_the_control(tmp_path):
    replaced = []

    class Replacer(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:
                new = TrainerControl(**dataclasses.asdict(control))
                replaced.append(new)
                return new
            return None

    seen = []

    class Observer(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            seen.append((state.global_step, control))

        def on_step_begin(self, args, state, control, **kwargs):
            seen.append((state.global_step, control))

    trainer = make_trainer(tmp_path, callbacks=[Replacer(), Observer()])
    old = trainer.control
    trainer.train()
    (new,) = replaced
    assert new is not old
    assert seen[0] == (0, old)  # on_step_begin of the first step
    assert seen[0][1] is old
    after = [control for step, control in seen[1:]]
    assert all(control is new for control in after)
    assert trainer.control is new


def test_returning_none_keeps_the_control(tmp_path):
    class ReturnsNone(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            return None

    trainer = make_trainer(tmp_path, callbacks=[ReturnsNone()])
    old = trainer.control
    trainer.train()
    assert trainer.control is old


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
    trainer = make_trainer(tmp_path, disable_tqdm=False, eval_strategy="steps", eval_steps=4)
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
    shown = eval(text)  # noqa: S307 - a dict repr written by the callback
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


# ---- TrainerState / TrainerControl -------------------------------------------------------


def test_trainer_state_json_round_trip(tmp_path):
    state = TrainerState(
        epoch=1.5, global_step=6, max_steps=8, logging_steps=2, eval_steps=3, save_steps=3,
        train_batch_size=4, num_train_epochs=2, total_flos=123.0,
        log_history=[{"loss": 0.5, "step": 2}, {"eval_loss": 0.25, "epoch": 1.0, "step": 3}],
        best_metric=0.25, best_global_step=3, best_model_checkpoint="out/checkpoint-3",
        trial_params={"lr": 0.1}, stateful_callbacks={"TrainerControl": TrainerControl().state()},
    )
    path = tmp_path / "trainer_state.json"
    state.save_to_json(path)
    text = path.read_text()
    assert text.endswith("\n")
    assert json.loads(text) == json.loads(json.dumps(dataclasses.asdict(state)))
    assert list(json.loads(text)) == sorted(json.loads(text))
    assert TrainerState.load_from_json(path) == state


def test_trainer_state_saves_numpy_and_tensor_values_as_numbers(tmp_path):
    state = TrainerState(log_history=[{
        "loss": np.float32(0.5), "grad_norm": torch.tensor(2.5), "count": np.int64(3),
        "lr": np.float64(0.125), "step": 1,
    }])
    path = tmp_path / "trainer_state.json"
    state.save_to_json(path)
    (entry,) = json.loads(path.read_text())["log_history"]
    assert entry == {"loss": 0.5, "grad_norm": 2.5, "count": 3, "lr": 0.125, "step": 1}
    assert type(entry["count"]) is int
    assert type(entry["loss"]) is float
    assert type(entry["grad_norm"]) is float


def test_trainer_state_saves_arrays_and_tensors_as_lists(tmp_path):
    """Non-scalar values are data too: ``_plain`` means to write them with ``tolist()``."""
    state = TrainerState(log_history=[{
        "per_class": np.array([0.5, 0.25]), "weights": torch.tensor([1.0, 2.0]), "step": 1,
    }])
    path = tmp_path / "trainer_state.json"
    state.save_to_json(path)
    (entry,) = json.loads(path.read_text())["log_history"]
    assert entry == {"per_class": [0.5, 0.25], "weights": [1.0, 2.0], "step": 1}


def test_trainer_state_load_ignores_unknown_keys(tmp_path):
    path = tmp_path / "trainer_state.json"
    data = dataclasses.asdict(TrainerState(global_step=7))
    data["a_field_from_a_newer_version"] = {"x": 1}
    path.write_text(json.dumps(data))
    loaded = TrainerState.load_from_json(path)
    assert loaded.global_step == 7
    assert not hasattr(loaded, "a_field_from_a_newer_version")


def test_trainer_control_is_exportable_state():
    control = TrainerControl(should_save=True, should_training_stop=True)
    assert isinstance(control, ExportableState)
    state = control.state()
    assert state == {
        "args": {"should_training_stop": True, "should_epoch_stop": False, "should_save": True,
                 "should_evaluate": False, "should_log": False},
        "attributes": {},
    }
    assert TrainerControl.from_state(state) == control


def test_trainer_control_defaults_are_false():
    control = TrainerControl()
    assert not any(dataclasses.asdict(control).values())


def test_trainer_state_defaults_match_hf():
    state = TrainerState()
    assert (state.epoch, state.global_step, state.max_steps) == (0, 0, 0)
    assert (state.logging_steps, state.eval_steps, state.save_steps) == (500, 500, 500)
    assert state.log_history == [] and state.stateful_callbacks == {}
    assert state.best_metric is None and state.is_world_process_zero


# ---- an HF callback running unchanged end to end -------------------------------------------


def test_hf_style_logging_callback_runs_unchanged(tmp_path, caplog):
    """The HF docs' example callback, with only the import changed."""

    class PrinterOfLosses(TrainerCallback):
        def __init__(self):
            self.losses = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            _ = logs.pop("total_flos", None)
            if state.is_local_process_zero and "loss" in logs:
                self.losses.append(logs["loss"])

    callback = PrinterOfLosses()
    recorder = HookRecorder()
    with caplog.at_level(logging.WARNING, logger="hooktrain"):
        trainer = make_trainer(tmp_path, callbacks=[callback, recorder])
        output = trainer.train()
    assert callback.losses == [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert "total_flos" in output.metrics


def test_hf_trainer_conveniences(tmp_path) -> None:
    from safetensors.torch import load_file

    from hooktrain import Trainer
    from hooktrain.state import TrainerState
    from hooktrain.testing import RegressionDataset, TinyRegressor, tiny_args

    trainer = Trainer(TinyRegressor(), tiny_args(tmp_path / "out", max_steps=2),
                      train_dataset=RegressionDataset(8))
    trainer.train()
    trainer.save_model(str(tmp_path / "final"))
    saved = load_file(tmp_path / "final" / "model.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in trainer.model.state_dict().items())
    trainer.save_state()
    state = TrainerState.load_from_json(tmp_path / "out" / "trainer_state.json")
    assert state.global_step == 2
    assert trainer.is_world_process_zero() and trainer.is_local_process_zero()
    names = [type(c).__name__ for c in trainer.callback_handler.callbacks]
    assert names == ["DefaultFlowCallback", "PrinterCallback"]
    assert trainer.callback_handler.callback_list == "DefaultFlowCallback\nPrinterCallback"
