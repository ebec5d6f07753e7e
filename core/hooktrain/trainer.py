"""``Trainer``: the training loop. The only code that fires hooks, through the dispatcher.

Evaluation lives in :mod:`hooktrain.evaluation`, checkpointing in :mod:`hooktrain.resume`, the
DataLoaders in :mod:`hooktrain.loaders` and HF's other override points in
:mod:`hooktrain.overrides`; this module holds construction, plugin management and ``train()``.
The loop keeps the host and the device apart: the loss is summed on the device and read once
per logging step.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from hooktrain.args import TrainingArguments
from hooktrain.callbacks import DefaultFlowCallback, PrinterCallback, ProgressCallback
from hooktrain.data import default_collate
from hooktrain.errors import ConfigError
from hooktrain import distributed
from hooktrain.evaluation import EvaluationMixin
from hooktrain.iterable import has_length
from hooktrain.item_count import accepts_loss_kwargs, loss_shifts_labels, takes_item_count
from hooktrain.loaders import DataLoadersMixin
from hooktrain.loop import TrainingLoopMixin
from hooktrain.loss_filter import LossFilter
from hooktrain.overrides import OverridePointsMixin
from hooktrain.preflight import check_trainer_setup
from hooktrain.outputs import TrainOutput
from hooktrain.plugin_host import (
    Band,
    HookDispatcher,
    HooktrainPluginManager,
    PluginFault,
)
from hooktrain.resume import CheckpointMixin
from hooktrain.trainer_state import TrainerControl, TrainerState

logger = logging.getLogger("hooktrain")


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer(TrainingLoopMixin, EvaluationMixin, CheckpointMixin, DataLoadersMixin,
              OverridePointsMixin):
    """Trains, evaluates and predicts with a PyTorch model, HF-compatible.

    Arguments are HF's. ``model`` is called as HF calls it: with a batch dict as keyword
    arguments (or a tuple batch positionally), returning an output with ``.loss``, a dict with
    ``"loss"`` or a tuple with the loss first; or any module together with
    ``compute_loss_func(outputs, labels, num_items_in_batch=None)``, in which case the labels
    (``label_names``, or the last element of a tuple batch) are taken out of the batch first.
    In training, ``num_items_in_batch`` is HF's: the number of labels other than -100 in the
    whole accumulation group on this process (a tensor), and the function's loss is taken as
    already normalised over the group (a sum divided by it; a mean per micro-batch is not divided
    again, as in HF); in evaluation it is each batch's own count (HF 5.x). ``training_step`` /
    ``compute_loss`` overrides get the count when their signature takes it (HF >= 4.46) and not
    otherwise. As in HF, a model whose ``forward`` takes ``**kwargs`` (or whose
    ``accepts_loss_kwargs`` is true) is called with ``num_items_in_batch`` (its ``labels``
    counted) when the batch is a dict, and its loss is likewise taken as normalised over the group.
    """

    def __init__(
        self,
        model: torch.nn.Module | None = None,
        args: TrainingArguments | None = None,
        data_collator: Callable[[list], Any] | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        model_init: Callable[..., torch.nn.Module] | None = None,
        compute_loss_func: Callable[..., torch.Tensor] | None = None,
        compute_metrics: Callable[[Any], dict[str, float]] | None = None,
        callbacks: list[Any] | None = None,
        optimizers: tuple[Any, Any] = (None, None),
        optimizer_cls_and_kwargs: tuple[type, dict[str, Any]] | None = None,
        preprocess_logits_for_metrics: Callable[[Any, Any], Any] | None = None,
    ) -> None:
        self.args = args if args is not None else TrainingArguments()
        check_trainer_setup(self.args, eval_dataset)  # before any work: fail in seconds
        set_seed(self.args.seed)
        self.model_init = model_init
        if model_init is not None:
            if model is not None:  # transformers 4.x's rule; 5.x refuses both
                logger.warning("Trainer got both a model and model_init: model_init makes a "
                               "fresh model at every train(), replacing the one given.")
            else:
                model = self.call_model_init()
        if model is None:
            raise ConfigError("Trainer needs a model: Trainer(model=..., args=...), or "
                              "model_init=a function returning one.")
        self._apply_process_arguments()
        self.device = self.args.device
        self.is_distributed = distributed.setup(self.args, self.device)
        self.model = model.to(self.device)
        self.model_wrapped = self.model  # DistributedDataParallel around it under torchrun
        self.data_collator = data_collator or default_collate
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.processing_class = processing_class
        self.compute_loss_func = compute_loss_func
        self.compute_metrics = compute_metrics
        self.preprocess_logits_for_metrics = preprocess_logits_for_metrics
        self.optimizer, self.lr_scheduler = optimizers
        self.optimizer_cls_and_kwargs = optimizer_cls_and_kwargs
        if model_init is not None and (self.optimizer is not None or self.lr_scheduler is not None):
            raise ConfigError("model_init cannot be combined with optimizers=(...): each train() "
                              "makes a new model. Override create_optimizer_and_scheduler instead.")
        self.label_names = self.args.label_names or ["labels"]
        self.is_in_train = False
        self._created_scheduler = False
        self.current_gradient_accumulation_steps = 1
        self._training_step_takes_count = takes_item_count(self.training_step, positional=True)
        self._compute_loss_takes_count = takes_item_count(self.compute_loss, positional=False)
        self.model_accepts_loss_kwargs = accepts_loss_kwargs(self.model)
        self._loss_shifts_labels = loss_shifts_labels(self.model)
        self._exception_depth = 0
        self._state = TrainerState()

        self.plugin_manager = HooktrainPluginManager()
        self.callback_handler = HookDispatcher(self.plugin_manager, self.args.plugin_errors,
                                               self.args.plugin_timeout)
        self.callback_handler.set_rank(self.args.process_index == 0, self.args.world_size)
        self._state.is_world_process_zero = self.args.process_index == 0
        self._state.is_local_process_zero = self.args.local_process_index == 0
        self.callback_handler.set_context(
            args=self.args, state=self._state, model=self.model,
            processing_class=processing_class, optimizer=self.optimizer,
            lr_scheduler=self.lr_scheduler,
        )
        self.add_callback(DefaultFlowCallback)
        for callback in callbacks or []:
            self.add_callback(callback)
        self.plugin_manager.load_entrypoint_plugins(
            self.args.report_to, self.args.disable_plugins, self.args.plugin_settings)
        self.add_callback(PrinterCallback if self.args.disable_tqdm else ProgressCallback)
        self._autocast = self._make_autocast()
        self._scaler = torch.amp.GradScaler(self.device.type) if self.args.fp16 else None
        self.callback_handler.on_init_end()

    # ---- state and control ---------------------------------------------------------------

    @property
    def state(self) -> TrainerState:
        return self._state

    @state.setter
    def state(self, value: TrainerState) -> None:
        self._state = value
        self.callback_handler.set_context(state=value)

    @property
    def control(self) -> TrainerControl:
        return self.callback_handler.control

    @control.setter
    def control(self, value: TrainerControl) -> None:
        self.callback_handler.control = value

    # ---- plugins -------------------------------------------------------------------------

    @property
    def callbacks(self) -> list[Any]:
        """Every plugin object, in dispatch order."""
        return self.callback_handler.callbacks

    @property
    def plugin_faults(self) -> list[PluginFault]:
        """Each plugin that failed to load or was switched off after raising, in order."""
        return list(self.plugin_manager.faults)

    def add_callback(self, callback: Any) -> None:
        """Add a plugin: a class (instantiated with no arguments) or an instance (HF semantics)."""
        self.callback_handler.add_callback(callback)

    def pop_callback(self, callback: Any) -> Any | None:
        """Remove and return the first plugin matching a class (isinstance) or an instance."""
        return self.callback_handler.pop_callback(callback)

    def remove_callback(self, callback: Any) -> None:
        """Remove a plugin; an instance that is not registered raises ``ValueError`` (as HF)."""
        self.callback_handler.remove_callback(callback)

    # ---- the error funnel ----------------------------------------------------------------

    @contextlib.contextmanager
    def _exception_funnel(self):  # type: ignore[no-untyped-def]
        """Fire ``on_exception`` once (from the outermost call) before an error propagates.

        On success the outermost call drains the non-blocking plugins' queues before returning.
        """
        self._exception_depth += 1
        try:
            yield
            if self._exception_depth == 1:
                self.callback_handler.drain()  # non-blocking plugins finish before we return
        except BaseException as exc:
            if self._exception_depth == 1:
                self.callback_handler.on_exception(exc)
            raise
        finally:
            self._exception_depth -= 1

    # ---- training ------------------------------------------------------------------------

    def train(self, resume_from_checkpoint: str | bool | None = None) -> TrainOutput:
        """Train; ``resume_from_checkpoint=True`` continues from the newest complete checkpoint."""
        with distributed.terminate_as_exception(), self._exception_funnel():
            self.is_in_train = True
            neftune = None
            try:
                if self.args.neftune_noise_alpha is not None:
                    neftune = self._activate_neftune()
                return self._train(resume_from_checkpoint)
            finally:
                self.is_in_train = False
                if neftune is not None:  # the noise is for training only, as in HF
                    neftune.remove()
                self._release_ddp_wrapper()

    def _release_ddp_wrapper(self) -> None:
        """Drop the ``DistributedDataParallel`` wrapper ``train()`` made (the next one makes anew).

        It holds the process group, and while anything does, destroying the group at exit cannot
        join gloo's threads: they outlive the interpreter and can abort the process (see
        ``distributed.leave_process_group``). ``evaluate()``/``predict()`` need no wrapper.
        """
        self.model_wrapped = self.model

    def _train(self, resume_from_checkpoint: str | bool | None) -> TrainOutput:
        args = self.args
        if self.train_dataset is None:
            raise ConfigError("Trainer.train() needs a train_dataset.")
        train_dataloader = self._train_dataloader = self.get_train_dataloader()
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
        if self.model_init is not None:  # a fresh model, seeded first, as HF
            set_seed(args.seed)
            self.model = self.call_model_init().to(self.device)
            self.model_wrapped = self.model
            self.optimizer, self.lr_scheduler = None, None
            self.model_accepts_loss_kwargs = accepts_loss_kwargs(self.model)
            self._loss_shifts_labels = loss_shifts_labels(self.model)
        if self.model_wrapped is self.model:
            self.model_wrapped = self._wrap_model_for_training()
        if self._created_scheduler:  # made anew for every train(), as HF; a passed one is kept
            self.lr_scheduler = None
            self._created_scheduler = False
        self.create_optimizer_and_scheduler(num_training_steps=max_steps)

        self.state = TrainerState(train_batch_size=args.per_device_train_batch_size)
        self.state.compute_steps(args, max_steps)
        self.state.max_steps = max_steps
        self.state.num_train_epochs = num_train_epochs
        self.state.is_world_process_zero = args.process_index == 0
        self.state.is_local_process_zero = args.local_process_index == 0
        self.callback_handler.set_context(
            model=self.model, optimizer=self.optimizer, lr_scheduler=self.lr_scheduler,
            train_dataloader=train_dataloader,
        )
        self._tr_loss = torch.zeros((), device=self.device)
        self._loss_filter = LossFilter(args.logging_nan_inf_filter)
        self._total_loss_scalar = 0.0
        self._globalstep_last_logged = 0
        self._last_grad_norm: Any = None
        self._last_learning_rate = 0.0

        self.control.should_training_stop = False  # left set by an earlier train() (HF §1.6)
        checkpoint = self._resolve_resume(resume_from_checkpoint)
        if checkpoint is not None:
            self._load_checkpoint(checkpoint)
            self.callback_handler.on_load_checkpoint(checkpoint)
        start_time = time.time()
        epochs_done = self.state.global_step // updates_per_epoch
        skip_batches = 0
        if not args.ignore_data_skip:
            skip_batches = (self.state.global_step % updates_per_epoch) * accumulation

        # As in HF, a stop a callback asked for in the run that wrote the checkpoint does not
        # stop the resumed one (on_train_begin clears it): only max_steps ends it at once.
        finished = self.state.global_step >= max_steps
        self.callback_handler.on_train_begin()
        if finished:  # a resumed run that had already ended: it ends stopped, training nothing
            self.control.should_training_stop = True
        if args.eval_on_start:
            self._evaluate_during_training()
        self.model.train()
        if not finished:
            for epoch in range(epochs_done, num_train_epochs):
                self._train_epoch(train_dataloader, epoch, steps_in_epoch, skip_batches)
                skip_batches = 0
                if self.control.should_training_stop:
                    break
        elif checkpoint is not None:
            logger.info("%s was saved when training ended; nothing left to train.", checkpoint)
        return self._finish_training(start_time, max_steps)

    # ---- logging -------------------------------------------------------------------------

    def log(self, logs: dict[str, Any], start_time: float | None = None) -> None:
        """Record ``logs`` (with ``epoch`` and what ``on_pre_log`` adds) in ``state.log_history``
        and fire ``on_log``."""
        logs["epoch"] = self.state.epoch
        _plain_values(logs)
        logs.update(_plain_values(self.callback_handler.on_pre_log(logs)))
        self.state.log_history.append({**logs, "step": self.state.global_step})
        self.callback_handler.on_log(logs)

    # ---- HF conveniences ------------------------------------------------------------------

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Write the model (``model.safetensors``, ``config.json`` when it has a config) to
        ``output_dir`` (default ``args.output_dir``), on the main process. An override is also
        called into every checkpoint (``_internal_call=True``, on the main process), as in HF."""
        from hooktrain.integration import save_model

        if self.args.should_save:
            save_model(self.model, output_dir or self.args.output_dir)
        if not _internal_call:  # a checkpoint's call runs on the main process only
            distributed.barrier()

    save_model.writes_checkpoint_weights_itself = True  # type: ignore[attr-defined]

    def _make_autocast(self) -> Callable[[], Any]:
        dtype = torch.bfloat16 if self.args.bf16 else torch.float16 if self.args.fp16 else None
        if dtype is None:
            return contextlib.nullcontext
        device_type = self.device.type
        return lambda: torch.autocast(device_type, dtype=dtype)


def _plain_values(logs: dict[str, Any]) -> dict[str, Any]:
    """Tensors and numpy scalars in ``logs`` become Python numbers, in place (HF #10299)."""
    for key, value in logs.items():
        if isinstance(value, (torch.Tensor, np.generic)):
            logs[key] = value.item()
    return logs
