"""The event table, read once from :mod:`hooktrain.hookspecs` so nothing spells it twice."""

from __future__ import annotations

import inspect

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
    "on_log": ("logs",),
    "on_evaluate": ("metrics",),
    "on_predict": ("metrics",),
    "on_load_checkpoint": ("checkpoint_dir",),
    "on_exception": ("exception",),
}

#: Hooks whose dict argument is copied for each plugin so no plugin sees another's edits.
COPIED_ARGS: dict[str, str] = {"on_log": "logs", "on_evaluate": "metrics", "on_predict": "metrics"}


def positional_signature(names: tuple[str, ...]) -> inspect.Signature:
    """A signature of plain positional parameters, for generated hookimpls."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature([inspect.Parameter(name, kind) for name in names])
