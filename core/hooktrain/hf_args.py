"""The rest of transformers 5.24's ``TrainingArguments``, so HF scripts construct them unchanged.

:class:`HFArguments` is the keyword-only base of :class:`~hooktrain.TrainingArguments`: every
field HF has that the core loop's own list does not. :data:`FIELD_STATUS` says what each one does
here, and :func:`check_hf_arguments` turns a value hooktrain cannot honour into one error that
names the field and what to do instead. ``docs/hf-training-arguments.md`` is generated from both
(``python -m hooktrain.hf_args``), and a test keeps it in step.

Four kinds of field:

* ``implemented``: it changes hooktrain's run as it changes HF's;
* ``no effect``: it configures machinery hooktrain does not have (accelerate, DeepSpeed, the Hub)
  or names something a script reads itself (``do_train``); any value is accepted;
* ``error when set``: a feature hooktrain lacks; the default is accepted, another value is an
  error naming the feature;
* ``transformers 4.x``: gone from transformers 5 but common in older scripts; accepted with a
  one-time deprecation warning.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from hooktrain.errors import ConfigError

IMPLEMENTED, NO_EFFECT, UNSUPPORTED, LEGACY = (
    "implemented", "no effect", "error when set", "transformers 4.x"
)


@dataclass(kw_only=True)
class HFArguments:
    """HF's remaining fields, keyword-only so ``TrainingArguments("out")`` still names
    output_dir."""

    # implemented
    label_smoothing_factor: float = 0.0
    gradient_checkpointing: bool | None = None
    gradient_checkpointing_kwargs: dict[str, Any] | str | None = None
    activation_checkpointing: bool | None = None
    activation_checkpointing_kwargs: dict[str, Any] | str | None = None
    torch_compile: bool = False
    torch_compile_backend: str | None = None
    torch_compile_mode: str | None = None
    logging_nan_inf_filter: bool = True
    neftune_noise_alpha: float | None = None
    log_level: str = "passive"
    log_level_replica: str = "warning"
    log_on_each_node: bool = True
    prediction_loss_only: bool = False
    tf32: bool | None = None
    full_determinism: bool = False
    train_sampling_strategy: str = "random"
    optim_args: str | None = None
    ddp_find_unused_parameters: bool | None = None
    ddp_bucket_cap_mb: int | None = None
    ddp_broadcast_buffers: bool | None = None
    ddp_static_graph: bool | None = None
    dataloader_persistent_workers: bool = False
    dataloader_prefetch_factor: int | None = None
    dataloader_multiprocessing_context: str | None = None
    # accepted, no effect
    do_train: bool = False
    do_eval: bool = False
    do_predict: bool = False
    resume_from_checkpoint: str | None = None
    local_rank: int = -1
    average_tokens_across_devices: bool = True
    eval_accumulation_steps: int | None = None
    eval_use_gather_object: bool = False
    eval_do_concat_batches: bool = True
    skip_memory_metrics: bool = True
    save_on_each_node: bool = False
    use_cache: bool = False
    torch_empty_cache_steps: int | None = None
    dataloader_in_order: bool = True
    length_column_name: str = "length"
    accelerator_config: dict[str, Any] | str | None = None
    parallelism_config: Any = None
    liger_kernel_config: dict[str, bool] | None = None
    project: str = "huggingface"
    trackio_space_id: str | None = None
    trackio_bucket_id: str | None = None
    trackio_static_space_id: Any = None
    hub_token: str | None = None
    hub_private_repo: bool | None = None
    hub_model_id: str | None = None
    hub_strategy: str = "every_save"
    hub_always_push: bool = False
    hub_revision: str | None = None
    # error when set to anything but the default
    push_to_hub: bool = False
    deepspeed: dict[str, Any] | str | None = None
    fsdp: str | list[str] | bool | None = None
    fsdp_config: dict[str, Any] | str | None = None
    use_liger_kernel: bool = False
    include_for_metrics: list[str] = field(default_factory=list)
    batch_eval_metrics: bool = False
    include_num_input_tokens_seen: str | bool = "no"
    save_only_model: bool = False
    enable_jit_checkpoint: bool = False
    auto_find_batch_size: bool = False
    optim_target_modules: str | list[str] | None = None
    bf16_full_eval: bool = False
    fp16_full_eval: bool = False
    debug: str | list[str] = ""
    # transformers 4.x
    overwrite_output_dir: bool | None = None
    logging_dir: str | None = None
    group_by_length: bool | None = None
    jit_mode_eval: bool | None = None
    evaluation_strategy: str | None = None
    no_cuda: bool | None = None


# field -> (status, what it does here, or why not)
FIELD_STATUS: dict[str, tuple[str, str]] = {
    "label_smoothing_factor": (IMPLEMENTED, "HF's LabelSmoother on the logits; causal LMs shift "
                               "labels as in HF."),
    "gradient_checkpointing": (IMPLEMENTED, "transformers' older name of "
                               "activation_checkpointing; either turns it on."),
    "gradient_checkpointing_kwargs": (IMPLEMENTED, "older name of "
                                      "activation_checkpointing_kwargs."),
    "torch_compile": (IMPLEMENTED, "the model is compiled with torch.compile before training."),
    "torch_compile_backend": (IMPLEMENTED, "torch.compile's backend (setting it turns "
                              "torch_compile on, as in HF)."),
    "torch_compile_mode": (IMPLEMENTED, "torch.compile's mode (turns torch_compile on)."),
    "logging_nan_inf_filter": (IMPLEMENTED, "a NaN or infinite step loss is replaced by the mean "
                               "of the logged steps' losses, as in HF."),
    "log_level": (IMPLEMENTED, "the level of the 'hooktrain' logger on the main process."),
    "log_level_replica": (IMPLEMENTED, "the level of the 'hooktrain' logger on other processes."),
    "log_on_each_node": (NO_EFFECT, "hooktrain logs from world rank zero only."),
    "prediction_loss_only": (IMPLEMENTED, "evaluate() computes the loss only."),
    "tf32": (IMPLEMENTED, "sets torch.backends.cuda.matmul.allow_tf32 and cudnn.allow_tf32."),
    "full_determinism": (IMPLEMENTED, "torch.use_deterministic_algorithms(True) and seeding, as "
                         "HF's enable_full_determinism."),
    "train_sampling_strategy": (IMPLEMENTED, "'random' (default) or 'sequential'; "
                                "'group_by_length' is an error."),
    "optim_args": (IMPLEMENTED, "'key=value,...' keyword arguments for the optimizer."),
    "ddp_find_unused_parameters": (IMPLEMENTED, "passed to DistributedDataParallel."),
    "ddp_bucket_cap_mb": (IMPLEMENTED, "passed to DistributedDataParallel."),
    "ddp_broadcast_buffers": (IMPLEMENTED, "passed to DistributedDataParallel."),
    "ddp_static_graph": (IMPLEMENTED, "passed to DistributedDataParallel."),
    "dataloader_persistent_workers": (IMPLEMENTED, "passed to the DataLoader (with workers)."),
    "dataloader_prefetch_factor": (IMPLEMENTED, "passed to the DataLoader (with workers)."),
    "dataloader_multiprocessing_context": (IMPLEMENTED, "passed to the DataLoader."),
    "do_train": (NO_EFFECT, "read by scripts, not by the Trainer (as in HF)."),
    "do_eval": (NO_EFFECT, "read by scripts, not by the Trainer (as in HF)."),
    "do_predict": (NO_EFFECT, "read by scripts, not by the Trainer (as in HF)."),
    "resume_from_checkpoint": (NO_EFFECT, "read by scripts; pass it to train() (as in HF)."),
    "local_rank": (NO_EFFECT, "torchrun's LOCAL_RANK environment variable is used."),
    "average_tokens_across_devices": (NO_EFFECT, "num_items_in_batch is counted per process; "
                                      "see docs/distributed.md."),
    "eval_accumulation_steps": (NO_EFFECT, "predictions stay on the device until the end of "
                                "evaluation."),
    "eval_use_gather_object": (NO_EFFECT, "evaluation gathers objects under torchrun anyway."),
    "eval_do_concat_batches": (UNSUPPORTED, "predictions are always concatenated."),
    "skip_memory_metrics": (NO_EFFECT, "hooktrain reports no memory metrics."),
    "save_on_each_node": (NO_EFFECT, "world rank zero writes checkpoints."),
    "use_cache": (NO_EFFECT, "the model's config is left as it is."),
    "torch_empty_cache_steps": (NO_EFFECT, "the CUDA cache is never emptied by the loop."),
    "dataloader_in_order": (NO_EFFECT, "batches are always in order."),
    "length_column_name": (NO_EFFECT, "group_by_length is not supported."),
    "accelerator_config": (NO_EFFECT, "hooktrain does not use accelerate."),
    "parallelism_config": (NO_EFFECT, "hooktrain does not use accelerate."),
    "liger_kernel_config": (NO_EFFECT, "Liger kernels are not supported."),
    "project": (NO_EFFECT, "for HF's trackio callback; set the trackio plugin's settings."),
    "trackio_space_id": (NO_EFFECT, "for HF's trackio callback; see the trackio plugin."),
    "trackio_bucket_id": (NO_EFFECT, "for HF's trackio callback; see the trackio plugin."),
    "trackio_static_space_id": (NO_EFFECT, "for HF's trackio callback; see the trackio plugin."),
    "hub_token": (NO_EFFECT, "hooktrain does not push to the Hub."),
    "hub_private_repo": (NO_EFFECT, "hooktrain does not push to the Hub."),
    "hub_model_id": (NO_EFFECT, "hooktrain does not push to the Hub."),
    "hub_strategy": (NO_EFFECT, "hooktrain does not push to the Hub."),
    "hub_always_push": (NO_EFFECT, "hooktrain does not push to the Hub."),
    "hub_revision": (NO_EFFECT, "hooktrain does not push to the Hub."),
    "push_to_hub": (UNSUPPORTED, "hooktrain does not push; upload output_dir after training."),
    "deepspeed": (UNSUPPORTED, "DeepSpeed is not supported; use torchrun (DDP)."),
    "fsdp": (IMPLEMENTED, "FSDP2 (fully_shard) under torchrun: full_shard, shard_grad_op, "
             "offload, auto_wrap; sharded checkpoints (docs/distributed.md)."),
    "fsdp_config": (IMPLEMENTED, "units to shard, reshard_after_forward, offload, mixed "
                    "precision, activation checkpointing; a dict or a JSON file."),
    "use_liger_kernel": (UNSUPPORTED, "Liger kernels are not supported."),
    "neftune_noise_alpha": (IMPLEMENTED, "NEFTune noise on the input embeddings while "
                            "training, as HF; an error for a model without "
                            "get_input_embeddings()."),
    "include_for_metrics": (UNSUPPORTED, "compute_metrics gets predictions and labels only."),
    "batch_eval_metrics": (UNSUPPORTED, "compute_metrics runs once, on the whole set."),
    "include_num_input_tokens_seen": (UNSUPPORTED, "input tokens are not counted."),
    "save_only_model": (UNSUPPORTED, "checkpoints always hold what resume needs."),
    "enable_jit_checkpoint": (UNSUPPORTED, "SIGTERM already fires on_exception; save with "
                              "save_steps."),
    "auto_find_batch_size": (UNSUPPORTED, "set per_device_train_batch_size."),
    "optim_target_modules": (UNSUPPORTED, "GaLore/APOLLO optimizers are not supported."),
    "bf16_full_eval": (UNSUPPORTED, "evaluation runs in the training precision."),
    "fp16_full_eval": (UNSUPPORTED, "evaluation runs in the training precision."),
    "activation_checkpointing": (IMPLEMENTED, "the model's activation_checkpointing_enable() (or "
                                 "gradient_checkpointing_enable()); an error for a model "
                                 "without either."),
    "activation_checkpointing_kwargs": (IMPLEMENTED, "passed to that method."),
    "debug": (UNSUPPORTED, "HF's debug options are not supported."),
    "overwrite_output_dir": (LEGACY, "True allows replacing checkpoint-N folders in output_dir "
                             "that hooktrain did not write (gone from transformers 5)."),
    "logging_dir": (LEGACY, "no effect; plugins log under output_dir (gone from transformers 5)."),
    "group_by_length": (LEGACY, "True is an error; use train_sampling_strategy (transformers 5)."),
    "jit_mode_eval": (LEGACY, "no effect (gone from transformers 5)."),
    "evaluation_strategy": (LEGACY, "renamed eval_strategy; the value is used as eval_strategy."),
    "no_cuda": (LEGACY, "renamed use_cpu; the value is used as use_cpu."),
}

TORCH_OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "sgd", "adagrad", "rmsprop", "adafactor")
# HF's optim names that need a package torch does not have, and that package
OPTIMIZER_PACKAGES = {
    **{name: "bitsandbytes" for name in (
        "adamw_bnb_8bit", "adamw_8bit", "ademamix", "ademamix_8bit", "lion_8bit", "lion_32bit",
        "paged_adamw_32bit", "paged_adamw_8bit", "paged_ademamix_32bit", "paged_ademamix_8bit",
        "paged_lion_32bit", "paged_lion_8bit", "rmsprop_bnb", "rmsprop_bnb_8bit",
        "rmsprop_bnb_32bit")},
    **{name: "galore-torch" for name in (
        "galore_adamw", "galore_adamw_8bit", "galore_adafactor", "galore_adamw_layerwise",
        "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise")},
    "apollo_adamw": "apollo-torch", "apollo_adamw_layerwise": "apollo-torch",
    "adamw_torch_xla": "torch_xla", "adamw_torch_npu_fused": "torch_npu",
    "adamw_anyprecision": "torchdistx", "adamw_torch_4bit": "torchao",
    "adamw_torch_8bit": "torchao", "lomo": "lomo-optim", "adalomo": "lomo-optim",
    "grokadamw": "grokadamw", "schedule_free_radam": "schedulefree",
    "schedule_free_adamw": "schedulefree", "schedule_free_sgd": "schedulefree",
    "stable_adamw": "torch-optimi",
}
LOG_LEVELS = ("passive", "debug", "info", "warning", "error", "critical")
SAMPLING_STRATEGIES = ("random", "sequential")
_warned_legacy: set[str] = set()


def check_hf_arguments(args: Any) -> None:
    """Apply renamed 4.x fields and refuse values that need a feature hooktrain lacks."""
    defaults = HFArguments()
    for name, (status, reason) in FIELD_STATUS.items():
        value = getattr(args, name)
        if status == UNSUPPORTED and value != getattr(defaults, name):
            raise ConfigError(_unsupported_message(name, value, reason))
        if status == LEGACY and value is not None:
            _warn_legacy(name, reason)
    if args.evaluation_strategy is not None:
        args.eval_strategy = args.evaluation_strategy
    if args.no_cuda is not None:
        args.use_cpu = bool(args.no_cuda)
    if args.group_by_length:
        raise ConfigError("group_by_length=True is not supported: batches are drawn at random "
                          "(train_sampling_strategy='random') or in order ('sequential').")
    for name in ("log_level", "log_level_replica"):
        if getattr(args, name) not in LOG_LEVELS:
            raise ConfigError(f"Invalid value {getattr(args, name)!r} for argument {name}. "
                              f"Accepted values are: {', '.join(map(repr, LOG_LEVELS))}.")
    if args.train_sampling_strategy not in SAMPLING_STRATEGIES:
        raise ConfigError(
            f"Invalid value {args.train_sampling_strategy!r} for argument "
            "train_sampling_strategy. Accepted values are: 'random', 'sequential' "
            "('group_by_length' is not supported)."
        )
    if args.optim in OPTIMIZER_PACKAGES:
        raise ConfigError(
            f"optim={args.optim!r} needs {OPTIMIZER_PACKAGES[args.optim]!r}, which hooktrain does "
            "not use. Choose one of "
            f"{', '.join(map(repr, TORCH_OPTIMIZERS))} ('adafactor' is transformers' and needs it "
            "installed), or pass your own: Trainer(optimizers=(optimizer, None))."
        )
    if args.torch_compile_backend is not None or args.torch_compile_mode is not None:
        args.torch_compile = True  # HF: naming a backend or mode turns compilation on
    if not 0.0 <= args.label_smoothing_factor < 1.0:
        raise ConfigError("label_smoothing_factor must be in [0, 1), got "
                          f"{args.label_smoothing_factor}.")


def _unsupported_message(name: str, value: Any, reason: str) -> str:
    if name == "push_to_hub":
        return ("push_to_hub=True: hooktrain does not push to the Hugging Face Hub. Train, then "
                "upload output_dir yourself, e.g. huggingface_hub.upload_folder(repo_id=..., "
                "folder_path=args.output_dir), or `hf upload REPO OUTPUT_DIR`.")
    return f"TrainingArguments.{name}={value!r} is not supported by hooktrain: {reason}"


def _warn_legacy(name: str, reason: str) -> None:
    if name not in _warned_legacy:
        _warned_legacy.add(name)
        warnings.warn(f"TrainingArguments.{name} is a transformers 4.x argument: {reason}",
                      FutureWarning, stacklevel=6)


def markdown_table(arguments_class: type) -> str:
    """The page ``docs/hf-training-arguments.md``: every HF field and what it does here.

    ``arguments_class`` is :class:`hooktrain.TrainingArguments` (which builds on this module).
    """
    lines = [
        "# transformers' TrainingArguments in hooktrain",
        "",
        "Generated by `python -m hooktrain.hf_args` from the dataclass; a test keeps it current.",
        "Every field of transformers 5.24's `TrainingArguments` is accepted by name. The fields",
        "the core loop has always had are all implemented as in HF; the table lists the rest.",
        "",
        "| field | default | status | here |",
        "|---|---|---|---|",
    ]
    defaults = arguments_class()
    for name, (status, reason) in FIELD_STATUS.items():
        default = getattr(defaults, name)
        lines.append(f"| `{name}` | `{default!r}` | {status} | {reason} |")
    core = [n for n in arguments_class.field_names() if n not in FIELD_STATUS]
    lines += ["", "Implemented in the core loop: " + ", ".join(f"`{n}`" for n in core) + ".", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    from hooktrain.args import TrainingArguments

    print(markdown_table(TrainingArguments), end="")
