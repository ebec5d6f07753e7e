"""HF's ``CallbackHandler`` surface on the dispatcher, for Trainer subclasses that call it.

Code written for transformers calls ``trainer.callback_handler`` directly: ``callbacks``,
``add_callback``, ``pop_callback``, ``remove_callback``, the common objects (``model``,
``optimizer``, ...) and ``on_<event>(args, state, control, **kwargs)``, which returns the control.
:func:`accepts_hf_call` lets each typed event method of
:class:`~hooktrain.plugin_host.dispatch.HookDispatcher` take that form too, so such a call runs the
same plugins, in the same order, as the loop's own call.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from hooktrain.events import COMMON_ARGS
from hooktrain.plugin_host.manager import PluginRecord

logger = logging.getLogger("hooktrain")

# HF's keyword for each event's own value, where hooktrain's typed method takes it positionally
_HF_VALUE = {
    "on_log": "logs", "on_pre_log": "logs", "on_evaluate": "metrics", "on_predict": "metrics",
}


def _is_hf_call(args: tuple[Any, ...]) -> bool:
    """``(args, state, control, ...)``: a TrainingArguments first (anything with output_dir and
    a train batch size; no event's own value looks like that)."""
    return len(args) >= 3 and hasattr(args[0], "output_dir") and hasattr(
        args[0], "per_device_train_batch_size")


def accepts_hf_call(method: Callable[..., Any]) -> Callable[..., Any]:
    """Let ``hooks.on_log(logs)`` also be called as ``hooks.on_log(args, state, control, logs)``.

    In the HF form the given control becomes the one plugins see (HF passes the Trainer's), the
    event's value is taken positionally or by HF's keyword, other keywords are ignored as HF's
    handler passes its own objects, and the control is returned.
    """
    event = method.__name__

    @functools.wraps(method)
    def dispatch(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_hf_call(args):
            return method(self, *args, **kwargs)
        _, state, control, *rest = args
        self.control = control
        if state is not None:
            self.kwargs["state"] = state
        keyword = _HF_VALUE.get(event)
        value = rest[0] if rest else kwargs.get(keyword) if keyword else None
        if keyword is not None:
            method(self, value if value is not None else {})
        elif event in ("on_step_end", "on_save", "on_load_checkpoint", "on_exception"):
            method(self, value)
        else:
            method(self)
        return self.control

    return dispatch


class CallbackHandlerSurface:
    """``callbacks``, ``add_callback``/``pop_callback``/``remove_callback`` and the common objects,
    as attributes of the dispatcher (HF's names)."""

    manager: Any
    kwargs: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        # model, processing_class, optimizer, lr_scheduler, train_dataloader, eval_dataloader
        if name in COMMON_ARGS[3:] and "kwargs" in self.__dict__:
            return self.kwargs[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def callbacks(self) -> list[Any]:
        """Every plugin object in dispatch order (HF's ``CallbackHandler.callbacks``)."""
        return [record.plugin for record in self.manager.records()]

    @property
    def callback_list(self) -> str:
        """Their class names, one per line (HF's ``CallbackHandler.callback_list``)."""
        return "\n".join(type(plugin).__name__ for plugin in self.callbacks)

    def add_callback(self, callback: Any) -> None:
        """Add a plugin: a class (instantiated with no arguments) or an instance (HF semantics)."""
        plugin = callback() if isinstance(callback, type) else callback
        cls = type(plugin)
        if any(type(p) is cls for p in self.callbacks):
            logger.warning(
                "You are adding a %s to the callbacks of this Trainer, but there is already one. "
                "The current list of callbacks is:\n%s", cls.__name__, self.callback_list,
            )
        self.manager.register_plugin(plugin)

    def pop_callback(self, callback: Any) -> Any | None:
        """Remove and return the first plugin matching a class (isinstance) or an instance."""
        record = self._find_record(callback)
        if record is None:
            return None
        self.manager.unregister_plugin(record)
        return record.plugin

    def remove_callback(self, callback: Any) -> None:
        """Remove a plugin; an instance that is not registered raises ``ValueError`` (as HF)."""
        record = self._find_record(callback)
        if record is None:
            if isinstance(callback, type):
                return
            raise ValueError(f"{callback!r} is not among this Trainer's callbacks.")
        self.manager.unregister_plugin(record)

    def _find_record(self, callback: Any) -> PluginRecord | None:
        for record in self.manager.records():
            if isinstance(callback, type):
                if isinstance(record.plugin, callback):
                    return record
            elif record.plugin == callback:
                return record
        return None
