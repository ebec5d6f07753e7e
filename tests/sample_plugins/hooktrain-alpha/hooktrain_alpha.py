"""Sample plugin ``alpha``: a class with a settings dataclass.

It records the events it sees on the instance and in ``$SAMPLE_TRACE``, and raises
``RuntimeError`` in the hook named by ``$ALPHA_RAISE_IN`` (to test isolation).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from hooktrain import hookimpl


def _trace(line: str) -> None:
    path = os.environ.get("SAMPLE_TRACE")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"alpha {line}\n")


_trace("imported")


@dataclass
class AlphaSettings:
    level: int = field(default=1, metadata={"env": "ALPHA_LEVEL"})
    tag: str = "plain"
    ratio: float = 0.5


class AlphaPlugin:
    settings = AlphaSettings

    def __init__(self, settings: AlphaSettings | None = None) -> None:
        self.config = settings if settings is not None else AlphaSettings()
        self.events: list[str] = []
        _trace(f"init level={self.config.level} tag={self.config.tag} ratio={self.config.ratio}")

    def _record(self, event: str) -> None:
        self.events.append(event)
        _trace(event)
        if os.environ.get("ALPHA_RAISE_IN") == event:
            raise RuntimeError(f"alpha fails in {event}")

    @hookimpl
    def on_train_begin(self, state):
        self._record("on_train_begin")

    @hookimpl
    def on_log(self, state, logs):
        self._record("on_log")

    @hookimpl
    def on_train_end(self, state):
        self._record("on_train_end")
