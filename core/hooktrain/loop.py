"""The inner training loop of :class:`~hooktrain.Trainer`: steps, accumulation, logging.

The loop keeps the host and the device apart: the loss is summed on the device and read once per
logging step (``_maybe_log_save_evaluate``); nothing else reads a tensor on the host. Under
``torchrun`` the forward/backward goes through the ``DistributedDataParallel`` wrapper, with
gradient synchronisation skipped on the micro-batches that do not end an accumulation group.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from hooktrain import distributed
from hooktrain.data import EpochBatchSampler, split_labels, to_device
from hooktrain.errors import ConfigError
from hooktrain.item_count import count_items
from hooktrain.iterable import start_epoch
from hooktrain.loss_filter import reduced_sum
from hooktrain.outputs import TrainOutput, speed_metrics

if TYPE_CHECKING:
    from hooktrain.trainer import Trainer

logger = logging.getLogger("hooktrain")


class TrainingLoopMixin:
    """Epochs, steps, logging and the end of training; mixed into :class:`~hooktrain.Trainer`."""

    def _train_epoch(
        self: Trainer, dataloader: Any, epoch: int, steps_in_epoch: int, skip_batches: int
    ) -> None:
        args, state, hooks = self.args, self.state, self.callback_handler
        accumulation = args.gradient_accumulation_steps
        if isinstance(dataloader.batch_sampler, EpochBatchSampler):
            dataloader.batch_sampler.set_epoch(epoch, skip_batches)  # the sampler skips
            batches: Any = dataloader
        else:  # an iterable data set: the resumed batches are read and dropped
            batches = start_epoch(dataloader, epoch, skip_batches)
        hooks.on_epoch_begin()
        step = skip_batches - 1
        step_loss: torch.Tensor | None = None
        for batch, num_items_in_batch in self._batches_with_item_counts(batches, skip_batches):
            step += 1
            if step % accumulation == 0:
                hooks.on_step_begin()
                # HF's name: the group's micro-batches (the epoch's last group may be short)
                self.current_gradient_accumulation_steps = min(accumulation, steps_in_epoch - step)
                step_loss = None
            ends_group = (step + 1) % accumulation == 0 or step + 1 == steps_in_epoch
            with self._gradient_sync(ends_group):
                if self._training_step_takes_count:
                    loss = self.training_step(self.model_wrapped, batch, num_items_in_batch)
                else:  # an override written for HF < 4.46
                    loss = self.training_step(self.model_wrapped, batch)
            self._loss_filter.record(loss, state.global_step)
            step_loss = loss if step_loss is None else step_loss + loss
            if ends_group:
                self._optimizer_step(step_loss)
                state.epoch = epoch + (step + 1) / steps_in_epoch
                hooks.on_step_end(step_loss)
                self._maybe_log_save_evaluate()
            else:
                hooks.on_substep_end()
            control = self.control
            if control.should_epoch_stop or control.should_training_stop:
                break
        if step < skip_batches:
            logger.warning("Epoch %d yielded no batch; stopping training.", epoch)
            self.control.should_training_stop = True
        hooks.on_epoch_end()
        self._maybe_log_save_evaluate()

    def _batches_with_item_counts(
        self: Trainer, dataloader: Any, skip_batches: int
    ) -> Iterator[tuple[Any, torch.Tensor | None]]:
        """Each batch with ``num_items_in_batch``: its accumulation group's label count, or None.

        HF's contract for ``compute_loss_func`` and for models that take loss keyword arguments:
        they get the number of labels (those not -100) in the whole accumulation group, so a sum
        divided by it is the group's mean whatever the batch sizes. Counting needs the group's
        batches, so they are read ahead one group at a time, and only when something uses the
        count (a model gets it with keyword inputs only). The count stays a tensor: no host sync.
        """
        if self.compute_loss_func is None and not self.model_accepts_loss_kwargs:
            yield from zip(dataloader, itertools.repeat(None))
            return
        accumulation = self.args.gradient_accumulation_steps
        batches, step = iter(dataloader), skip_batches
        while group := list(itertools.islice(batches, accumulation - step % accumulation)):
            counts = [self._item_count(batch) for batch in group]
            total = None if any(c is None for c in counts) else torch.stack(counts).sum()
            step += len(group)
            for batch in group:
                yield batch, total

    def _item_count(self: Trainer, batch: Any) -> torch.Tensor | None:
        """HF's ``num_items_in_batch`` for one batch, on the device; None where HF has none.

        ``compute_loss_func`` counts the labels it is given (``label_names``); a model taking loss
        keyword arguments counts ``labels`` (or ``shift_labels``) of a dict batch only, as HF.
        """
        if self.compute_loss_func is not None:
            count = count_items(batch, self.label_names, self._loss_shifts_labels)
        elif self.model_accepts_loss_kwargs and isinstance(batch, Mapping):
            count = count_items(batch, ("labels",), self._loss_shifts_labels)
        else:
            return None
        if count is not None and self.device.type != "cpu":
            count = count.to(self.device, non_blocking=True)
        return count

    def _gradient_sync(self: Trainer, ends_group: bool) -> Any:
        """DDP all-reduces gradients only on the micro-batch that ends an accumulation group."""
        if ends_group or self.model_wrapped is self.model:
            return contextlib.nullcontext()
        return self.model_wrapped.no_sync()

    def training_step(
        self: Trainer, model: torch.nn.Module, inputs: Any,
        num_items_in_batch: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Forward and backward for one micro-batch; returns its detached, scaled loss (HF's).

        The loss is divided by ``current_gradient_accumulation_steps``, unless
        ``compute_loss_func`` or the model got the group's label count: then it has normalised
        over the whole group already (HF).
        """
        if self.device.type != "cpu":
            inputs = to_device(inputs, self.device)
        with self._autocast():
            if self._compute_loss_takes_count:
                loss = self.compute_loss(model, inputs, num_items_in_batch=num_items_in_batch)
            else:  # an override written for HF < 4.46: its loss never saw the count
                loss = self.compute_loss(model, inputs)
                num_items_in_batch = None
        if num_items_in_batch is None and self.current_gradient_accumulation_steps > 1:
            loss = loss / self.current_gradient_accumulation_steps
        if self._scaler is not None:
            self._scaler.scale(loss).backward()
        else:
            loss.backward()
        return loss.detach()

    def _optimizer_step(self: Trainer, step_loss: torch.Tensor) -> None:
        args, hooks = self.args, self.callback_handler
        self._tr_loss.add_(step_loss)
        if self._scaler is not None:
            self._scaler.unscale_(self.optimizer)
        # HF 5.x measures the norm without clipping too (an infinite bound scales by exactly 1);
        # as in HF, only a positive max_grad_norm clips
        clip = args.max_grad_norm if args.max_grad_norm and args.max_grad_norm > 0 else math.inf
        self._last_grad_norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), clip, foreach=True
        )
        hooks.on_pre_optimizer_step()
        if self._scaler is not None:
            self._scaler.step(self.optimizer)
            self._scaler.update()
        else:
            self.optimizer.step()
        hooks.on_optimizer_step()
        self._last_learning_rate = self.lr_scheduler.get_last_lr()[0]  # the step's, as HF 5.x logs
        if not isinstance(self.lr_scheduler, ReduceLROnPlateau):  # that one steps on evaluations
            self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.global_step += 1

    def compute_loss(
        self: Trainer, model: torch.nn.Module, inputs: Any, return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        """The batch's loss (and outputs): from the model, or from ``compute_loss_func``."""
        labels = None
        smoothing = self.args.label_smoothing_factor != 0
        if self.compute_loss_func is not None or (smoothing and isinstance(inputs, Mapping)
                                                  and "labels" in inputs):
            inputs, labels = split_labels(inputs, self.label_names)
        if (self.model_accepts_loss_kwargs and num_items_in_batch is not None
                and isinstance(inputs, Mapping)):
            inputs = {**inputs, "num_items_in_batch": num_items_in_batch}
        outputs = model(**inputs) if isinstance(inputs, Mapping) else model(*inputs)
        if self.compute_loss_func is not None:
            loss = self.compute_loss_func(outputs, labels, num_items_in_batch=num_items_in_batch)
        elif labels is not None:  # label smoothing, on the logits, as HF's LabelSmoother
            loss = smoothed_loss(outputs, labels, self.args.label_smoothing_factor,
                                 shift_labels=self._loss_shifts_labels)
        else:
            loss = _loss_of(outputs)
        return (loss, outputs) if return_outputs else loss

    def _maybe_log_save_evaluate(self: Trainer) -> None:
        state = self.state
        if self.control.should_log and state.global_step > self._globalstep_last_logged:
            # The one host sync, on logging steps only; averaged over processes as HF does.
            tr_loss_scalar = reduced_sum(self._loss_filter, self._tr_loss,
                                         self._globalstep_last_logged,
                                         distributed.mean_over_processes)
            self._tr_loss.zero_()
            self._loss_filter.reset()
            logs: dict[str, Any] = {
                "loss": tr_loss_scalar / (state.global_step - self._globalstep_last_logged)
            }
            if self._last_grad_norm is not None:  # None: resumed from an older checkpoint
                logs["grad_norm"] = float(self._last_grad_norm)
            logs["learning_rate"] = self._last_learning_rate
            self._total_loss_scalar += tr_loss_scalar
            self._globalstep_last_logged = state.global_step
            self.log(logs)
        if self.control.should_evaluate:
            metrics = self._evaluate_during_training()
            try:
                is_new_best = self._update_best_metric(metrics)
            except ConfigError:  # no metric_for_best_model: keep this step's work, then stop
                if self.args.save_strategy != "no":
                    self.callback_handler.on_save(self._save_checkpoint())
                raise
            if self.args.save_strategy == "best":
                self.control.should_save = is_new_best
        if self.control.should_save:
            checkpoint_dir = self._save_checkpoint()
            self.callback_handler.on_save(checkpoint_dir)

    def _evaluate_during_training(self: Trainer) -> dict[str, float]:
        metrics = self.evaluate()
        if isinstance(self.lr_scheduler, ReduceLROnPlateau):  # HF: after every evaluation
            name = self.args.metric_for_best_model
            self.lr_scheduler.step(metrics[name if name.startswith("eval_") else f"eval_{name}"])
        self.model.train()
        return metrics

    def _finish_training(self: Trainer, start_time: float, max_steps: int) -> TrainOutput:
        args, state = self.args, self.state
        self._total_loss_scalar += reduced_sum(self._loss_filter, self._tr_loss,
                                               self._globalstep_last_logged,
                                               distributed.mean_over_processes)
        self._tr_loss.zero_()
        self._loss_filter.reset()
        train_loss = self._total_loss_scalar / max(state.global_step, 0.001)
        total_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps
        total_batch *= args.world_size
        if args.max_steps > 0:
            num_samples = args.max_steps * total_batch
        else:
            num_samples = self.num_examples(self._train_dataloader) * state.num_train_epochs
        metrics = speed_metrics("train", start_time, num_samples=num_samples, num_steps=max_steps)
        metrics["total_flos"] = state.total_flos
        metrics["train_loss"] = train_loss
        self.log(metrics)
        self._load_best_model_at_end()
        self.callback_handler.on_train_end()
        summary = self.callback_handler.summary()
        if summary:
            logger.warning(summary)
        return TrainOutput(state.global_step, train_loss, metrics)


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


def _loss_of(outputs: Any) -> torch.Tensor:
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
