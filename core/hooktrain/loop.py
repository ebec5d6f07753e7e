"""``TrainingLoop``: what ``Trainer.train()`` runs: epochs, accumulation, optimizer steps, logs.

The loop keeps the host and the device apart: the loss is summed on the device
(:class:`~hooktrain.progress.TrainingProgress`) and read once per logging step
(``_maybe_log_save_evaluate``); nothing else reads a tensor on the host. Under ``torchrun`` the
forward/backward goes through the ``DistributedDataParallel`` wrapper, with gradient
synchronisation skipped on the micro-batches that do not end an accumulation group.

The loop calls the trainer's override points (``get_train_dataloader``,
``create_optimizer_and_scheduler``, ``training_step``, ``_maybe_log_save_evaluate``,
``_save_checkpoint``, ``evaluate``, ``log``, ``num_examples``), never their default bodies, so
what an HF-style Trainer subclass overrides is what runs. See docs/architecture.md.

Each phase (set-up, data, forward/backward, optimizer, evaluation, checkpoint save) is timed
on the host into the dispatcher's :class:`~hooktrain.plugin_host.timings.RunTimings`, minus the
plugin calls made inside it; timing never waits for the device (docs/plugin-timings.md).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from hooktrain import fsdp
from hooktrain.data import EpochBatchSampler, to_device
from hooktrain.errors import ConfigError
from hooktrain.item_count import (
    accepts_loss_kwargs,
    batch_item_count,
    loss_shifts_labels,
    takes_item_count,
)
from hooktrain.iterable import has_length, start_epoch
from hooktrain.outputs import TrainOutput, speed_metrics
from hooktrain.preparation import set_seed, wrap_model_for_training
from hooktrain.progress import TrainingProgress
from hooktrain.trainer_state import TrainerState

if TYPE_CHECKING:
    from hooktrain.trainer import Trainer

logger = logging.getLogger("hooktrain")


class TrainingLoop:
    """Runs one Trainer's training; owns the loss sums (``progress``) and the fp16 scaler."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        #: the running loss sums of the current (or last) ``train()``
        self.progress: TrainingProgress | None = None
        self.train_dataloader: Any = None
        self.scaler = torch.amp.GradScaler(trainer.device.type) if trainer.args.fp16 else None
        # Overrides written for HF < 4.46 take no num_items_in_batch: checked once, here.
        self.training_step_takes_count = takes_item_count(trainer.training_step, positional=True)
        self.compute_loss_takes_count = takes_item_count(trainer.compute_loss, positional=False)

    def run(self, resume_from_checkpoint: str | bool | None) -> TrainOutput:
        """``train()``: set up the run, resume if asked, train the epochs, finish."""
        trainer = self.trainer
        args, hooks = trainer.args, trainer.callback_handler
        if trainer.train_dataset is None:
            raise ConfigError("Trainer.train() needs a train_dataset.")
        timings = hooks.timings
        timings.start_run()  # set-up: the loader, the optimizer (torch imports), resuming
        setup_start, setup_plugin_ns = time.perf_counter_ns(), timings.nested_ns
        train_dataloader = self.train_dataloader = trainer.get_train_dataloader()
        accumulation = args.gradient_accumulation_steps
        if has_length(train_dataloader):
            steps_in_epoch = len(train_dataloader)
        elif args.max_steps > 0:  # an iterable data set: an "epoch" is max_steps steps (HF)
            steps_in_epoch = args.max_steps * accumulation
        else:
            raise ConfigError("The train_dataset has no length (an IterableDataset), so the run "
                              "cannot count its epochs: set max_steps in TrainingArguments.")
        updates_per_epoch = max(math.ceil(steps_in_epoch / accumulation), 1)
        if not has_length(train_dataloader):
            max_steps, num_train_epochs = args.max_steps, sys.maxsize  # until max_steps, as HF
        elif args.max_steps > 0:
            max_steps = args.max_steps
            num_train_epochs = math.ceil(max_steps / updates_per_epoch)
        else:
            max_steps = math.ceil(args.num_train_epochs * updates_per_epoch)
            num_train_epochs = math.ceil(args.num_train_epochs)
        if trainer.model_init is not None:  # a fresh model, seeded first, as HF
            set_seed(args.seed)
            trainer.model = trainer.call_model_init().to(trainer.device)
            trainer.model_wrapped = trainer.model
            trainer.optimizer, trainer.lr_scheduler = None, None
            trainer.model_accepts_loss_kwargs = accepts_loss_kwargs(trainer.model)
            trainer.model_loss_shifts_labels = loss_shifts_labels(trainer.model)
        if trainer.model_wrapped is trainer.model:
            trainer.model_wrapped = wrap_model_for_training(trainer.model, trainer.device, args)
        if fsdp.is_sharded(trainer.model) and (args.eval_strategy != "no" or args.eval_on_start):
            fsdp.check_evaluation_sets(trainer.eval_dataset)  # before a step is spent
        trainer.create_optimizer_and_scheduler(num_training_steps=max_steps)

        trainer.state = state = TrainerState(train_batch_size=args.per_device_train_batch_size)
        state.compute_steps(args, max_steps)
        state.max_steps = max_steps
        state.num_train_epochs = num_train_epochs
        state.is_world_process_zero = args.process_index == 0
        state.is_local_process_zero = args.local_process_index == 0
        hooks.set_context(
            model=trainer.model, optimizer=trainer.optimizer, lr_scheduler=trainer.lr_scheduler,
            train_dataloader=train_dataloader,
        )
        progress = self.progress = TrainingProgress.start(trainer.device,
                                                          args.logging_nan_inf_filter)

        # left set by an earlier train(): cleared, as HF does
        trainer.control.should_training_stop = False
        checkpoint = trainer.checkpointer.resolve(resume_from_checkpoint)
        if checkpoint is not None:
            trainer.checkpointer.load(checkpoint, progress)
            hooks.on_load_checkpoint(checkpoint)
        start_time = time.time()
        epochs_done = state.global_step // updates_per_epoch
        skip_batches = 0
        if not args.ignore_data_skip:
            skip_batches = (state.global_step % updates_per_epoch) * accumulation

        # As in HF, a stop a callback asked for in the run that wrote the checkpoint does not
        # stop the resumed one (on_train_begin clears it): only max_steps ends it at once.
        finished = state.global_step >= max_steps
        timings.phase("set-up").add(time.perf_counter_ns() - setup_start
                                    - (timings.nested_ns - setup_plugin_ns))
        hooks.on_train_begin()
        if finished:  # a resumed run that had already ended: it ends stopped, training nothing
            trainer.control.should_training_stop = True
        if args.eval_on_start:
            self.evaluate_during_training()
        trainer.model.train()
        if not finished:
            for epoch in range(epochs_done, num_train_epochs):
                self.train_epoch(train_dataloader, epoch, steps_in_epoch, skip_batches)
                skip_batches = 0
                if trainer.control.should_training_stop:
                    break
        elif checkpoint is not None:
            logger.info("%s was saved when training ended; nothing left to train.", checkpoint)
        return self.finish(start_time, max_steps)

    def train_epoch(self, dataloader: Any, epoch: int, steps_in_epoch: int,
                    skip_batches: int) -> None:
        # The hot loop: everything it touches per micro-batch is bound to a local first.
        trainer = self.trainer
        args, state, hooks = trainer.args, trainer.state, trainer.callback_handler
        accumulation = args.gradient_accumulation_steps
        if isinstance(dataloader.batch_sampler, EpochBatchSampler):
            dataloader.batch_sampler.set_epoch(epoch, skip_batches)  # the sampler skips
            batches: Any = dataloader
        else:  # an iterable data set: the resumed batches are read and dropped
            batches = start_epoch(dataloader, epoch, skip_batches)
        hooks.on_epoch_begin()
        model = trainer.model_wrapped
        # No DDP wrapper (one process, or FSDP, which reduce-scatters every micro-batch, see
        # docs/distributed.md; compiled, it is still not DDP): no gradient sync to skip.
        unwrapped = model is trainer.model or fsdp.is_sharded(trainer.model)
        training_step = trainer.training_step
        takes_count = self.training_step_takes_count
        record_loss = self.progress.loss_filter.record
        optimizer_step = self.optimizer_step
        maybe_log_save_evaluate = trainer._maybe_log_save_evaluate  # HF's override point
        timings, now = hooks.timings, time.perf_counter_ns
        data_phase, model_phase = timings.phase("data"), timings.phase("forward/backward")
        optimizer_phase = timings.phase("optimizer")
        step = skip_batches - 1
        step_loss: torch.Tensor | None = None
        mark = now()
        for batch, num_items_in_batch in self.batches_with_item_counts(batches, skip_batches):
            start = now()
            data_phase.add(start - mark)
            step += 1
            if step % accumulation == 0:
                hooks.on_step_begin()
                # HF's name: the group's micro-batches (the epoch's last group may be short)
                trainer.current_gradient_accumulation_steps = min(accumulation,
                                                                  steps_in_epoch - step)
                step_loss = None
            ends_group = (step + 1) % accumulation == 0 or step + 1 == steps_in_epoch
            # DDP all-reduces gradients only on the micro-batch that ends an accumulation group
            start, plugin_ns = now(), timings.nested_ns
            with contextlib.nullcontext() if ends_group or unwrapped else model.no_sync():
                if takes_count:
                    loss = training_step(model, batch, num_items_in_batch)
                else:  # an override written for HF < 4.46
                    loss = training_step(model, batch)
            record_loss(loss, state.global_step)
            step_loss = loss if step_loss is None else step_loss + loss
            model_phase.add(now() - start - (timings.nested_ns - plugin_ns))
            if ends_group:
                start, plugin_ns = now(), timings.nested_ns
                optimizer_step(step_loss)
                optimizer_phase.add(now() - start - (timings.nested_ns - plugin_ns))
                state.epoch = epoch + (step + 1) / steps_in_epoch
                hooks.on_step_end(step_loss)
                maybe_log_save_evaluate()
            else:
                hooks.on_substep_end()
            control = hooks.control
            if control.should_epoch_stop or control.should_training_stop:
                break
            mark = now()
        if step < skip_batches:
            logger.warning("Epoch %d yielded no batch; stopping training.", epoch)
            trainer.control.should_training_stop = True
        hooks.on_epoch_end()
        maybe_log_save_evaluate()

    def batches_with_item_counts(
        self, dataloader: Any, skip_batches: int
    ) -> Iterator[tuple[Any, torch.Tensor | None]]:
        """Each batch with ``num_items_in_batch``: its accumulation group's label count, or None.

        HF's contract for ``compute_loss_func`` and for models that take loss keyword arguments:
        they get the number of labels (those not -100) in the whole accumulation group, so a sum
        divided by it is the group's mean whatever the batch sizes. Counting needs the group's
        batches, so they are read ahead one group at a time, and only when something uses the
        count (a model gets it with keyword inputs only). The count stays a tensor: no host sync.
        """
        trainer = self.trainer
        if trainer.compute_loss_func is None and not trainer.model_accepts_loss_kwargs:
            yield from zip(dataloader, itertools.repeat(None))
            return
        accumulation = trainer.args.gradient_accumulation_steps
        batches, step = iter(dataloader), skip_batches
        while group := list(itertools.islice(batches, accumulation - step % accumulation)):
            counts = [batch_item_count(trainer, batch) for batch in group]
            total = None if any(c is None for c in counts) else torch.stack(counts).sum()
            step += len(group)
            for batch in group:
                yield batch, total

    def training_step(self, model: torch.nn.Module, inputs: Any,
                      num_items_in_batch: torch.Tensor | None) -> torch.Tensor:
        """``Trainer.training_step``: forward and backward, the detached scaled loss back."""
        trainer = self.trainer
        device = trainer.device
        if device.type != "cpu":
            inputs = to_device(inputs, device)
        with trainer.compute_loss_context_manager():
            if self.compute_loss_takes_count:
                loss = trainer.compute_loss(model, inputs, num_items_in_batch=num_items_in_batch)
            else:  # an override written for HF < 4.46: its loss never saw the count
                loss = trainer.compute_loss(model, inputs)
                num_items_in_batch = None
        accumulation = trainer.current_gradient_accumulation_steps
        if num_items_in_batch is None and accumulation > 1:
            loss = loss / accumulation
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()
        return loss.detach()

    def optimizer_step(self, step_loss: torch.Tensor) -> None:
        """Clip (measuring the norm), step the optimizer and the schedule, count the step."""
        trainer, progress, scaler = self.trainer, self.progress, self.scaler
        hooks, optimizer, lr_scheduler = trainer.callback_handler, trainer.optimizer, \
            trainer.lr_scheduler
        progress.tr_loss.add_(step_loss)
        if scaler is not None:
            scaler.unscale_(optimizer)
        # HF 5.x measures the norm without clipping too (an infinite bound scales by exactly 1);
        # as in HF, only a positive max_grad_norm clips
        max_norm = trainer.args.max_grad_norm
        clip = max_norm if max_norm and max_norm > 0 else math.inf
        progress.last_grad_norm = torch.nn.utils.clip_grad_norm_(
            trainer.model.parameters(), clip, foreach=True
        )
        hooks.on_pre_optimizer_step()
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        hooks.on_optimizer_step()
        progress.last_learning_rate = lr_scheduler.get_last_lr()[0]  # the step's, as HF 5.x logs
        if not isinstance(lr_scheduler, ReduceLROnPlateau):  # that one steps on evaluations
            lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        trainer.state.global_step += 1

    def maybe_log_save_evaluate(self) -> None:
        """``Trainer._maybe_log_save_evaluate``: log, evaluate and save as ``control`` asks."""
        trainer, progress = self.trainer, self.progress
        state, hooks = trainer.state, trainer.callback_handler
        if trainer.control.should_log and state.global_step > progress.globalstep_last_logged:
            # The one host sync, on logging steps only; averaged over processes as HF does.
            tr_loss_scalar = progress.take_loss_since_log()
            logs: dict[str, Any] = {
                "loss": tr_loss_scalar / (state.global_step - progress.globalstep_last_logged)
            }
            if progress.last_grad_norm is not None:  # None: resumed from an older checkpoint
                logs["grad_norm"] = progress.grad_norm_value()
            logs["learning_rate"] = progress.last_learning_rate
            progress.total_loss_scalar += tr_loss_scalar
            progress.globalstep_last_logged = state.global_step
            trainer.log(logs)
        if trainer.control.should_evaluate:
            metrics = self.evaluate_during_training()
            try:
                is_new_best = trainer.checkpointer.update_best_metric(metrics)
            except ConfigError:  # no metric_for_best_model: keep this step's work, then stop
                if trainer.args.save_strategy != "no":
                    hooks.on_save(self.timed("checkpoint save", trainer._save_checkpoint))
                raise
            if trainer.args.save_strategy == "best":
                trainer.control.should_save = is_new_best
        if trainer.control.should_save:
            checkpoint_dir = self.timed("checkpoint save", trainer._save_checkpoint)  # HF's
            hooks.on_save(checkpoint_dir)

    def timed(self, phase: str, function: Any) -> Any:
        """``function()``, its host time less the plugin calls inside it added to ``phase``."""
        timings = self.trainer.callback_handler.timings
        start, plugin_ns = time.perf_counter_ns(), timings.nested_ns
        try:
            return function()
        finally:
            timings.phase(phase).add(time.perf_counter_ns() - start
                                     - (timings.nested_ns - plugin_ns))

    def evaluate_during_training(self) -> dict[str, float]:
        trainer = self.trainer
        metrics = self.timed("evaluation", trainer.evaluate)
        lr_scheduler = trainer.lr_scheduler
        if isinstance(lr_scheduler, ReduceLROnPlateau):  # HF: after every evaluation
            name = trainer.args.metric_for_best_model
            lr_scheduler.step(metrics[name if name.startswith("eval_") else f"eval_{name}"])
        trainer.model.train()
        return metrics

    def finish(self, start_time: float, max_steps: int) -> TrainOutput:
        """The rest of the loss, ``train_loss`` and speed metrics, the best model, on_train_end."""
        trainer, progress = self.trainer, self.progress
        args, state, hooks = trainer.args, trainer.state, trainer.callback_handler
        progress.total_loss_scalar += progress.take_loss_since_log()
        train_loss = progress.total_loss_scalar / max(state.global_step, 0.001)
        total_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps
        total_batch *= args.world_size
        if args.max_steps > 0:
            num_samples = args.max_steps * total_batch
        else:
            num_samples = trainer.num_examples(self.train_dataloader) * state.num_train_epochs
        metrics = speed_metrics("train", start_time, num_samples=num_samples, num_steps=max_steps)
        metrics["total_flos"] = state.total_flos
        metrics["train_loss"] = train_loss
        trainer.log(metrics)
        trainer.checkpointer.load_best_model()
        hooks.on_train_end()
        summary = hooks.summary()
        if summary:
            logger.warning(summary)
        return TrainOutput(state.global_step, train_loss, metrics)
