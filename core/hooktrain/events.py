"""The event table, read once from :mod:`hooktrain.hookspecs` so nothing spells it twice."""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable
from typing import Any

from hooktrain import hookspecs

#: Arguments every hook may take, in the order the specs declare them.
COMMON_ARGS: tuple[str, ...] = (
    "args", "state", "control", "model", "processing_class", "optimizer", "lr_scheduler",
    "train_dataloader", "eval_dataloader",
)

#: Hook name -> the arguments it adds to :data:`COMMON_ARGS` (``on_log`` -> ``("logs",)``).
EXTRA_ARGS: dict[str, tuple[str, ...]] = {}

for _name, _spec in vars(hookspecs).items():
    if _name.startswith("on_") and inspect.isfunction(_spec):
        _params = tuple(inspect.signature(_spec).parameters)
        assert _params[: len(COMMON_ARGS)] == COMMON_ARGS, f"{_name} must start with COMMON_ARGS"
        EXTRA_ARGS[_name] = _params[len(COMMON_ARGS):]

#: Every hook name, in the order the specs are written.
EVENT_NAMES: tuple[str, ...] = tuple(EXTRA_ARGS)

#: Extra arguments HF passes to a ``TrainerCallback``; hooktrain's additions are left out.
HF_EXTRA_ARGS: dict[str, tuple[str, ...]] = {
    "on_pre_log": ("logs",),
    "on_log": ("logs",),
    "on_evaluate": ("metrics",),
    "on_predict": ("metrics",),
    "on_load_checkpoint": ("checkpoint_dir",),
    "on_exception": ("exception",),
}

#: Hooks whose dict argument is copied for each plugin so no plugin sees another's edits.
COPIED_ARGS: dict[str, str] = {
    "on_pre_log": "logs", "on_log": "logs", "on_evaluate": "metrics", "on_predict": "metrics",
}


def forwarding_function(
    name: str, params: tuple[str, ...], target: Callable[..., Any],
    keywords: tuple[str, ...] = (),
) -> Any:
    """``def <name>(<params>): return target(<params>)``, with real parameter names.

    Parameters named in ``keywords`` are passed on by keyword (``model=model``), the others by
    position. pluggy reads an implementation's argument names from its code object
    (``__signature__`` is ignored from pluggy 1.7 on), so generated hookimpls are compiled the
    way :mod:`dataclasses` compiles ``__init__``. The names come from the hook specs, never from
    user input.
    """
    passed = ", ".join(f"{p}={p}" if p in keywords else p for p in params)
    source = f"def {name}({', '.join(params)}):\n    return _target({passed})\n"
    namespace: dict[str, Any] = {"_target": target}
    exec(source, namespace)  # the generated forwarding function (see the docstring)
    return namespace[name]


def argument_getter(names: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A fast ``lambda kwargs: tuple(kwargs[n] for n in names)`` (``itemgetter`` underneath)."""
    if not names:
        return lambda kwargs: ()
    if len(names) == 1:
        (only,) = names
        return lambda kwargs: (kwargs[only],)
    return operator.itemgetter(*names)
