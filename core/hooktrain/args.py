"""``TrainingArguments``: Hugging Face's field names and defaults for everything the loop uses.

Importing this module does not import torch (``hooktrain train`` and ``from_toml`` read
arguments before anything heavy loads).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from hooktrain import fsdp
from hooktrain.errors import ConfigError
from hooktrain.hf_args import OPTIMIZER_PACKAGES, TORCH_OPTIMIZERS, HFArguments, check_hf_arguments
from hooktrain.preflight import check_argument_values

INTERVAL_STRATEGIES = ("no", "steps", "epoch")
SAVE_STRATEGIES = ("no", "steps", "epoch", "best")
SCHEDULER_TYPES = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
    "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
    "warmup_stable_decay",
)
PLUGIN_ERROR_MODES = ("warn", "raise")


@dataclass
class TrainingArguments(HFArguments):
    """Everything that configures a run. Field names and defaults follow HF's ``TrainingArguments``.

    Steps given as a float below 1 (``logging_steps=0.1``) are a fraction of the total training
    steps, as in HF. hooktrain's own fields are ``disable_plugins`` (entry-point plugin names to
    block before they are imported), ``plugin_errors`` (``"warn"``: a failing logging plugin
    is reported and switched off; ``"raise"``: any plugin error is fatal), ``plugin_timeout``
    (seconds: a non-blocking plugin stuck longer is switched off, a synchronous hook running
    longer is warned about; 0 turns both off) and
    ``plugin_settings`` (``{"mlflow": {"experiment_name": "x"}}``, the ``[plugins.*]`` tables of
    a config file).

    Every other field of transformers 5.24's ``TrainingArguments`` is accepted by keyword
    (:class:`hooktrain.hf_args.HFArguments`); ``docs/hf-training-arguments.md`` says what each
    does here.
    """

    output_dir: str | None = "trainer_output"
    """Where checkpoints are written (``None`` means ``"trainer_output"``, as in transformers 5)."""
    num_train_epochs: float = 3.0
    """Epochs to train; a fraction trains part of the last one. Ignored when ``max_steps`` > 0."""
    max_steps: int = -1
    """Optimizer steps to train; when positive it overrides ``num_train_epochs``."""
    per_device_train_batch_size: int = 8
    """Training batch size per process."""
    per_device_eval_batch_size: int = 8
    """Evaluation and prediction batch size per process."""
    gradient_accumulation_steps: int = 1
    """Micro-batches whose gradients add up to one optimizer step."""
    learning_rate: float = 5e-5
    """The optimizer's learning rate, which the schedule starts from after warmup."""
    weight_decay: float = 0.0
    """Weight decay for every parameter but biases and normalisation weights, as in HF."""
    adam_beta1: float = 0.9
    """Adam's beta1."""
    adam_beta2: float = 0.999
    """Adam's beta2."""
    adam_epsilon: float = 1e-8
    """Adam's epsilon."""
    max_grad_norm: float | None = 1.0
    """Gradients are clipped to this norm; ``None`` or 0 clips nothing (the norm is logged)."""
    optim: str = "adamw_torch_fused"
    """The optimizer by transformers' name: ``adamw_torch_fused``, ``adamw_torch``, ``sgd``, ..."""
    lr_scheduler_type: str = "linear"
    """The learning-rate schedule: ``linear``, ``cosine``, ... (transformers' names)."""
    lr_scheduler_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for the schedule (``{"num_cycles": 2}``)."""
    warmup_steps: float = 0
    """Steps of linear warmup; below 1, a fraction of the training steps."""
    warmup_ratio: float = 0.0
    """Warmup as a fraction of the training steps, used when ``warmup_steps`` is 0."""
    logging_strategy: str = "steps"
    """When to log: ``"steps"``, ``"epoch"`` or ``"no"``."""
    logging_steps: float = 500
    """Steps between logs; below 1, a fraction of the training steps."""
    logging_first_step: bool = False
    """Also log after the first step."""
    eval_strategy: str = "no"
    """When to evaluate: ``"no"``, ``"steps"`` or ``"epoch"``."""
    eval_steps: float | None = None
    """Steps between evaluations (``None``: ``logging_steps``); below 1, a fraction."""
    eval_delay: float = 0
    """Steps or epochs (as ``eval_strategy`` counts) before the first evaluation."""
    eval_on_start: bool = False
    """Evaluate once before the first training step."""
    save_strategy: str = "steps"
    """When to save a checkpoint: ``"steps"``, ``"epoch"``, ``"best"`` or ``"no"``."""
    save_steps: float = 500
    """Steps between checkpoints; below 1, a fraction of the training steps."""
    save_total_limit: int | None = None
    """Checkpoints to keep (``None``: all); the best and the newest are always kept."""
    load_best_model_at_end: bool = False
    """Load the best checkpoint's weights when training ends."""
    metric_for_best_model: str | None = None
    """The metric that ranks checkpoints (``"loss"`` when one is needed and unset)."""
    greater_is_better: bool | None = None
    """Whether a higher metric is better (``None``: not for names ending in ``loss``)."""
    restore_callback_states_from_checkpoint: bool = True
    """Restore callbacks' and plugins' state on resume."""
    ignore_data_skip: bool = False
    """On resume, start the interrupted epoch from its first batch, not where it was."""
    seed: int = 42
    """The random seed, set when the Trainer is built and again when training starts."""
    data_seed: int | None = None
    """The seed of the data order (``None``: ``seed``)."""
    report_to: str | list[str] | None = "all"
    """Entry-point plugins to load: ``"all"``, ``"none"``, a name or a list of names."""
    disable_tqdm: bool = False
    """No progress bar: ``PrinterCallback`` prints each log instead."""
    dataloader_num_workers: int = 0
    """DataLoader worker processes (0: load in the main process)."""
    dataloader_drop_last: bool = False
    """Drop the last incomplete batch of each epoch."""
    dataloader_pin_memory: bool = True
    """Pin batches in memory for faster copies to the GPU (CUDA only)."""
    remove_unused_columns: bool = True
    """Drop the keys of dict samples that the model's ``forward`` does not take."""
    label_names: list[str] | None = None
    """The keys of the labels in a batch (``None``: ``["labels"]``)."""
    run_name: str | None = None
    """The run's name for trackers (``None``: ``output_dir``)."""
    use_cpu: bool = False
    """Train on the CPU even when a GPU is available."""
    ddp_backend: str | None = None
    """The process group's backend under ``torchrun`` (``None``: NCCL on CUDA, else gloo)."""
    ddp_timeout: int = 1800
    """Seconds a process waits for the others before the run fails."""
    bf16: bool = False
    """Mixed precision: bfloat16 autocast."""
    fp16: bool = False
    """Mixed precision: float16 autocast with a gradient scaler."""
    disable_plugins: list[str] = field(default_factory=list)
    """Entry-point plugins to block before they are imported (names or a comma list)."""
    plugin_errors: str = "warn"
    """``"warn"``: a failing logging plugin is switched off; ``"raise"``: any is fatal."""
    plugin_timeout: float = 60.0
    """Seconds a hook may run before a warning (non-blocking: switched off); 0: no bound."""
    plugin_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Settings per plugin (``{"mlflow": {"experiment_name": "x"}}``), as ``[plugins.*]``."""
    plugin_report: bool = False
    """Print where the time went (loop phases, each plugin per hook) at the end of ``train()``."""
    plugin_report_threshold: float = 0.05
    """A plugin taking more than this share of ``train()``'s time is named in one warning."""
    plugin_report_min_seconds: float = 1.0
    """...and at least this many seconds: a short run's few milliseconds of logging are no news."""

    def __post_init__(self) -> None:
        # transformers 5 defaults output_dir to None, meaning "trainer_output"
        self.output_dir = os.fspath(self.output_dir) if self.output_dir is not None else (
            "trainer_output")
        check_hf_arguments(self)
        if isinstance(self.fsdp_config, os.PathLike):  # a path stays JSON-serialisable
            self.fsdp_config = os.fspath(self.fsdp_config)
        fsdp.plan_from(self)  # a bad fsdp or fsdp_config value fails here, not under torchrun
        _check_choice("logging_strategy", self.logging_strategy, INTERVAL_STRATEGIES)
        _check_choice("eval_strategy", self.eval_strategy, INTERVAL_STRATEGIES)
        _check_choice("save_strategy", self.save_strategy, SAVE_STRATEGIES)
        _check_choice("lr_scheduler_type", self.lr_scheduler_type, SCHEDULER_TYPES)
        _check_choice("optim", self.optim, TORCH_OPTIMIZERS + tuple(OPTIMIZER_PACKAGES))
        _check_choice("plugin_errors", self.plugin_errors, PLUGIN_ERROR_MODES)
        self.report_to = normalise_report_to(self.report_to)
        if isinstance(self.disable_plugins, str):
            self.disable_plugins = [n.strip() for n in self.disable_plugins.split(",") if n.strip()]
        self.disable_plugins = list(self.disable_plugins)
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size",
                     "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.eval_strategy == "steps" and self.eval_steps is None:
            self.eval_steps = self.logging_steps  # HF: evaluation follows the logging interval
        for kind in ("logging_steps", "eval_steps", "save_steps", "warmup_steps"):
            setattr(self, kind, _normalise_steps(kind, getattr(self, kind)))
        if self.logging_strategy == "steps" and self.logging_steps == 0:
            raise ConfigError("logging_steps must be non-zero with logging_strategy='steps'.")
        if self.save_strategy == "steps" and self.save_steps == 0:
            raise ConfigError("save_steps must be non-zero with save_strategy='steps'.")
        if self.eval_strategy == "steps" and self.eval_steps == 0:
            raise ConfigError("eval_steps must be non-zero with eval_strategy='steps'.")
        self._check_best_model()
        check_argument_values(self)
        if self.run_name is None:
            self.run_name = self.output_dir
        if not self.plugin_timeout >= 0:
            raise ConfigError(f"plugin_timeout must be >= 0 seconds (0: no bound), got "
                              f"{self.plugin_timeout}.")
        if not 0 <= self.plugin_report_threshold <= 1:
            raise ConfigError("plugin_report_threshold is a share of the run's time, between 0 "
                              f"and 1 (0.05: 5 %), got {self.plugin_report_threshold}.")
        if not self.plugin_report_min_seconds >= 0:
            raise ConfigError("plugin_report_min_seconds must be >= 0 (0: warn on the share "
                              f"alone), got {self.plugin_report_min_seconds}.")
        if self.fp16 and self.bf16:
            raise ConfigError("fp16 and bf16 are both set: choose one.")

    def _check_best_model(self) -> None:
        if self.lr_scheduler_type == "reduce_lr_on_plateau" and self.eval_strategy == "no":
            raise ConfigError("lr_scheduler_type='reduce_lr_on_plateau' steps on evaluation "
                              "results: set eval_strategy to 'steps' or 'epoch'.")
        if (self.load_best_model_at_end or self.save_strategy == "best"
                or self.lr_scheduler_type == "reduce_lr_on_plateau") and (
            self.metric_for_best_model is None
        ):
            if self.save_strategy == "best":
                raise ConfigError(
                    "save_strategy='best' needs metric_for_best_model (for example 'loss' or "
                    "'accuracy') to know which checkpoints are best."
                )
            self.metric_for_best_model = "loss"
        if self.load_best_model_at_end and self.save_strategy != "best":
            if self.eval_strategy != self.save_strategy:
                raise ConfigError(
                    "load_best_model_at_end needs the save and eval strategies to match, got "
                    f"save_strategy={self.save_strategy!r} and eval_strategy="
                    f"{self.eval_strategy!r}. Set both to the same value or use "
                    "save_strategy='best'."
                )
            if self.eval_strategy == "steps":
                if self.save_steps < 1 and self.eval_steps < 1:  # ratios: HF compares in 1e-6
                    scale = 1_000_000
                    remainder = round(self.save_steps * scale) % round(self.eval_steps * scale)
                else:
                    remainder = self.save_steps % self.eval_steps
                if remainder != 0:
                    raise ConfigError(
                        "load_best_model_at_end needs save_steps to be a multiple of eval_steps, "
                        f"got save_steps={self.save_steps} and eval_steps={self.eval_steps}."
                    )
        if self.greater_is_better is None and self.metric_for_best_model is not None:
            self.greater_is_better = not self.metric_for_best_model.endswith("loss")

    # ---- HF's derived values -------------------------------------------------------------

    @property
    def world_size(self) -> int:
        return int(os.environ.get("WORLD_SIZE", "1"))

    @property
    def process_index(self) -> int:
        return int(os.environ.get("RANK", "0"))

    @property
    def local_process_index(self) -> int:
        return int(os.environ.get("LOCAL_RANK", "0"))

    @property
    def should_log(self) -> bool:
        return self.process_index == 0

    @property
    def should_save(self) -> bool:
        return self.process_index == 0

    @property
    def train_batch_size(self) -> int:
        return self.per_device_train_batch_size

    @property
    def eval_batch_size(self) -> int:
        return self.per_device_eval_batch_size

    @property
    def device(self) -> Any:
        import torch

        if not self.use_cpu and torch.cuda.is_available():
            return torch.device("cuda", self.local_process_index)
        return torch.device("cpu")

    def get_warmup_steps(self, num_training_steps: int) -> int:
        """Warmup steps: ``warmup_steps`` (a fraction when below 1) or else ``warmup_ratio``."""
        if self.warmup_steps >= 1:
            return int(self.warmup_steps)
        ratio = self.warmup_steps if self.warmup_steps > 0 else self.warmup_ratio
        return math.ceil(num_training_steps * ratio)

    # ---- serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Every field: the core loop's first, then the rest of HF's (trackers list them so)."""
        names = [f.name for f in dataclasses.fields(self)]
        extra = set(HFArguments.__dataclass_fields__)
        ordered = [n for n in names if n not in extra] + [n for n in names if n in extra]
        return {name: getattr(self, name) for name in ordered}

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_sanitized_dict(self) -> dict[str, Any]:
        """Values a tracking backend accepts as parameters (lists and dicts as strings)."""
        valid = (bool, int, float, str)
        return {k: v if isinstance(v, valid) else str(v) for k, v in self.to_dict().items()}

    @classmethod
    def from_toml(
        cls, path: str | os.PathLike[str], overrides: list[str] | None = None, **arguments: Any
    ) -> TrainingArguments:
        """Arguments from a config file's ``[training]`` and ``[plugins.*]`` tables.

        ``overrides`` are command-line flags (``["--training.learning_rate", "1e-3"]``) and win
        over the file; keyword ``arguments`` are Python defaults the file overrides.
        """
        from hooktrain.config import load_config

        return load_config(path, overrides or [], cls, **arguments).args

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def unknown_field_message(cls, key: str) -> str:
        """The error for a misspelled argument: the nearest field, then every field."""
        names = cls.field_names()
        close = difflib.get_close_matches(key, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return (
            f"TrainingArguments got an unknown argument {key!r}.{hint} "
            f"Valid arguments: {', '.join(names)}."
        )


def _check_unknown_arguments(init):  # type: ignore[no-untyped-def]
    """Wrap the dataclass ``__init__`` so a misspelled argument names the nearest field."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        names = TrainingArguments.field_names()
        unknown = [key for key in kwargs if key not in names]
        if unknown:
            raise ConfigError(TrainingArguments.unknown_field_message(unknown[0]))
        init(self, *args, **kwargs)

    __init__.__doc__ = init.__doc__
    __init__.__signature__ = inspect.signature(init)  # type: ignore[attr-defined]
    return __init__


TrainingArguments.__init__ = _check_unknown_arguments(TrainingArguments.__init__)  # type: ignore[method-assign]


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(
            f"Invalid value {value!r} for argument {name}. Accepted values are: "
            f"{', '.join(repr(c) for c in choices)}."
        )


def _normalise_steps(name: str, value: float | None) -> float | None:
    """Values >= 1 must be whole numbers and become ints; values in (0, 1) are ratios."""
    if value is None:
        return None
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {value}.")
    if value >= 1:
        if value != int(value):
            raise ConfigError(f"{name} must be a whole number when >= 1, got {value}.")
        return int(value)
    return value


def normalise_report_to(value: str | list[str] | None) -> str | list[str]:
    """``report_to`` as ``"all"``, ``"none"`` or a list of names (a comma-separated string is
    split)."""
    if value is None:
        return "none"
    if isinstance(value, str):
        if value in ("all", "none"):
            return value
        return [name.strip() for name in value.split(",") if name.strip()]
    names = list(value)
    if names in (["all"], ["none"]):
        return names[0]
    return names
