"""``Evaluator``: the bodies of ``evaluate``, ``predict`` and their loop, for one Trainer.

The Trainer's methods of those names delegate here, and this code calls the Trainer's override
points (``evaluate``, ``evaluation_loop``, ``prediction_step``, ``compute_loss``,
``get_eval_dataloader``, ``get_test_dataloader``, ``log``), so a subclass's override is what
runs. The loss is averaged over samples (not batches), predictions and labels are gathered on the
device and turned into numpy once at the end, and ``on_prediction_step`` fires after each batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from hooktrain import distributed, fsdp
from hooktrain.data import batch_size_of, split_labels, to_device
from hooktrain.errors import ConfigError
from hooktrain.item_count import batch_item_count, takes_item_count
from hooktrain.outputs import (
    EvalLoopOutput,
    EvalPrediction,
    PredictionOutput,
    speed_metrics,
)

if TYPE_CHECKING:
    from hooktrain.trainer import Trainer


class Evaluator:
    """Evaluation and prediction for one Trainer; reads its model and settings at each call."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        # an override written for HF < 4.46 takes no num_items_in_batch: checked once, here
        self.compute_loss_takes_count = takes_item_count(trainer.compute_loss, positional=False)

    def evaluate(self, eval_dataset: Any, ignore_keys: list[str] | None,
                 metric_key_prefix: str) -> dict[str, float]:
        """``Trainer.evaluate``: each data set's metrics, logged; ``on_evaluate`` per set."""
        trainer = self.trainer
        datasets = trainer.eval_dataset if eval_dataset is None else eval_dataset
        if isinstance(datasets, str):
            named = trainer.eval_dataset
            if not isinstance(named, Mapping) or datasets not in named:
                raise ConfigError(f"No evaluation data set named {datasets!r}.")
            return trainer.evaluate(trainer.eval_dataset[datasets], ignore_keys,
                                    f"{metric_key_prefix}_{datasets}")
        if isinstance(datasets, Mapping):
            merged: dict[str, float] = {}
            for name, dataset in datasets.items():
                merged.update(trainer.evaluate(dataset, ignore_keys, f"{metric_key_prefix}_{name}"))
            return merged
        if datasets is None:
            raise ConfigError("evaluate() needs an eval_dataset (in the Trainer or here).")
        start = time.time()
        output = trainer.evaluation_loop(  # predictions only for compute_metrics, as HF
            trainer.get_eval_dataloader(datasets), "Evaluation",
            prediction_loss_only=True if trainer.compute_metrics is None else None,
            ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix,
        )
        metrics = output.metrics
        metrics.update(speed_metrics(
            metric_key_prefix, start, num_samples=output.num_samples,
            num_steps=math.ceil(output.num_samples / trainer.args.per_device_eval_batch_size),
        ))
        trainer.log(metrics)
        trainer.callback_handler.on_evaluate(metrics)
        return metrics

    def predict(self, test_dataset: Any, ignore_keys: list[str] | None,
                metric_key_prefix: str) -> PredictionOutput:
        """``Trainer.predict``: predictions, label ids and metrics; ``on_predict``, no log."""
        trainer = self.trainer
        start = time.time()
        output = trainer.evaluation_loop(
            trainer.get_test_dataloader(test_dataset), "Prediction", ignore_keys=ignore_keys,
            metric_key_prefix=metric_key_prefix,
        )
        output.metrics.update(speed_metrics(
            metric_key_prefix, start, num_samples=output.num_samples,
            num_steps=math.ceil(output.num_samples / trainer.args.per_device_eval_batch_size),
        ))
        trainer.callback_handler.on_predict(output.metrics)
        return PredictionOutput(output.predictions, output.label_ids, output.metrics)

    def evaluation_loop(self, dataloader: Any, prediction_loss_only: bool | None,
                        ignore_keys: list[str] | None, metric_key_prefix: str) -> EvalLoopOutput:
        """``Trainer.evaluation_loop``: the model over ``dataloader``, HF's metric rules."""
        trainer = self.trainer
        model = trainer.model
        hooks = trainer.callback_handler
        prediction_step = trainer.prediction_step
        preprocess = trainer.preprocess_logits_for_metrics
        was_training = model.training
        model.eval()
        hooks.set_context(eval_dataloader=dataloader)
        loss_sum: torch.Tensor | None = None
        num_samples = 0
        all_logits: list[Any] = []
        all_labels: list[Any] = []
        if prediction_loss_only is None:
            prediction_loss_only = trainer.args.prediction_loss_only
        want_predictions = not prediction_loss_only
        batches = dataloader
        if fsdp.is_sharded(model):
            batches = _in_lockstep(dataloader, lambda spare: prediction_step(
                model, spare, True, ignore_keys))
        try:
            for batch in batches:
                size = batch_size_of(batch)
                num_samples += size
                loss, logits, labels = prediction_step(model, batch, not want_predictions,
                                                       ignore_keys)
                if loss is not None:
                    weighted = loss.detach().float() * size
                    loss_sum = weighted if loss_sum is None else loss_sum + weighted
                if want_predictions:
                    if logits is not None and preprocess is not None:
                        logits = preprocess(logits, labels)
                    if logits is not None:
                        all_logits.append(_detach(logits))
                    if labels is not None:
                        all_labels.append(_detach(labels))
                hooks.on_prediction_step()
        finally:
            if was_training:
                model.train()
        if distributed.world_size() > 1:  # every sample exactly once: no padding in the loss
            loss_sum, num_samples, all_logits, all_labels = _gather_evaluation(
                loss_sum, num_samples, all_logits, all_labels, trainer.device
            )
        predictions = _concat(all_logits)
        label_ids = _concat(all_labels)
        metrics: dict[str, Any] = {}
        compute_metrics = trainer.compute_metrics
        if compute_metrics is not None and predictions is not None and label_ids is not None:
            metrics = dict(compute_metrics(EvalPrediction(predictions, label_ids)))
        metrics = {k: v.item() if hasattr(v, "item") else v for k, v in metrics.items()}
        if loss_sum is not None and num_samples:
            metrics[f"{metric_key_prefix}_loss"] = (loss_sum / num_samples).item()
        for key in list(metrics):  # HF's loop: re-added keys move after {prefix}_loss
            if not key.startswith(f"{metric_key_prefix}_"):
                metrics[f"{metric_key_prefix}_{key}"] = metrics.pop(key)
        return EvalLoopOutput(predictions, label_ids, metrics, num_samples)

    def prediction_step(self, model: torch.nn.Module, inputs: Any, prediction_loss_only: bool,
                        ignore_keys: list[str] | None) -> tuple[torch.Tensor | None, Any, Any]:
        """``Trainer.prediction_step``: one batch's ``(loss, logits, labels)``, each maybe None."""
        trainer = self.trainer
        if ignore_keys is None:  # HF's defaults, "cache" for a model with a config
            config = getattr(trainer.model, "config", None)
            ignore_keys = [] if config is None else list(
                getattr(config, "keys_to_ignore_at_inference", ["cache"]))
        device = trainer.device
        if device.type != "cpu":
            inputs = to_device(inputs, device)
        labels = split_labels(inputs, trainer.label_names)[1]
        with torch.no_grad(), trainer.compute_loss_context_manager():
            if labels is not None and self.compute_loss_takes_count:
                # HF 5.x passes the batch's own count here (None where it counts nothing)
                loss, outputs = trainer.compute_loss(
                    model, inputs, return_outputs=True,
                    num_items_in_batch=batch_item_count(trainer, inputs))
            elif labels is not None:  # an override written for HF < 4.46
                loss, outputs = trainer.compute_loss(model, inputs, return_outputs=True)
            else:
                loss = None
                outputs = model(**inputs) if isinstance(inputs, Mapping) else model(*inputs)
        if prediction_loss_only:
            return loss, None, None
        return loss, _logits_of(outputs, loss is not None, ignore_keys or []), labels


