"""HF callback code runs on hooktrain with only the import changed
(docs/migrating-from-transformers.md): the keyword arguments HF passes, control chaining, an HF
callback end to end.

HF's built-in callbacks are in ``test_callback_compat_builtins.py``, ``TrainerState`` and
``TrainerControl`` in ``test_callback_compat_state.py``."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch
from trainers import make_trainer

from hooktrain import TrainerCallback, TrainerControl
from hooktrain.testing import HookRecorder, RegressionDataset

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


# ---- kwargs exactly as HF passes them ----------------------------------------------------


@pytest.fixture(scope="module")
def kwargs_run(tmp_path_factory):
    recorder = KwargsRecorder()
    trainer = make_trainer(
        tmp_path_factory.mktemp("kwargs") / "out", plugins=[recorder],
        gradient_accumulation_steps=2, eval_strategy="steps", eval_steps=3, save_strategy="steps",
        save_steps=2, logging_steps=1, num_train_epochs=3,
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

    trainer = make_trainer(tmp_path / "out", plugins=[Replacer(), Observer()])
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

    trainer = make_trainer(tmp_path / "out", plugins=[ReturnsNone()])
    old = trainer.control
    trainer.train()
    assert trainer.control is old


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
        trainer = make_trainer(tmp_path / "out", plugins=[callback, recorder])
        output = trainer.train()
    assert callback.losses == [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert "total_flos" in output.metrics


def test_hf_trainer_conveniences(tmp_path) -> None:
    from safetensors.torch import load_file

    from hooktrain.trainer_state import TrainerState

    trainer = make_trainer(tmp_path / "out", train_size=8, eval_size=0, max_steps=2)
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
