"""A batch's loss as HF computes it: the body of ``Trainer.compute_loss`` and its helpers.

The loss comes from the model's output (``.loss``, ``"loss"`` or the first element), from
``compute_loss_func`` given the labels taken out of the batch, or, with
``label_smoothing_factor``, from the logits through HF's ``LabelSmoother``
(:func:`smoothed_loss`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from hooktrain.data import split_labels
from hooktrain.errors import ConfigError

if TYPE_CHECKING:
    from hooktrain.trainer import Trainer


def compute_loss(trainer: Trainer, model: torch.nn.Module, inputs: Any, return_outputs: bool,
                 num_items_in_batch: Any) -> Any:
    """``Trainer.compute_loss``: the batch's loss (and outputs), by the trainer's settings."""
    labels = None
    compute_loss_func = trainer.compute_loss_func
    smoothing = trainer.args.label_smoothing_factor
    if compute_loss_func is not None or (smoothing != 0 and isinstance(inputs, Mapping)
                                         and "labels" in inputs):
        inputs, labels = split_labels(inputs, trainer.label_names)
    if (trainer.model_accepts_loss_kwargs and num_items_in_batch is not None
            and isinstance(inputs, Mapping)):
        inputs = {**inputs, "num_items_in_batch": num_items_in_batch}
    outputs = model(**inputs) if isinstance(inputs, Mapping) else model(*inputs)
    if compute_loss_func is not None:
        loss = compute_loss_func(outputs, labels, num_items_in_batch=num_items_in_batch)
    elif labels is not None:  # label smoothing, on the logits, as HF's LabelSmoother
        loss = smoothed_loss(outputs, labels, smoothing,
                             shift_labels=trainer.model_loss_shifts_labels)
    else:
        loss = loss_of(outputs)
    return (loss, outputs) if return_outputs else loss


def smoothed_loss(outputs: Any, labels: torch.Tensor, epsilon: float,
                  shift_labels: bool = False, ignore_index: int = -100) -> torch.Tensor:
    """HF's ``LabelSmoother``: cross-entropy mixed with the uniform distribution, mean over the
    labels that are not ``ignore_index``; causal LMs compare position ``t`` with label ``t+1``."""
    logits = outputs["logits"] if isinstance(outputs, Mapping) else (
        outputs.logits if hasattr(outputs, "logits") else outputs[0])
    if shift_labels:
        logits, labels = logits[..., :-1, :].contiguous(), labels[..., 1:].contiguous()
    log_probs = -torch.nn.functional.log_softmax(logits, dim=-1)
    if labels.dim() == log_probs.dim() - 1:
        labels = labels.unsqueeze(-1)
    padding = labels.eq(ignore_index)
    nll = log_probs.gather(dim=-1, index=torch.clamp(labels, min=0))
    smoothed = log_probs.sum(dim=-1, keepdim=True, dtype=torch.float32)
    nll = nll.masked_fill(padding, 0.0)
    smoothed = smoothed.masked_fill(padding, 0.0)
    active = padding.numel() - padding.long().sum()
    return ((1 - epsilon) * nll.sum() / active
            + epsilon * smoothed.sum() / (active * log_probs.shape[-1]))


def loss_of(outputs: Any) -> torch.Tensor:
    """The loss in a model's output: ``.loss``, ``"loss"``, the first element or a scalar."""
    if isinstance(outputs, Mapping):
        if "loss" in outputs:
            return outputs["loss"]
        raise ConfigError(
            "The model did not return a loss: its output has only the keys "
            f"{sorted(outputs)}. Return a 'loss', or pass compute_loss_func to the Trainer."
        )
    loss = getattr(outputs, "loss", None)
    if loss is not None:
        return loss
    if isinstance(outputs, (tuple, list)) and outputs:
        return outputs[0]
    if isinstance(outputs, torch.Tensor) and outputs.dim() == 0:
        return outputs
    raise ConfigError(
        f"The model returned a {type(outputs).__name__}, not a loss. Return an output with "
        ".loss, a dict with 'loss' or a tuple with the loss first, or pass compute_loss_func."
    )