def _in_lockstep(batches: Any, forward_spare: Any) -> Any:
    """Under FSDP each forward is a collective (every unit gathers its parameters from every
    rank), so all ranks must make as many forwards. A rank whose share of the data ran out
    while another's has a batch left (the last global batch is short) repeats its previous
    batch and drops the result: each sample is still counted exactly once."""
    iterator, previous = iter(batches), None
    while True:
        batch = next(iterator, None)
        # one collective: does any process still have a batch, is any one left with none
        any_batch, any_starved = distributed.any_over_processes(
            batch is not None, batch is None and previous is None)
        if not any_batch:
            return
        if any_starved:  # every process raises, together
            raise ConfigError(
                "A process got no evaluation sample while another did: under FSDP every "
                "process must run the model, so the evaluation set needs at least one sample "
                f"per process ({distributed.world_size()}).")
        if batch is None:
            forward_spare(previous)
            continue
        previous = batch
        yield batch


def _gather_evaluation(
    loss_sum: torch.Tensor | None, num_samples: int, logits: list[Any], labels: list[Any],
    device: torch.device,
) -> tuple[torch.Tensor | None, int, list[Any], list[Any]]:
    """Sum losses and counts over processes; put the batches back in data-set order.

    Rank ``r`` holds slice ``r`` of every global batch (the last may be missing on some ranks),
    so batch ``i`` of the data set is rank 0's ``i``-th chunk, then rank 1's, and so on.
    """
    has_loss = distributed.sum_over_processes(
        torch.tensor(float(loss_sum is not None), device=device)).item() > 0
    totals = torch.stack([
        loss_sum.double() if loss_sum is not None else torch.zeros((), device=device,
                                                                   dtype=torch.float64),
        torch.tensor(float(num_samples), device=device, dtype=torch.float64),
    ])
    totals = distributed.sum_over_processes(totals)
    gathered = distributed.gather_objects((_to_cpu(logits), _to_cpu(labels)))
    merged_logits: list[Any] = []
    merged_labels: list[Any] = []
    for index in range(max(len(chunks) for chunks, _ in gathered)):
        for chunks, label_chunks in gathered:
            if index < len(chunks):
                merged_logits.append(chunks[index])
            if index < len(label_chunks):
                merged_labels.append(label_chunks[index])
    return (totals[0] if has_loss else None), int(totals[1].item()), merged_logits, merged_labels


