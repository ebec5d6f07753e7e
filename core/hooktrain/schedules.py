"""Learning-rate schedules: every ``lr_scheduler_type`` of transformers 5.24 but ``greedy``.

Each is a ``LambdaLR`` over a module-level function (so the scheduler's ``state_dict`` stays plain
data and checkpoints load with ``weights_only=True``), with HF's formula and HF's defaults for
``lr_scheduler_kwargs``; ``reduce_lr_on_plateau`` is torch's ``ReduceLROnPlateau``, stepped with
the ``metric_for_best_model`` value after each evaluation instead of after each step, as in HF.
A test compares every schedule step by step with HF's own.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau

from hooktrain.args import SCHEDULER_TYPES
from hooktrain.errors import ConfigError


def create_scheduler(optimizer: torch.optim.Optimizer, args: Any,
                     num_training_steps: int) -> Any:
    """The schedule ``args.lr_scheduler_type`` names, with ``args.lr_scheduler_kwargs``."""
    kind = args.lr_scheduler_type
    kwargs = dict(args.lr_scheduler_kwargs or {})
    warmup = args.get_warmup_steps(num_training_steps)
    try:
        return _build(kind, optimizer, warmup, num_training_steps, kwargs)
    except TypeError as exc:  # an unknown keyword in lr_scheduler_kwargs
        raise ConfigError(f"lr_scheduler_kwargs {kwargs} do not fit lr_scheduler_type="
                          f"{kind!r}: {exc}") from None


def _build(kind: str, optimizer: torch.optim.Optimizer, warmup: int, total: int,
           kwargs: dict[str, Any]) -> Any:
    if kind == "constant":
        return LambdaLR(optimizer, _constant)
    if kind == "reduce_lr_on_plateau":
        return ReduceLROnPlateau(optimizer, **kwargs)
    if kind == "constant_with_warmup":
        return LambdaLR(optimizer, partial(_constant_with_warmup, warmup=warmup))
    if kind == "inverse_sqrt":
        timescale = kwargs.pop("timescale", None) or warmup or 10_000
        _no_more(kind, kwargs)
        return LambdaLR(optimizer, partial(_inverse_sqrt, warmup=warmup, timescale=timescale))
    if kind == "warmup_stable_decay":
        return LambdaLR(optimizer, _wsd(warmup, total, **kwargs))
    if kind == "linear":
        _no_more(kind, kwargs)
        return LambdaLR(optimizer, partial(_linear, warmup=warmup, total=total))
    if kind == "cosine":
        cycles = float(kwargs.pop("num_cycles", 0.5))
        _no_more(kind, kwargs)
        return LambdaLR(optimizer, partial(_cosine, warmup=warmup, total=total, cycles=cycles))
    if kind == "cosine_with_restarts":
        cycles = int(kwargs.pop("num_cycles", 1))
        _no_more(kind, kwargs)
        return LambdaLR(optimizer, partial(_cosine_restarts, warmup=warmup, total=total,
                                           cycles=cycles))
    if kind == "polynomial":
        lr_init = optimizer.defaults["lr"]
        lr_end, power = float(kwargs.pop("lr_end", 1e-7)), float(kwargs.pop("power", 1.0))
        _no_more(kind, kwargs)
        if not lr_init > lr_end:
            raise ConfigError(f"lr_scheduler_kwargs lr_end ({lr_end}) must be smaller than the "
                              f"learning rate ({lr_init}) for lr_scheduler_type='polynomial'.")
        return LambdaLR(optimizer, partial(_polynomial, warmup=warmup, total=total, lr_end=lr_end,
                                           power=power, lr_init=lr_init))
    if kind in ("cosine_with_min_lr", "cosine_warmup_with_min_lr"):
        cycles = float(kwargs.pop("num_cycles", 0.5))
        rate = _min_lr_rate(kind, optimizer, kwargs.pop("min_lr", None),
                            kwargs.pop("min_lr_rate", None))
        if kind == "cosine_with_min_lr":
            _no_more(kind, kwargs)
            return LambdaLR(optimizer, partial(_cosine, warmup=warmup, total=total,
                                               cycles=cycles, min_lr_rate=rate))
        warmup_rate = kwargs.pop("warmup_lr_rate", None)
        _no_more(kind, kwargs)
        return LambdaLR(optimizer, partial(_cosine_warmup_min_lr, warmup=warmup, total=total,
                                           cycles=cycles, min_lr_rate=rate,
                                           warmup_lr_rate=warmup_rate))
    raise ConfigError(f"Invalid value {kind!r} for argument lr_scheduler_type. Accepted values "
                      f"are: {', '.join(map(repr, SCHEDULER_TYPES))}.")


def _no_more(kind: str, kwargs: dict[str, Any]) -> None:
    if kwargs:
        raise ConfigError(f"lr_scheduler_kwargs {sorted(kwargs)} are not arguments of "
                          f"lr_scheduler_type={kind!r}.")


def _min_lr_rate(kind: str, optimizer: torch.optim.Optimizer, min_lr: float | None,
                 min_lr_rate: float | None) -> float:
    if min_lr is not None and min_lr_rate is not None:
        raise ConfigError(f"lr_scheduler_type={kind!r}: set one of min_lr and min_lr_rate in "
                          "lr_scheduler_kwargs, not both.")
    if min_lr is not None:
        return float(min_lr) / optimizer.defaults["lr"]
    if min_lr_rate is None:
        raise ConfigError(f"lr_scheduler_type={kind!r} needs min_lr or min_lr_rate in "
                          "lr_scheduler_kwargs, e.g. lr_scheduler_kwargs={'min_lr': 1e-6}.")
    return float(min_lr_rate)


def _wsd(warmup: int, total: int, num_decay_steps: int | None = None,
         num_stable_steps: int | None = None, warmup_type: str = "linear",
         decay_type: str = "cosine", min_lr_ratio: float = 0.0,
         num_cycles: float = 0.5) -> Any:
    if num_decay_steps is None:
        raise ConfigError("lr_scheduler_type='warmup_stable_decay' needs num_decay_steps in "
                          "lr_scheduler_kwargs, e.g. lr_scheduler_kwargs={'num_decay_steps': 100}.")
    for name, value in (("warmup_type", warmup_type), ("decay_type", decay_type)):
        if value not in ("linear", "cosine", "1-sqrt"):
            raise ConfigError(f"lr_scheduler_kwargs {name}={value!r}: expected 'linear', "
                              "'cosine' or '1-sqrt'.")
    if num_stable_steps is None:
        num_stable_steps = total - warmup - num_decay_steps
    return partial(_warmup_stable_decay, warmup=warmup, stable=num_stable_steps,
                   decay=num_decay_steps, warmup_type=warmup_type, decay_type=decay_type,
                   min_lr_ratio=min_lr_ratio, cycles=num_cycles)


# Module-level functions (not lambdas) so the scheduler's state_dict stays plain data.

def _warmup(step: int, warmup: int) -> float:
    return step / max(1, warmup)


def _constant(step: int) -> float:
    return 1.0


def _constant_with_warmup(step: int, *, warmup: int) -> float:
    return step / max(1.0, warmup) if step < warmup else 1.0


def _linear(step: int, *, warmup: int, total: int) -> float:
    if step < warmup:
        return _warmup(step, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def _cosine(step: int, *, warmup: int, total: int, cycles: float,
            min_lr_rate: float = 0.0) -> float:
    if step < warmup:
        return _warmup(step, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    factor = 0.5 * (1.0 + math.cos(math.pi * cycles * 2.0 * progress))
    return max(0.0, factor * (1 - min_lr_rate) + min_lr_rate)


def _cosine_restarts(step: int, *, warmup: int, total: int, cycles: int) -> float:
    if step < warmup:
        return _warmup(step, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    if progress >= 1.0:
        return 0.0
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((cycles * progress) % 1.0))))


def _polynomial(step: int, *, warmup: int, total: int, lr_end: float, power: float,
                lr_init: float) -> float:
    if step < warmup:
        return _warmup(step, warmup)
    if step > total:
        return lr_end / lr_init
    remaining = 1 - (step - warmup) / (total - warmup)
    return ((lr_init - lr_end) * remaining**power + lr_end) / lr_init


def _inverse_sqrt(step: int, *, warmup: int, timescale: int) -> float:
    if step < warmup:
        return _warmup(step, warmup)
    return 1.0 / math.sqrt((step + timescale - warmup) / timescale)


def _cosine_warmup_min_lr(step: int, *, warmup: int, total: int, cycles: float,
                          min_lr_rate: float, warmup_lr_rate: float | None) -> float:
    if step < warmup:
        if warmup_lr_rate is None:
            return (step + 1.0) / max(1.0, warmup)
        return warmup_lr_rate + (1.0 - warmup_lr_rate) * step / max(1, warmup - 1)
    progress = (step - warmup + 1.0) / max(1.0, total - warmup)
    factor = 0.5 * (1.0 + math.cos(math.pi * cycles * 2.0 * progress))
    return max(0.0, factor * (1 - min_lr_rate) + min_lr_rate)


def _shape(kind: str, progress: float, cycles: float, rising: bool) -> float:
    if kind == "linear":
        return progress if rising else 1.0 - progress
    if kind == "cosine":
        if rising:
            return 0.5 * (1.0 - math.cos(math.pi * progress))
        return 0.5 * (1.0 + math.cos(math.pi * cycles * 2.0 * progress))
    return 1.0 - math.sqrt(1.0 - progress) if rising else 1.0 - math.sqrt(progress)


def _warmup_stable_decay(step: int, *, warmup: int, stable: int, decay: int, warmup_type: str,
                         decay_type: str, min_lr_ratio: float, cycles: float) -> float:
    if step < warmup:
        factor = _shape(warmup_type, step / max(1, warmup), cycles, rising=True)
        return max(0.0, factor * (1.0 - min_lr_ratio) + min_lr_ratio)
    if step < warmup + stable:
        return 1.0
    if step < warmup + stable + decay:
        factor = _shape(decay_type, (step - warmup - stable) / max(1, decay), cycles, rising=False)
        return max(0.0, factor * (1.0 - min_lr_ratio) + min_lr_ratio)
    return min_lr_ratio
