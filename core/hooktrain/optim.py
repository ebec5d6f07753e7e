"""The optimizer, built as HF builds it: weight-decay groups, ``optim`` and ``optim_args``.

Learning-rate schedules are in :mod:`hooktrain.schedules`.
"""

from __future__ import annotations

from typing import Any

import torch

from hooktrain.args import TrainingArguments
from hooktrain.errors import ConfigError


def decay_parameter_names(model: torch.nn.Module) -> set[str]:
    """Parameters that get weight decay: everything but biases and normalisation weights (HF)."""
    no_decay: set[str] = set()
    for module_name, module in model.named_modules():
        norm_types = (torch.nn.LayerNorm, torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm)
        is_norm = isinstance(module, norm_types) or "norm" in type(module).__name__.lower()
        for param_name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if is_norm or param_name == "bias":
                no_decay.add(full)
    return {name for name, _ in model.named_parameters()} - no_decay


# HF's optim_args keys per optimizer, and which of them are booleans
_OPTIM_ARG_KEYS = {
    "sgd": (("momentum", "dampening", "weight_decay"), ("nesterov",)),
    "adagrad": (("lr_decay", "weight_decay", "eps"), ()),
    "rmsprop": (("momentum", "alpha", "eps", "weight_decay"), ("centered",)),
}


def parse_optim_args(text: str | None) -> dict[str, str]:
    """HF's ``optim_args``: ``"momentum=0.9,nesterov=true"`` as a dict of strings."""
    if not text:
        return {}
    parsed = {}
    for mapping in text.replace(" ", "").split(","):
        key, sep, value = mapping.partition("=")
        if not sep:
            raise ConfigError(f"optim_args {text!r}: expected key=value pairs separated by "
                              "commas, e.g. 'momentum=0.9,nesterov=true'.")
        parsed[key] = value
    return parsed


def create_optimizer(model: torch.nn.Module, args: TrainingArguments,
                     decay_names: set[str] | list[str] | None = None,
                     cls_and_kwargs: tuple[type, dict[str, Any]] | None = None,
                     ) -> torch.optim.Optimizer:
    """HF's optimizer for ``args.optim`` (those torch provides, and transformers' Adafactor),
    with weight decay on ``decay_names`` (default: all but biases and norms); or
    ``cls(groups, **kwargs)`` for the Trainer's ``optimizer_cls_and_kwargs``, as HF."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if args.weight_decay:
        decay = set(decay_names) if decay_names is not None else decay_parameter_names(model)
        groups = [
            {"params": [p for n, p in params if n in decay], "weight_decay": args.weight_decay},
            {"params": [p for n, p in params if n not in decay], "weight_decay": 0.0},
        ]
        groups = [g for g in groups if g["params"]]
    else:  # one group: two would cost a second fused kernel launch every step for nothing
        groups = [{"params": [p for _, p in params], "weight_decay": 0.0}]
    if cls_and_kwargs is not None:
        cls, kwargs_given = cls_and_kwargs
        return cls(groups, **kwargs_given)
    name = args.optim
    optim_args = parse_optim_args(args.optim_args)
    kwargs: dict[str, object] = {"lr": args.learning_rate}
    if name in _OPTIM_ARG_KEYS:
        numbers, flags = _OPTIM_ARG_KEYS[name]
        kwargs.update({k: float(v) for k, v in optim_args.items() if k in numbers})
        kwargs.update({k: v.lower() in ("true", "1", "yes") for k, v in optim_args.items()
                       if k in flags})
        cls = {"sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad,
               "rmsprop": torch.optim.RMSprop}[name]
        return cls(groups, **kwargs)
    if name == "adafactor":
        try:
            from transformers.optimization import Adafactor
        except ImportError:
            raise ConfigError("optim='adafactor' is transformers' Adafactor: install transformers, "
                              "or choose 'adamw_torch'.") from None
        return Adafactor(groups, scale_parameter=False, relative_step=False, **kwargs)
    kwargs.update({"betas": (args.adam_beta1, args.adam_beta2), "eps": args.adam_epsilon})
    if name == "adamw_torch_fused" and _fused_supported(params):
        kwargs["fused"] = True
    return torch.optim.AdamW(groups, **kwargs)


def learning_rates(optimizer: Any, lr_scheduler: Any) -> list[float]:
    """HF's ``get_learning_rates``: each param group's current learning rate."""
    if lr_scheduler is None:
        raise ConfigError("get_learning_rates() needs the optimizer and scheduler: call it "
                          "during or after train().")
    return [group["lr"] for group in optimizer.param_groups]


def param_group(optimizer: Any, param: Any) -> Any:
    """HF's ``get_optimizer_group``: the param group holding ``param``, or all groups."""
    if optimizer is None:
        raise ConfigError("get_optimizer_group() needs the optimizer: call create_optimizer() "
                          "or train() first.")
    if param is None:
        return optimizer.param_groups
    for group in optimizer.param_groups:
        if any(p is param for p in group["params"]):
            return group
    return None


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