def _to_cpu(chunks: list[Any]) -> list[Any]:
    def move(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.cpu()
        if isinstance(value, (tuple, list)):
            return type(value)(move(v) for v in value)
        return value

    return [move(chunk) for chunk in chunks]


def _logits_of(outputs: Any, has_loss: bool, ignore_keys: list[str]) -> Any:
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, Mapping) or hasattr(outputs, "keys"):
        values = [outputs[k] for k in outputs.keys() if k != "loss" and k not in ignore_keys]
    elif isinstance(outputs, (tuple, list)):
        values = list(outputs[1:] if has_loss else outputs)
    elif hasattr(outputs, "logits"):
        values = [outputs.logits]
    else:
        return None
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def _detach(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (tuple, list)):
        return type(value)(_detach(v) for v in value)
    return value


def _concat(chunks: list[Any]) -> Any:
    """Concatenate per-batch tensors (or tuples of them) along the batch axis, as numpy."""
    if not chunks:
        return None
    first = chunks[0]
    if isinstance(first, (tuple, list)):
        return tuple(_concat([chunk[i] for chunk in chunks]) for i in range(len(first)))
    tensors = [c if c.dim() else c.reshape(1) for c in chunks]
    merged = torch.cat(tensors, dim=0)
    if merged.dtype == torch.bfloat16:
        merged = merged.float()
    return merged.cpu().numpy()

