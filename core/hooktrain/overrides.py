"""HF's override points and conveniences of ``Trainer`` that are not the loop itself.

HF users subclass ``Trainer`` and override ``create_optimizer``, ``create_scheduler``,
``get_decay_parameter_names``, ``num_examples``, ``get_test_dataloader``...; the loop calls these
methods (never the module functions behind them), so an override is what runs. The metric
helpers (``log_metrics``, ``save_metrics``, ``metrics_format``) are HF's, for the end of scripts.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hooktrain import distributed, optim, schedules
from hooktrain.errors import ConfigError

if TYPE_CHECKING:
    from hooktrain.trainer import Trainer

logger = logging.getLogger("hooktrain")


class OverridePointsMixin:
    """Optimizer and schedule creation, HF's process and metric helpers, model_init."""

    def get_decay_parameter_names(self: Trainer, model: torch.nn.Module) -> list[str]:
        """Parameters that get weight decay: all but biases and normalisation weights (HF)."""
        return sorted(optim.decay_parameter_names(model))

    def create_optimizer(self: Trainer) -> torch.optim.Optimizer:
        """The optimizer for ``args.optim``, unless one was passed in ``optimizers``."""
        if self.optimizer is None:
            decay = self.get_decay_parameter_names(self.model) if self.args.weight_decay else None
            self.optimizer = optim.create_optimizer(self.model, self.args, decay,
                                                    self.optimizer_cls_and_kwargs)
        return self.optimizer

    def create_scheduler(self: Trainer, num_training_steps: int,
                         optimizer: torch.optim.Optimizer | None = None) -> Any:
        """The schedule for ``args.lr_scheduler_type``, unless one was passed in ``optimizers``.

        One the Trainer made is made anew by every ``train()`` (as HF does); one passed in is the
        user's to keep.
        """
        if self.lr_scheduler is None:
            self.lr_scheduler = schedules.create_scheduler(
                self.optimizer if optimizer is None else optimizer, self.args, num_training_steps
            )
            self._created_scheduler = True
        return self.lr_scheduler

    def create_optimizer_and_scheduler(self: Trainer, num_training_steps: int) -> None:
        """HF's entry point: ``create_optimizer()`` then ``create_scheduler(...)``."""
        self.create_optimizer()
        self.create_scheduler(num_training_steps=num_training_steps, optimizer=self.optimizer)

    def num_examples(self: Trainer, dataloader: torch.utils.data.DataLoader) -> int:
        """How many samples ``dataloader`` holds (its data set's length, as HF)."""
        return len(dataloader.dataset)

    def get_num_trainable_parameters(self: Trainer) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def get_learning_rates(self: Trainer) -> list[float]:
        if self.lr_scheduler is None:
            raise ConfigError("get_learning_rates() needs the optimizer and scheduler: call it "
                              "during or after train().")
        return [group["lr"] for group in self.optimizer.param_groups]

    def get_optimizer_group(self: Trainer, param: Any = None) -> Any:
        """The optimizer's param group holding ``param``, or all groups (HF)."""
        if self.optimizer is None:
            raise ConfigError("get_optimizer_group() needs the optimizer: call create_optimizer() "
                              "or train() first.")
        if param is None:
            return self.optimizer.param_groups
        for group in self.optimizer.param_groups:
            if any(p is param for p in group["params"]):
                return group
        return None

    def get_total_train_batch_size(self: Trainer, args: Any = None) -> int:
        """Samples per optimizer step over all processes (HF)."""
        args = args or self.args
        return (args.per_device_train_batch_size * args.gradient_accumulation_steps
                * args.world_size)

    def floating_point_ops(self: Trainer, inputs: Any) -> int:
        """The model's own estimate (transformers' ``floating_point_ops``), else 0, as HF."""
        counter = getattr(self.model, "floating_point_ops", None)
        return counter(inputs) if callable(counter) else 0

    def compute_loss_context_manager(self: Trainer) -> Any:
        """The context ``compute_loss`` runs in: autocast under ``bf16``/``fp16`` (HF)."""
        return self._autocast()

    def autocast_smart_context_manager(self: Trainer, cache_enabled: bool | None = True) -> Any:
        return self._autocast()

    def call_model_init(self: Trainer, trial: Any = None) -> torch.nn.Module:
        """A fresh model from ``model_init()`` (or ``model_init(trial)``), as HF calls it."""
        arguments = len(inspect.signature(self.model_init).parameters)
        model = self.model_init() if arguments == 0 else self.model_init(trial)
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"model_init returned a {type(model).__name__}; it must return a "
                              "torch.nn.Module.")
        return model

    def is_world_process_zero(self: Trainer) -> bool:
        return self.args.process_index == 0

    def is_local_process_zero(self: Trainer) -> bool:
        return self.args.local_process_index == 0

    def save_state(self: Trainer) -> None:
        """Write ``trainer_state.json`` into ``args.output_dir`` (HF's ``save_state``)."""
        if self.args.should_save:
            path = Path(self.args.output_dir)
            path.mkdir(parents=True, exist_ok=True)
            self.state.save_to_json(path / "trainer_state.json")

    # ---- metrics at the end of a script (HF's trainer_pt_utils) ---------------------------

    def metrics_format(self: Trainer, metrics: dict[str, float]) -> dict[str, Any]:
        """``metrics`` for printing: runtimes as ``h:mm:ss.ss``, ``total_flos`` in GF."""
        formatted: dict[str, Any] = dict(metrics)
        for key, value in formatted.items():
            if "_mem_" in key:
                formatted[key] = f"{value >> 20}MB"
            elif "_runtime" in key:
                formatted[key] = _runtime(value)
            elif key == "total_flos":
                formatted[key] = f"{int(value) >> 30}GF"
            elif isinstance(value, float):
                formatted[key] = round(value, 4)
        return formatted

    def log_metrics(self: Trainer, split: str, metrics: dict[str, float]) -> None:
        """Print ``metrics`` as HF does (``***** train metrics *****``), on the main process."""
        if not self.is_world_process_zero():
            return
        print(f"***** {split} metrics *****")
        formatted = self.metrics_format(metrics)
        width = max((len(key) for key in formatted), default=0)
        for key in sorted(formatted):
            print(f"  {key: <{width}} = {formatted[key]:>9}")

    def save_metrics(self: Trainer, split: str, metrics: dict[str, float],
                     combined: bool = True) -> None:
        """Write ``{split}_results.json`` (and merge into ``all_results.json`` when combined)."""
        if not self.is_world_process_zero():
            return
        directory = Path(self.args.output_dir)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{split}_results.json").write_text(
            json.dumps(metrics, indent=4, sort_keys=True))
        if combined:
            path = directory / "all_results.json"
            everything = json.loads(path.read_text()) if path.exists() else {}
            everything.update(metrics)
            path.write_text(json.dumps(everything, indent=4, sort_keys=True))

    # ---- what some arguments do before training -------------------------------------------

    def _apply_process_arguments(self: Trainer) -> None:
        """``log_level``, ``tf32`` and ``full_determinism``: process-wide, set at construction."""
        args = self.args
        level = args.log_level if args.process_index == 0 else args.log_level_replica
        if level != "passive":
            logger.setLevel(level.upper())
        if args.tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32 = args.tf32
            torch.backends.cudnn.allow_tf32 = args.tf32
        if args.full_determinism:
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False

    def _wrap_model_for_training(self: Trainer) -> torch.nn.Module:
        """Activation checkpointing, DDP under torchrun, then ``torch.compile`` (as accelerate
        orders them); the result is ``model_wrapped``, the module the loop calls."""
        args = self.args
        if args.activation_checkpointing or args.gradient_checkpointing:
            self._enable_activation_checkpointing()
        wrapped = distributed.wrap(self.model, self.device, args)
        if args.torch_compile:
            options = {k: v for k, v in (("backend", args.torch_compile_backend),
                                         ("mode", args.torch_compile_mode)) if v is not None}
            wrapped = torch.compile(wrapped, **options)
        return wrapped

    def _enable_activation_checkpointing(self: Trainer) -> None:
        """transformers 5's ``activation_checkpointing`` (``gradient_checkpointing`` is its 4.x
        name): the model's ``activation_checkpointing_enable`` or, older, its
        ``gradient_checkpointing_enable``, with the arguments' kwargs (None: the model's own)."""
        args = self.args
        kwargs = args.activation_checkpointing_kwargs or args.gradient_checkpointing_kwargs
        if isinstance(kwargs, str):
            kwargs = json.loads(kwargs)
        kwargs = dict(kwargs or {})
        for method, keyword in (("activation_checkpointing_enable",
                                 "activation_checkpointing_kwargs"),
                                ("gradient_checkpointing_enable", "gradient_checkpointing_kwargs")):
            enable = getattr(self.model, method, None)
            if enable is not None:
                enable(**{keyword: kwargs or None})
                return
        raise ConfigError(
            f"activation (gradient) checkpointing is on but {type(self.model).__name__} has no "
            "activation_checkpointing_enable() or gradient_checkpointing_enable() (transformers' "
            "models do). Wrap its blocks in torch.utils.checkpoint yourself, or turn it off."
        )


    def _activate_neftune(self: Trainer) -> Any:
        """HF's NEFTune: uniform noise on the input embeddings while training, scaled by
        ``neftune_noise_alpha / sqrt(sequence length * hidden size)``; returns the hook handle."""
        get_embeddings = getattr(self.model, "get_input_embeddings", None)
        if get_embeddings is None:
            raise ConfigError(
                f"neftune_noise_alpha is set but {type(self.model).__name__} has no "
                "get_input_embeddings() (transformers' models do); unset neftune_noise_alpha."
            )
        embeddings = get_embeddings()
        embeddings.neftune_noise_alpha = self.args.neftune_noise_alpha
        return embeddings.register_forward_hook(_neftune_noise)


def _neftune_noise(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
    if module.training:
        dims = torch.tensor(output.size(1) * output.size(2))
        magnitude = module.neftune_noise_alpha / torch.sqrt(dims)
        output = output + torch.zeros_like(output).uniform_(-magnitude, magnitude)
    return output


def _runtime(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:05.2f}" if not math.isnan(seconds) else "nan"
