"""The ``TrainerCallback`` bridge: an HF callback registered as a pluggy plugin.

The bridge exposes one hookimpl per event the callback overrides (a base-class no-op is never
called) and calls it exactly as HF's ``CallbackHandler`` does: ``(args, state, control)``
positionally, then HF's keyword arguments. hooktrain's additions (``loss``, ``checkpoint_dir`` on
``on_save``) are not passed, so HF code sees the kwargs it expects.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from hooktrain.errors import HookNameError
from hooktrain.events import COMMON_ARGS, EVENT_NAMES, HF_EXTRA_ARGS, forwarding_function
from hooktrain.markers import hookimpl
from hooktrain.trainer_callback import TrainerCallback, callback_base

_HF_KWARGS = COMMON_ARGS[3:]  # model ... eval_dataloader


class TrainerCallbackBridge:
    """Registers a :class:`TrainerCallback` with the plugin manager."""

    def __init__(self, callback: TrainerCallback) -> None:
        self.callback = callback
        check_callback_hook_names(callback)
        for event in overridden_events(type(callback)):
            setattr(self, event, hookimpl(_make_impl(getattr(callback, event), event)))

    def __repr__(self) -> str:
        return f"<bridge for {self.callback!r}>"


def overridden_events(cls: type) -> list[str]:
    """Events whose method ``cls`` overrides (base no-ops need no call), whether it derives
    from hooktrain's ``TrainerCallback`` or from transformers' own."""
    base = callback_base(cls) or TrainerCallback
    return [e for e in EVENT_NAMES if getattr(cls, e, None) is not getattr(base, e, None)]


def check_callback_hook_names(callback: object) -> None:
    """Reject a public ``on_*`` method that is no event: it would never be called."""
    for name in dir(type(callback)):
        if name.startswith("on_") and name not in EVENT_NAMES and callable(getattr(callback, name)):
            raise HookNameError(unknown_hook_message(type(callback).__qualname__, name))


def unknown_hook_message(plugin: str, hook: str) -> str:
    close = difflib.get_close_matches(hook, EVENT_NAMES, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return (
        f"Plugin {plugin!r} implements {hook!r}, which is not a hooktrain hook, so it would never "
        f"be called.{hint} Rename it to one of the hooks in docs/events.md (or prefix it with an "
        "underscore if it is a helper), or remove the plugin (pop_callback, disable_plugins)."
    )


def _make_impl(method: Callable[..., Any], event: str) -> Callable[..., Any]:
    """``impl(<common args>, <extra>)`` calling ``method(args, state, control, model=..., ...)``,
    the way HF's handler does."""
    extras = HF_EXTRA_ARGS.get(event, ())
    return forwarding_function(event, COMMON_ARGS + extras, method, keywords=_HF_KWARGS + extras)
