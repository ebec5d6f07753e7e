"""Rank-zero-only plugins cannot steer a run of several processes.

A logging plugin runs on world rank zero only; a change it makes to ``control`` would reach no
other process, and the processes would part ways (one stops, the others wait in their next
collective). The dispatcher wraps such a plugin's hooks with :meth:`SteeringGuard.
_without_steering`, which undoes the change, in place or returned, and warns once per plugin
and flag, naming the fix (``hooktrain_all_ranks = True``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from hooktrain.plugin_host.manager import PluginRecord
from hooktrain.trainer_state import TrainerControl

logger = logging.getLogger("hooktrain")

_CONTROL_FLAGS = tuple(field.name for field in dataclasses.fields(TrainerControl))


class SteeringGuard:
    """Mixed into the dispatcher, which provides ``control``, ``world_size`` and the set of
    warnings already given."""

    control: TrainerControl
    world_size: int
    _warned_steering: set[tuple[str, str]]

    def _without_steering(
        self, function: Callable[..., Any], hook: str, record: PluginRecord
    ) -> Callable[..., Any]:
        """Undo what a rank-zero-only plugin does to ``control``, and say so once per flag."""

        def guarded(*args: Any) -> Any:
            control = self.control
            before = tuple(getattr(control, name) for name in _CONTROL_FLAGS)
            result = None
            try:  # undone even when the plugin raises after setting a flag
                result = function(*args)
            finally:
                after = result if isinstance(result, TrainerControl) else control
                for name, old in zip(_CONTROL_FLAGS, before):
                    new = getattr(after, name)
                    if new != old:
                        self._say_not_steering(record, hook, name, new)
                    setattr(control, name, old)
            if isinstance(result, TrainerControl):
                return None  # the control it returned is dropped: the flags are the old ones
            return result

        return guarded

    def _say_not_steering(self, record: PluginRecord, hook: str, flag: str, value: bool) -> None:
        if (record.name, flag) in self._warned_steering:
            return
        self._warned_steering.add((record.name, flag))
        logger.warning(
            "Plugin %s runs on rank zero only and changed control.%s to %s in %s; the other %d "
            "processes would not see it, so the change is ignored. A plugin that steers "
            "training must run on every rank: set hooktrain_all_ranks = True on it.",
            record.label, flag, value, hook, self.world_size - 1,
        )
