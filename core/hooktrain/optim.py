"""Optimizer and learning-rate schedule, built as HF builds them."""

from __future__ import annotations

import math
from functools import partial

import torch

from hooktrain.args import TrainingArguments


def decay_parameter_names(model: torch.nn.Module) -> set[str]:
    """Parameters that get weight decay: everything but biases and normalisation weights (HF)."""
    no_decay: set[str] = set()
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, (torch.nn.LayerNorm, torch.nn.modules.batchnorm._BatchNorm,
                                      torch.nn.GroupNorm)) or "norm" in type(module).__name__.lower()
        for param_name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if is_norm or param_name == "bias":
                no_decay.add(full)
    return {name for name, _ in model.named_parameters()} - no_decay


def create_optimizer(model: torch.nn.Module, args: TrainingArguments) -> torch.optim.Optimizer:
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if args.weight_decay:
        decay = decay_parameter_names(model)
        groups = [
            {"params": [p for n, p in params if n in decay], "weight_decay": args.weight_decay},
            {"params": [p for n, p in params if n not in decay], "weight_decay": 0.0},
        ]
        groups = [g for g in groups if g["params"]]
    else:  # one group: two would cost a second fused kernel launch every step for nothing
        groups = [{"params": [p for _, p in params], "weight_decay": 0.0}]
    if args.optim == "sgd":
        return torch.optim.SGD(groups, lr=args.learning_rate)
    kwargs = {"lr": args.learning_rate, "betas": (args.adam_beta1, args.adam_beta2),
              "eps": args.adam_epsilon}
    if args.optim == "adamw_torch_fused" and _fused_supported(params):
        kwargs["fused"] = True
    return torch.optim.AdamW(groups, **kwargs)


def _fused_supported(params: list) -> bool:
    """Fused AdamW runs on CUDA everywhere and on CPU from torch 2.4; probe once, here."""
    if not params:
        return False
    device = params[0][1].device
    if device.type == "cuda":
        return True
    try:
        probe = torch.nn.Parameter(torch.zeros(1, device=device))
        torch.optim.AdamW([probe], fused=True)
        return True
    except (RuntimeError, TypeError, ValueError):
        return False


def create_scheduler(
    optimizer: torch.optim.Optimizer, args: TrainingArguments, num_training_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = args.get_warmup_steps(num_training_steps)
    kind = args.lr_scheduler_type
    if kind == "constant":
        schedule = _constant
    elif kind == "constant_with_warmup":
        schedule = partial(_constant_with_warmup, warmup=warmup)
    elif kind == "cosine":
        cycles = float(args.lr_scheduler_kwargs.get("num_cycles", 0.5))
        schedule = partial(_cosine, warmup=warmup, total=num_training_steps, cycles=cycles)
    else:
        schedule = partial(_linear, warmup=warmup, total=num_training_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


# Module-level functions (not lambdas) so the scheduler's state_dict stays plain data.

def _constant(step: int) -> float:
    return 1.0


def _constant_with_warmup(step: int, *, warmup: int) -> float:
    return step / max(1.0, warmup) if step < warmup else 1.0


def _linear(step: int, *, warmup: int, total: int) -> float:
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def _cosine(step: int, *, warmup: int, total: int, cycles: float) -> float:
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * cycles * 2.0 * progress)))
