"""Plugin state in checkpoints: saved for every stateful plugin, restored on resume.

A plugin is stateful when it is an :class:`~hooktrain.ExportableState` (HF's protocol) or has
``state_dict()`` and ``load_state_dict()``. Each instance has its own key: its ``state_key``
property when it has one (as Lightning's callbacks do), else its class's qualified name and its
ordinal among the instances of that class (``Counter#0``, ``Counter#1``); a ``state_key``
that repeats gets its ordinal appended (``key#1``). State is *replaced*
at every save, never appended (HF #33875), and restored onto the existing instance.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from typing import Any

from hooktrain.errors import CheckpointError
from hooktrain.plugin_host.manager import PluginRecord
from hooktrain.plugin_host.timings import STATE_KEY as TIMINGS_KEY
from hooktrain.trainer_callback import foreign_base
from hooktrain.trainer_state import ExportableState, TrainerControl

logger = logging.getLogger("hooktrain")

CONTROL_KEY = "TrainerControl"


def is_exportable(plugin: object) -> bool:
    """HF's state protocol: hooktrain's ``ExportableState`` or transformers' (by its MRO)."""
    return isinstance(plugin, ExportableState) or (
        foreign_base(type(plugin), "ExportableState") is not None)


def is_stateful(plugin: object) -> bool:
    if is_exportable(plugin):
        return True
    return callable(getattr(plugin, "state_dict", None)) and callable(
        getattr(plugin, "load_state_dict", None)
    )


def keyed_plugins(records: list[PluginRecord]) -> dict[str, object]:
    """Stateful plugins by state key, in dispatch order."""
    seen: Counter[str] = Counter()
    keyed: dict[str, object] = {}
    for record in records:
        plugin = record.plugin
        if not is_stateful(plugin):
            continue
        key = getattr(plugin, "state_key", None)
        if not isinstance(key, str):
            name = type(plugin).__qualname__
            key = f"{name}#{seen[name]}"
            seen[name] += 1
        if key in keyed:  # equal keys (two identical EarlyStoppingCallbacks): add the ordinal
            seen[key] += 1
            key = f"{key}#{seen[key]}"
        keyed[key] = plugin
    return keyed


def collect(records: list[PluginRecord], control: TrainerControl) -> dict[str, Any]:
    """Every stateful plugin's state, plus the control, as JSON-ready data."""
    states: dict[str, Any] = {CONTROL_KEY: control.state()}
    for key, plugin in keyed_plugins(records).items():
        state = plugin.state() if is_exportable(plugin) else plugin.state_dict()
        try:
            json.dumps(state)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(
                f"Plugin state {key!r} cannot be saved as JSON ({exc}); return plain numbers, "
                "strings, lists and dicts from state() / state_dict()."
            ) from exc
        states[key] = state
    return states


def restore(records: list[PluginRecord], stored: dict[str, Any], control: TrainerControl) -> None:
    """Put each stored state back onto the plugin with the same key; warn on mismatches."""
    if CONTROL_KEY in stored:
        # Only the stop survives: the per-step flags (log/evaluate/save) were acted on by the
        # step that wrote this checkpoint.
        saved = stored[CONTROL_KEY].get("args", {})
        control.should_training_stop = bool(saved.get("should_training_stop", False))
    plugins = keyed_plugins(records)
    matches = {key: key for key in plugins if key in stored}
    # HF 5.x matches by class: a stored state whose key no plugin has now (a default
    # EarlyStoppingCallback() resuming a run saved with patience 3) goes to the next unmatched
    # plugin of the same class, in order.
    spare = [key for key in stored
             if key not in (CONTROL_KEY, TIMINGS_KEY) and key not in matches.values()]
    for key, plugin in plugins.items():
        if key in matches:
            continue
        same_class = [k for k in spare if _class_of_key(k) == type(plugin).__qualname__]
        if same_class:
            matches[key] = same_class[0]
            spare.remove(same_class[0])
    if spare:
        logger.warning(
            "The checkpoint holds state for plugins this run does not have; it is ignored: %s.",
            ", ".join(spare),
        )
    for key, plugin in plugins.items():
        if key not in matches:
            logger.warning(
                "Plugin state %r is not in the checkpoint; the plugin starts fresh.", key
            )
            continue
        state = stored[matches[key]]
        if is_exportable(plugin):
            _rebuild(plugin, state)
        else:
            plugin.load_state_dict(state)  # type: ignore[attr-defined]


def _class_of_key(key: str) -> str:
    """The class part of a state key: ``Counter#1`` and ``EarlyStoppingCallback[...]``."""
    return re.split(r"[\[#]", key, maxsplit=1)[0]


def _rebuild(plugin: Any, state: dict[str, Any]) -> None:
    """HF 5.x's restore, onto the same object: ``type(plugin)(**args)``, then the attributes.

    The saved arguments win over the ones given now (a default ``EarlyStoppingCallback()``
    resumes with the saved patience); a class whose constructor does not take them keeps its
    own and gets the attributes only.
    """
    arguments = state.get("args", {}) or {}
    if arguments:
        try:
            fresh = type(plugin)(**arguments)
        except TypeError as exc:
            logger.warning("%s cannot be rebuilt from its saved arguments (%s); only its saved "
                           "attributes are restored.", type(plugin).__qualname__, exc)
        else:
            vars(plugin).update(vars(fresh))
    for name, value in state.get("attributes", {}).items():
        setattr(plugin, name, value)
