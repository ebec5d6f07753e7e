"""``TrainerCallback``: Hugging Face's callback base class, unchanged, so HF callbacks run as is.

Every method receives ``(args, state, control, **kwargs)`` with HF's keyword arguments
(``model``, ``processing_class``, ``optimizer``, ``lr_scheduler``, ``train_dataloader``,
``eval_dataloader``, plus ``logs`` for ``on_log`` and ``metrics`` for ``on_evaluate`` /
``on_predict``). Returning a ``TrainerControl`` replaces the control that later callbacks see.

hooktrain only calls the methods a subclass overrides, and rejects a method named like a hook
that does not exist (``on_stepend``) when the callback is registered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hooktrain.args import TrainingArguments
    from hooktrain.trainer_state import TrainerControl, TrainerState


class TrainerCallback:
    """Base class for HF-style callbacks; override the events you need."""

    def on_init_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):  # noqa: E501
        """The end of ``Trainer.__init__``."""

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):  # noqa: E501
        """The start of training."""

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):  # noqa: E501
        """The end of training."""

    def on_epoch_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):  # noqa: E501
        """The start of an epoch."""

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):  # noqa: E501
        """The end of an epoch."""

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):  # noqa: E501
        """The start of an optimizer step (several micro-batches under gradient accumulation)."""

    def on_pre_optimizer_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):  # noqa: E501
        """After gradient clipping, before ``optimizer.step()``."""

    def on_optimizer_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):  # noqa: E501
        """After ``optimizer.step()``, before gradients are zeroed."""

    def on_substep_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):  # noqa: E501
        """After a micro-batch that is not the last of its accumulation group."""

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):  # noqa: E501
        """After an optimizer step."""

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):  # noqa: E501
        """After an evaluation phase (``metrics`` in kwargs)."""

    def on_predict(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, metrics: dict[str, float], **kwargs: Any):  # noqa: E501
        """After a successful prediction."""

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):  # noqa: E501
        """After a checkpoint save."""

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):  # noqa: E501
        """After logging the last logs (``logs`` in kwargs)."""

    def on_prediction_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):  # noqa: E501
        """After a prediction step."""

    def on_push_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):  # noqa: E501
        """HF 5.x's push-to-Hub event; hooktrain never fires it."""

    # hooktrain additions; HF never calls these, so overriding them changes nothing there.

    def on_load_checkpoint(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):  # noqa: E501
        """After a checkpoint was restored (``checkpoint_dir`` in kwargs), before
        ``on_train_begin``."""

    def on_pre_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):  # noqa: E501
        """Before a log is recorded (``logs`` in kwargs); return a dict of values to add to it."""

    def on_exception(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):  # noqa: E501
        """``train``/``evaluate``/``predict`` raised (``exception`` in kwargs); it propagates
        after."""


def foreign_base(cls: type, name: str) -> type | None:
    """The class called ``name`` from transformers in ``cls``'s MRO, if any.

    Callbacks written for HF subclass ``transformers.TrainerCallback`` (and stateful ones
    ``transformers.ExportableState``); hooktrain accepts them without importing transformers by
    recognising those bases by name and module.
    """
    for base in cls.__mro__:
        if base.__name__ == name and base.__module__.split(".")[0] == "transformers":
            return base
    return None


def callback_base(cls: type) -> type | None:
    """``TrainerCallback`` (hooktrain's or transformers') that ``cls`` derives from, or None."""
    if issubclass(cls, TrainerCallback):
        return TrainerCallback
    return foreign_base(cls, "TrainerCallback")


def is_trainer_callback(plugin: object) -> bool:
    """Whether ``plugin`` is an HF-style callback: hooktrain's or transformers' subclass."""
    return callback_base(type(plugin)) is not None
