"""Sample plugin ``omega``: the entry point names an instance; it runs on every rank.

Its distribution name (aaa-omega) sorts first and its entry-point name last, so a test can tell
ordering by entry-point name from ordering by distribution name.
"""

from __future__ import annotations

import os

from hooktrain import hookimpl


def _trace(line: str) -> None:
    path = os.environ.get("SAMPLE_TRACE")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"omega {line}\n")


_trace("imported")


class Omega:
    hooktrain_all_ranks = True

    def __init__(self) -> None:
        self.events: list[str] = []

    def _record(self, event: str) -> None:
        self.events.append(event)
        _trace(event)

    @hookimpl
    def on_train_begin(self, state):
        self._record("on_train_begin")

    @hookimpl
    def on_log(self, logs):
        self._record("on_log")


PLUGIN = Omega()
