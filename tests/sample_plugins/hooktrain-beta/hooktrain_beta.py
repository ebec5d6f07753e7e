"""Sample plugin ``beta``: the module itself is the plugin (module-level hook functions)."""

from __future__ import annotations

import os

from hooktrain import hookimpl

EVENTS: list[str] = []


def _trace(line: str) -> None:
    path = os.environ.get("SAMPLE_TRACE")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"beta {line}\n")


_trace("imported")


def _record(event: str) -> None:
    EVENTS.append(event)
    _trace(event)


@hookimpl
def on_train_begin(state):
    _record("on_train_begin")


@hookimpl
def on_log(logs):
    _record("on_log")


@hookimpl
def on_train_end(state):
    _record("on_train_end")
