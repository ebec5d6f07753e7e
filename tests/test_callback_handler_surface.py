"""``trainer.callback_handler`` keeps HF's ``CallbackHandler`` surface for Trainer subclasses."""

from __future__ import annotations

from trainers import make_trainer

from hooktrain import Trainer, TrainerCallback
from hooktrain.callbacks import PrinterCallback
from hooktrain.events import EVENT_NAMES
from hooktrain.testing import TinyRegressor, tiny_args

HF_EVENTS = ("on_init_end", "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
             "on_step_begin", "on_pre_optimizer_step", "on_optimizer_step", "on_substep_end",
             "on_step_end", "on_evaluate", "on_predict", "on_save", "on_log",
             "on_prediction_step", "on_push_begin")


class Recorder(TrainerCallback):
    """Records every HF event it receives, with its keyword arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []


def _recording(event: str):
    def method(self, args, state, control, **kwargs):
        self.calls.append((event, kwargs))

    return method


for _event in HF_EVENTS:
    setattr(Recorder, _event, _recording(_event))


def make(tmp_path) -> tuple[Trainer, Recorder]:
    recorder = Recorder()
    trainer = make_trainer(tmp_path, plugins=[recorder], train_size=8, eval_size=0)
    return trainer, recorder


def test_every_hf_event_can_be_fired_with_hfs_signature_and_returns_the_control(tmp_path):
    trainer, recorder = make(tmp_path)
    recorder.calls.clear()
    handler = trainer.callback_handler
    for event in HF_EVENTS:
        assert event in EVENT_NAMES
        result = getattr(handler, event)(trainer.args, trainer.state, trainer.control)
        assert result is trainer.control, event
    assert [name for name, _ in recorder.calls] == list(HF_EVENTS)


def test_hf_style_on_log_and_on_evaluate_pass_the_values(tmp_path):
    trainer, recorder = make(tmp_path)
    recorder.calls.clear()
    handler = trainer.callback_handler
    handler.on_log(trainer.args, trainer.state, trainer.control, {"loss": 1.5})
    handler.on_evaluate(trainer.args, trainer.state, trainer.control, metrics={"eval_x": 2})
    (log_event, log_kwargs), (eval_event, eval_kwargs) = recorder.calls
    assert log_kwargs["logs"] == {"loss": 1.5} and eval_kwargs["metrics"] == {"eval_x": 2}
    assert log_kwargs["model"] is trainer.model


def test_a_control_change_made_through_an_hf_call_reaches_the_trainer(tmp_path):
    class Stopper(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            control.should_training_stop = True

    trainer = Trainer(TinyRegressor(), tiny_args(tmp_path), callbacks=[Stopper()])
    control = trainer.callback_handler.on_log(trainer.args, trainer.state, trainer.control, {})
    assert control.should_training_stop and trainer.control.should_training_stop


def test_callback_list_methods_and_common_objects(tmp_path):
    trainer, recorder = make(tmp_path)
    handler = trainer.callback_handler
    assert recorder in handler.callbacks and handler.model is trainer.model
    assert handler.pop_callback(Recorder) is recorder and recorder not in handler.callbacks
    printers = lambda: sum(isinstance(c, PrinterCallback) for c in handler.callbacks)  # noqa: E731
    assert printers() == 1  # disable_tqdm: the printer reports
    handler.add_callback(PrinterCallback)
    assert printers() == 2 and handler.callback_list.count("PrinterCallback") == 2
    handler.remove_callback(PrinterCallback)
    assert printers() == 1
    trainer.train()
    assert handler.optimizer is trainer.optimizer and handler.train_dataloader is not None
