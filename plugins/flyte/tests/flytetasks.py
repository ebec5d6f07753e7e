"""Running code inside a real Flyte task, called in process (flytekit's local execution), and
reading back what it left: the task's decks as tables, its checkpoint location's files.

The ``@task`` functions live here, at module level as flytekit requires; ``in_task`` runs a body in
one of them. ``TASK`` holds what the last execution left behind (its decks even when it failed).
"""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import torch
from flytekit import current_context, task
from flytekit.core.checkpointer import SyncCheckpoint

from hooktrain import TrainerCallback
from hooktrain.testing import TinyRegressor

# ---- running code inside a real Flyte task ---------------------------------------------------

TASK: dict[str, Any] = {}  # the body the next task execution runs; what it left behind


@task(enable_deck=True, deck_fields=[])  # flytekit's own decks (inputs, dependencies, ...) cost
def deck_task() -> None:                   # seconds per call: only the plugin's decks here
    _run_body()


@task
def plain_task() -> None:  # enable_deck is off by default
    _run_body()


def _run_body() -> None:
    try:
        TASK["result"] = TASK.pop("body")()
    finally:
        TASK["decks"] = {deck.name: deck.html for deck in current_context().decks}


def in_task(body: Callable[[], Any], flyte_task: Any = deck_task) -> tuple[Any, dict[str, str]]:
    """Run ``body`` inside ``flyte_task`` called directly (in process); its result and decks."""
    TASK.clear()
    TASK["body"] = body
    flyte_task()
    return TASK["result"], TASK["decks"]


# ---- reading back ----------------------------------------------------------------------------


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def read_table(html: str) -> list[dict[str, str]]:
    """The one HTML table in a deck as rows ``{column: text}``, empty cells left out."""
    parser = _Tables()
    parser.feed(html)
    (table,) = parser.tables
    header, *rows = table
    return [{key: text for key, text in zip(header, row) if text != ""} for row in rows]


def as_text(entries: list[dict[str, Any]]) -> list[dict[str, str]]:
    """What a table of ``entries`` shows: floats in full (``repr``), the rest as ``str``."""
    return [{k: repr(v) if isinstance(v, float) else str(v) for k, v in e.items()} for e in entries]


def read_checkpoint(location: Path, into: Path) -> Path:
    """The files at a task's checkpoint location, as a retried task gets them."""
    into.mkdir(parents=True)
    restored = SyncCheckpoint(checkpoint_dest=str(into.parent / "unused"),
                              checkpoint_src=str(location)).restore(into)
    assert restored is not None
    return restored


def files(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def seeded_model() -> TinyRegressor:
    torch.manual_seed(0)
    return TinyRegressor()


class Boom(TrainerCallback):
    """Fails the training at ``global_step == at``; keeps the state it saw."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.state: Any = None

    def on_step_end(self, args, state, control, **kwargs):
        self.state = state
        if state.global_step == self.at:
            raise RuntimeError("boom")


SAVING = {"report_to": ["flyte"], "save_strategy": "steps", "save_steps": 4}
