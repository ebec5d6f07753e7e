"""``Trainer``: the HF-compatible facade: construction, plugins, and every HF override point.

It holds what HF's Trainer holds (arguments, model, data, optimizer and schedule, state and
control) and the plugins with their dispatcher. The work is done by collaborators it owns,
which call its methods back so that a subclass's override is what runs (docs/architecture.md):
``loop`` (:class:`~hooktrain.loop.TrainingLoop`, ``train()`` and its
:class:`~hooktrain.progress.TrainingProgress`), ``evaluator`` (:class:`~hooktrain.evaluation.
Evaluator`), ``checkpointer`` (:class:`~hooktrain.checkpoint.Checkpointer`) and ``dataloaders``
(:class:`~hooktrain.loaders.DataLoaderBuilder`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from hooktrain import distributed, fsdp, optim, schedules
from hooktrain import metrics as metrics_module
from hooktrain.args import TrainingArguments
from hooktrain.callbacks import DefaultFlowCallback, PrinterCallback, ProgressCallback
from hooktrain.checkpoint import Checkpointer
from hooktrain.data import default_collate
from hooktrain.errors import ConfigError
from hooktrain.evaluation import Evaluator
from hooktrain.funnel import ExceptionFunnel
from hooktrain.item_count import accepts_loss_kwargs, loss_shifts_labels
from hooktrain.loaders import DataLoaderBuilder
from hooktrain.loop import TrainingLoop
from hooktrain.loss import compute_loss
from hooktrain.outputs import EvalLoopOutput, PredictionOutput, TrainOutput
from hooktrain.plugin_host import HookDispatcher, HooktrainPluginManager, PluginFault, TimingRow
from hooktrain.preflight import check_trainer_setup
from hooktrain.preparation import (
    activate_neftune,
    apply_process_arguments,
    autocast_factory,
    call_model_init,
    set_seed,
)
from hooktrain.trainer_state import TrainerControl, TrainerState

__all__ = ["Trainer", "set_seed"]

logger = logging.getLogger("hooktrain")


class Trainer:
    """Trains, evaluates and predicts with a PyTorch model, HF-compatible.

    Arguments are HF's. ``model`` is called as HF calls it: with a batch dict as keyword
    arguments (or a tuple batch positionally), returning an output with ``.loss``, a dict with
    ``"loss"`` or a tuple with the loss first; or any module together with
    ``compute_loss_func(outputs, labels, num_items_in_batch=None)``, in which case the labels
    (``label_names``, or the last element of a tuple batch) are taken out of the batch first.
    ``num_items_in_batch`` is HF's (>= 4.46), counted and passed as :mod:`hooktrain.item_count`
    describes.
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
        apply_process_arguments(self.args)
        self.device = self.args.device
        self.is_distributed = distributed.setup(self.args, self.device)
        self.model = model.to(self.device)
        self.model_wrapped = self.model  # DistributedDataParallel around it under torchrun
        self.data_collator = data_collator or default_collate
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset
        self.processing_class = processing_class
        self.compute_loss_func, self.compute_metrics = compute_loss_func, compute_metrics
        self.preprocess_logits_for_metrics = preprocess_logits_for_metrics
        self.optimizer, self.lr_scheduler = optimizers
        self.optimizer_cls_and_kwargs = optimizer_cls_and_kwargs
        if model_init is not None and (self.optimizer is not None or self.lr_scheduler is not None):
            raise ConfigError("model_init cannot be combined with optimizers=(...): each train() "
                              "makes a new model. Override create_optimizer_and_scheduler instead.")
        self.label_names = self.args.label_names or ["labels"]
        self.is_in_train = self._created_scheduler = False
        self.current_gradient_accumulation_steps = 1
        self.model_accepts_loss_kwargs = accepts_loss_kwargs(self.model)
        #: whether the model's own loss shifts labels (a causal LM): HF counts labels[..., 1:]
        self.model_loss_shifts_labels = loss_shifts_labels(self.model)
        self._state = TrainerState()
        self._autocast = autocast_factory(self.args, self.device)
        # The collaborators: each calls back into this object's (overridable) methods.
        self.loop = TrainingLoop(self)
        self.evaluator, self.checkpointer = Evaluator(self), Checkpointer(self)
        self.dataloaders = DataLoaderBuilder(self)

        self.plugin_manager = HooktrainPluginManager()
        self.callback_handler = HookDispatcher(self.plugin_manager, self.args.plugin_errors,
                                               self.args.plugin_timeout)
        self._exception_funnel = ExceptionFunnel(self.callback_handler)
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

    @property
    def plugin_timings(self) -> list[TimingRow]:
        """Where ``train()``'s time went: the loop's phases, each plugin in each hook."""
        return self.callback_handler.timings.table()

    def add_callback(self, callback: Any) -> None:
        """Add a plugin: a class (instantiated with no arguments) or an instance (HF semantics)."""
        self.callback_handler.add_callback(callback)

    def pop_callback(self, callback: Any) -> Any | None:
        """Remove and return the first plugin matching a class (isinstance) or an instance."""
        return self.callback_handler.pop_callback(callback)

    def remove_callback(self, callback: Any) -> None:
        """Remove a plugin; an instance that is not registered raises ``ValueError`` (as HF)."""
        self.callback_handler.remove_callback(callback)

    # ---- training ------------------------------------------------------------------------

    def train(self, resume_from_checkpoint: str | bool | None = None) -> TrainOutput:
        """Train; ``resume_from_checkpoint=True`` continues from the newest complete checkpoint."""
        with distributed.terminate_as_exception(), self._exception_funnel():
            self.is_in_train, neftune = True, None
            try:
                if self.args.neftune_noise_alpha is not None:
                    neftune = self._activate_neftune()
                if self._created_scheduler:  # made anew for every train(), as HF; one passed in
                    self.lr_scheduler = None  # is kept
                    self._created_scheduler = False
                output = self.loop.run(resume_from_checkpoint)
            finally:
                self.is_in_train = False
                if neftune is not None:  # the noise is for training only, as in HF
                    neftune.remove()
                # Drop the DistributedDataParallel wrapper train() made (the next one makes
                # anew): it holds the process group, and while anything does, destroying the
                # group at exit cannot join gloo's threads (distributed.leave_process_group).
                self.model_wrapped = self.model
        self.callback_handler.timings.finish(self.state, self.args, self.is_world_process_zero())
        return output

    def training_step(self, model: torch.nn.Module, inputs: Any,
                      num_items_in_batch: torch.Tensor | None = None) -> torch.Tensor:
        """Forward and backward for one micro-batch; returns its detached, scaled loss (HF's)."""
        return self.loop.training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model: torch.nn.Module, inputs: Any, return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """The batch's loss (and outputs): from the model, or from ``compute_loss_func``."""
        return compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    def compute_loss_context_manager(self) -> Any:
        """The context ``compute_loss`` runs in: autocast under ``bf16``/``fp16`` (HF)."""
        return self._autocast()

    def autocast_smart_context_manager(self, cache_enabled: bool | None = True) -> Any:
        return self._autocast()

    def _maybe_log_save_evaluate(self) -> None:
        """After each optimizer step and epoch: log, evaluate and save as ``control`` asks."""
        self.loop.maybe_log_save_evaluate()

    def _save_checkpoint(self) -> Path:
        """Write ``checkpoint-<global_step>`` (docs/checkpoints.md); returns its directory."""
        return self.checkpointer.save(self.loop.progress)

    # ---- optimizer and schedule ------------------------------------------------------------

    def get_decay_parameter_names(self, model: torch.nn.Module) -> list[str]:
        """Parameters that get weight decay: all but biases and normalisation weights (HF)."""
        return sorted(optim.decay_parameter_names(model))

    def create_optimizer(self) -> torch.optim.Optimizer:
        """The optimizer for ``args.optim``, unless one was passed in ``optimizers``."""
        if self.optimizer is None:
            decay = self.get_decay_parameter_names(self.model) if self.args.weight_decay else None
            self.optimizer = optim.create_optimizer(self.model, self.args, decay,
                                                    self.optimizer_cls_and_kwargs)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int,
                         optimizer: torch.optim.Optimizer | None = None) -> Any:
        """The schedule for ``args.lr_scheduler_type``, unless one was passed in ``optimizers``
        (``train()`` makes one the Trainer made anew, as HF)."""
        if self.lr_scheduler is None:
            self.lr_scheduler = schedules.create_scheduler(
                self.optimizer if optimizer is None else optimizer, self.args, num_training_steps
            )
            self._created_scheduler = True
        return self.lr_scheduler

    def create_optimizer_and_scheduler(self, num_training_steps: int) -> None:
        """HF's entry point: ``create_optimizer()`` then ``create_scheduler(...)``."""
        self.create_optimizer()
        self.create_scheduler(num_training_steps=num_training_steps, optimizer=self.optimizer)

    def get_learning_rates(self) -> list[float]:
        return optim.learning_rates(self.optimizer, self.lr_scheduler)

    def get_optimizer_group(self, param: Any = None) -> Any:
        """The optimizer's param group holding ``param``, or all groups (HF)."""
        return optim.param_group(self.optimizer, param)

    def num_examples(self, dataloader: torch.utils.data.DataLoader) -> int:
        """How many samples ``dataloader`` holds (its data set's length, as HF)."""
        return len(dataloader.dataset)

    def get_num_trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def get_total_train_batch_size(self, args: Any = None) -> int:
        """Samples per optimizer step over all processes (HF)."""
        args = args or self.args
        return (args.per_device_train_batch_size * args.gradient_accumulation_steps
                * args.world_size)

    def floating_point_ops(self, inputs: Any) -> int:
        """The model's own estimate (transformers' ``floating_point_ops``), else 0, as HF."""
        counter = getattr(self.model, "floating_point_ops", None)
        return counter(inputs) if callable(counter) else 0

    # ---- data ------------------------------------------------------------------------------

    def get_train_dataloader(self) -> torch.utils.data.DataLoader:
        """The loader ``train()`` runs over (HF's override point)."""
        return self.dataloaders.train()

    def get_eval_dataloader(self, eval_dataset: Any = None) -> torch.utils.data.DataLoader:
        """The loader over ``eval_dataset`` (default: the Trainer's; a name picks one of a dict)."""
        return self.dataloaders.evaluation(eval_dataset)

    def get_test_dataloader(self, test_dataset: Any) -> torch.utils.data.DataLoader:
        """The loader ``predict`` runs over (HF's override point)."""
        return self.dataloaders.ordered(test_dataset)

    # ---- evaluation and prediction -----------------------------------------------------------

    def evaluate(self, eval_dataset: Any = None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:
        """Evaluate on ``eval_dataset`` (or each of a dict of them, metric prefix
        ``{metric_key_prefix}_{name}``); returns the metrics. Fires ``on_prediction_step`` per
        batch, then ``on_log`` and ``on_evaluate`` once per data set."""
        with self._exception_funnel():
            return self.evaluator.evaluate(eval_dataset, ignore_keys, metric_key_prefix)

    def predict(self, test_dataset: Any, ignore_keys: list[str] | None = None,
                metric_key_prefix: str = "test") -> PredictionOutput:
        """Predictions, label ids (or ``None``) and metrics on ``test_dataset``. Fires
        ``on_prediction_step`` per batch and ``on_predict``; it does not log."""
        with self._exception_funnel():
            return self.evaluator.predict(test_dataset, ignore_keys, metric_key_prefix)

    def evaluation_loop(self, dataloader: Any, description: str,
                        prediction_loss_only: bool | None = None,
                        ignore_keys: list[str] | None = None,
                        metric_key_prefix: str = "eval") -> EvalLoopOutput:
        """Run the model over ``dataloader``; HF's metric rules (``{prefix}_loss`` first)."""
        return self.evaluator.evaluation_loop(dataloader, prediction_loss_only, ignore_keys,
                                              metric_key_prefix)

    def prediction_step(self, model: torch.nn.Module, inputs: Any, prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None,
                        ) -> tuple[torch.Tensor | None, Any, Any]:
        """One evaluation batch: ``(loss, logits, labels)``, each possibly ``None``; output
        keys in the config's ``keys_to_ignore_at_inference`` are left out (HF)."""
        return self.evaluator.prediction_step(model, inputs, prediction_loss_only, ignore_keys)

    # ---- logging, saving and HF's script helpers -------------------------------------------

    def log(self, logs: dict[str, Any], start_time: float | None = None) -> None:
        """Record ``logs`` (with ``epoch`` and what ``on_pre_log`` adds) in ``state.log_history``
        and fire ``on_log``."""
        logs["epoch"] = self.state.epoch
        metrics_module.plain_values(logs)
        logs.update(metrics_module.plain_values(self.callback_handler.on_pre_log(logs)))
        self.state.log_history.append({**logs, "step": self.state.global_step})
        self.callback_handler.on_log(logs)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Write the model (``model.safetensors``, ``config.json`` when it has a config) to
        ``output_dir`` (default ``args.output_dir``), on the main process; under FSDP every
        process gathers the weights first. An override is also called into every checkpoint
        (``_internal_call=True``, on the main process), as in HF."""
        from hooktrain.integration import save_model
        weights = fsdp.full_state_dict(self.model) if fsdp.is_sharded(self.model) else None
        if self.args.should_save:
            save_model(self.model, output_dir or self.args.output_dir, weights=weights)
        if not _internal_call:  # a checkpoint's call runs on the main process only
            distributed.barrier()

    save_model.writes_checkpoint_weights_itself = True  # type: ignore[attr-defined]

    def save_state(self) -> None:
        """Write ``trainer_state.json`` into ``args.output_dir`` (HF's ``save_state``)."""
        if self.args.should_save:
            path = Path(self.args.output_dir)
            path.mkdir(parents=True, exist_ok=True)
            self.state.save_to_json(path / "trainer_state.json")

    def metrics_format(self, metrics: dict[str, float]) -> dict[str, Any]:
        """``metrics`` for printing: runtimes as ``h:mm:ss.ss``, ``total_flos`` in GF."""
        return metrics_module.metrics_format(metrics)

    def log_metrics(self, split: str, metrics: dict[str, float]) -> None:
        """Print ``metrics`` as HF does (``***** train metrics *****``), on the main process."""
        if self.is_world_process_zero():
            metrics_module.print_metrics(split, self.metrics_format(metrics))

    def save_metrics(self, split: str, metrics: dict[str, float], combined: bool = True) -> None:
        """Write ``{split}_results.json`` (and merge into ``all_results.json`` when combined)."""
        if self.is_world_process_zero():
            metrics_module.save_metrics(self.args.output_dir, split, metrics, combined)

    # ---- the model and the processes ---------------------------------------------------------

    def call_model_init(self, trial: Any = None) -> torch.nn.Module:
        """A fresh model from ``model_init()`` (or ``model_init(trial)``), as HF calls it."""
        return call_model_init(self.model_init, trial)

    def _activate_neftune(self) -> Any:
        """HF's NEFTune on the model's input embeddings; returns the hook handle."""
        return activate_neftune(self.model, self.args.neftune_noise_alpha)

    def is_world_process_zero(self) -> bool:
        return self.args.process_index == 0

    def is_local_process_zero(self) -> bool:
        return self.args.local_process_index == 0

