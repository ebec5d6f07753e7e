"""What the arguments do to the process and the model before (and around) training.

Seeding, ``model_init``, ``log_level``/``tf32``/``full_determinism`` (process-wide, at
construction), the autocast of ``bf16``/``fp16``, and the model ``train()`` runs: activation
checkpointing, the ``DistributedDataParallel`` wrapper under torchrun, ``torch.compile`` and HF's
NEFTune noise.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from hooktrain import distributed, fsdp
from hooktrain.errors import ConfigError

logger = logging.getLogger("hooktrain")


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def call_model_init(model_init: Callable[..., Any], trial: Any) -> torch.nn.Module:
    """A fresh model from ``model_init()`` (or ``model_init(trial)``), as HF calls it."""
    arguments = len(inspect.signature(model_init).parameters)
    model = model_init() if arguments == 0 else model_init(trial)
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"model_init returned a {type(model).__name__}; it must return a "
                          "torch.nn.Module.")
    return model


def apply_process_arguments(args: Any) -> None:
    """``log_level``, ``tf32`` and ``full_determinism``: process-wide, set at construction."""
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


def autocast_factory(args: Any, device: torch.device) -> Callable[[], Any]:
    """A function returning the context ``compute_loss`` runs in: autocast under bf16/fp16."""
    dtype = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None
    if dtype is None:
        return contextlib.nullcontext
    device_type = device.type
    return lambda: torch.autocast(device_type, dtype=dtype)


def wrap_model_for_training(model: torch.nn.Module, device: torch.device,
                            args: Any) -> torch.nn.Module:
    """Activation checkpointing, DDP or FSDP under torchrun, then ``torch.compile`` (as
    accelerate orders them); the result is ``model_wrapped``, the module the loop calls. FSDP
    shards ``model`` in place, so there ``model_wrapped`` is ``model``."""
    if args.activation_checkpointing or args.gradient_checkpointing:
        enable_activation_checkpointing(model, args)
    plan = fsdp.plan_from(args)
    if plan is not None and distributed.world_size() > 1:
        wrapped = fsdp.shard(model, plan, device)
    else:
        if plan is not None:
            logger.warning("fsdp is set but this is one process: the model trains unsharded. "
                           "Launch with torchrun --nproc-per-node N (N > 1) to shard it.")
        wrapped = distributed.wrap(model, device, args)
    if args.torch_compile:
        options = {k: v for k, v in (("backend", args.torch_compile_backend),
                                     ("mode", args.torch_compile_mode)) if v is not None}
        wrapped = torch.compile(wrapped, **options)
    return wrapped


def enable_activation_checkpointing(model: torch.nn.Module, args: Any) -> None:
    """transformers 5's ``activation_checkpointing`` (``gradient_checkpointing`` is its 4.x
    name): the model's ``activation_checkpointing_enable`` or, older, its
    ``gradient_checkpointing_enable``, with the arguments' kwargs (None: the model's own)."""
    kwargs = args.activation_checkpointing_kwargs or args.gradient_checkpointing_kwargs
    if isinstance(kwargs, str):
        kwargs = json.loads(kwargs)
    kwargs = dict(kwargs or {})
    for method, keyword in (("activation_checkpointing_enable",
                             "activation_checkpointing_kwargs"),
                            ("gradient_checkpointing_enable", "gradient_checkpointing_kwargs")):
        enable = getattr(model, method, None)
        if enable is not None:
            enable(**{keyword: kwargs or None})
            return
    raise ConfigError(
        f"activation (gradient) checkpointing is on but {type(model).__name__} has no "
        "activation_checkpointing_enable() or gradient_checkpointing_enable() (transformers' "
        "models do). Wrap its blocks in torch.utils.checkpoint yourself, or turn it off."
    )


def activate_neftune(model: torch.nn.Module, alpha: float) -> Any:
    """HF's NEFTune: uniform noise on the input embeddings while training, scaled by
    ``alpha / sqrt(sequence length * hidden size)``; returns the hook handle to remove."""
    get_embeddings = getattr(model, "get_input_embeddings", None)
    if get_embeddings is None:
        raise ConfigError(
            f"neftune_noise_alpha is set but {type(model).__name__} has no "
            "get_input_embeddings() (transformers' models do); unset neftune_noise_alpha."
        )
    embeddings = get_embeddings()
    embeddings.neftune_noise_alpha = alpha
    return embeddings.register_forward_hook(neftune_noise)


def neftune_noise(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
    """The forward hook :func:`activate_neftune` registers (HF's ``neftune_post_forward_hook``)."""
    if module.training:
        dims = torch.tensor(output.size(1) * output.size(2))
        magnitude = module.neftune_noise_alpha / torch.sqrt(dims)
        output = output + torch.zeros_like(output).uniform_(-magnitude, magnitude)
    return output
