"""``num_items_in_batch``: HF's label count per accumulation group, and who is given it.

HF >= 4.46 counts the labels other than -100 in a whole accumulation group and passes the count
to ``compute_loss_func``, to ``training_step`` / ``compute_loss`` overrides that take it, and to
models whose ``forward`` takes loss keyword arguments, so that a loss summed and divided by it is
the group's mean however the tokens fall into micro-batches. The signature checks here run once,
when the Trainer is built.

In training the count is the group's on this process (a tensor), and the loss of
``compute_loss_func`` or of such a model is taken as already normalised over the group (a sum
divided by it; a mean per micro-batch is not divided again, as in HF); in evaluation it is each
batch's own count (HF 5.x). A model whose ``forward`` takes ``**kwargs`` (or whose
``accepts_loss_kwargs`` is true) gets it, its ``labels`` counted, when the batch is a dict.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from hooktrain.data import split_labels

if TYPE_CHECKING:
    from hooktrain.trainer import Trainer


def takes_item_count(method: Callable[..., Any], positional: bool) -> bool:
    """Whether an HF-style override takes ``num_items_in_batch`` (HF >= 4.46 passes it).

    HF passes it to ``training_step`` as the third positional argument and to ``compute_loss``
    by keyword; overrides written for older HF take two arguments and no such keyword.
    """
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: assume the current signature
        return True
    names = {parameter.name for parameter in parameters}
    kinds = {parameter.kind for parameter in parameters}
    if "num_items_in_batch" in names or inspect.Parameter.VAR_KEYWORD in kinds:
        return True
    return positional and (len(names) >= 3 or inspect.Parameter.VAR_POSITIONAL in kinds)


def accepts_loss_kwargs(model: torch.nn.Module) -> bool:
    """HF's ``model_accepts_loss_kwargs``: whether ``forward`` is given ``num_items_in_batch``.

    A model says so with an ``accepts_loss_kwargs`` attribute (transformers' models do);
    otherwise a ``forward`` taking ``**kwargs`` is taken to accept it, as HF does.
    """
    model = unwrap(model)
    if hasattr(model, "accepts_loss_kwargs"):
        return bool(model.accepts_loss_kwargs)
    try:
        parameters = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The user's module inside ``torch.compile`` and (Distributed)DataParallel wrappers, whose
    ``forward(*args, **kwargs)`` says nothing of the model's own signature (HF unwraps too)."""
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    while True:
        if isinstance(model, (DataParallel, DistributedDataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):  # torch.compile
            model = model._orig_mod
        else:
            return model


def loss_shifts_labels(model: torch.nn.Module) -> bool:
    """Whether the model's own loss shifts labels one place, as transformers' causal LMs do.

    Position 0 of each row is then never a target, so HF counts ``labels[..., 1:]``; the model's
    ``loss_type`` is looked up in the installed transformers' loss table, as HF looks it up.
    """
    model = unwrap(model)
    loss_type = getattr(model, "loss_type", None)
    if loss_type is None:
        return False
    try:
        from transformers.loss.loss_utils import LOSS_MAPPING, ForCausalLMLoss
    except ImportError:  # not a transformers model, or a transformers without the table
        return False
    encoder_decoder = getattr(getattr(model, "config", None), "is_encoder_decoder", False)
    return LOSS_MAPPING.get(loss_type) is ForCausalLMLoss and not encoder_decoder


def count_items(batch: Any, label_names: Sequence[str], shifted: bool) -> torch.Tensor | None:
    """The batch's labels that count (HF ignores -100, the padding index); None without labels.

    A collator's ``shift_labels`` are counted as they are; ``shifted`` drops each row's first
    label (see :func:`loss_shifts_labels`).
    """
    if isinstance(batch, Mapping) and "shift_labels" in batch:
        return batch["shift_labels"].ne(-100).sum()
    labels = split_labels(batch, label_names)[1]
    if isinstance(labels, tuple) and labels:
        labels = labels[0]
    if not isinstance(labels, torch.Tensor):
        return None
    return (labels[..., 1:] if shifted else labels).ne(-100).sum()


def batch_item_count(trainer: Trainer, batch: Any) -> torch.Tensor | None:
    """HF's ``num_items_in_batch`` for one batch, on the device; None where HF has none.

    ``compute_loss_func`` counts the labels it is given (``label_names``); a model taking loss
    keyword arguments counts ``labels`` (or ``shift_labels``) of a dict batch only, as HF.
    """
    if trainer.compute_loss_func is not None:
        count = count_items(batch, trainer.label_names, trainer.model_loss_shifts_labels)
    elif trainer.model_accepts_loss_kwargs and isinstance(batch, Mapping):
        count = count_items(batch, ("labels",), trainer.model_loss_shifts_labels)
    else:
        return None
    device = trainer.device
    if count is not None and device.type != "cpu":
        count = count.to(device, non_blocking=True)
    return count
