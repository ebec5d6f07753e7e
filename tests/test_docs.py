"""Docs cannot drift from the hook specs (datasette's test_docs idea)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from hooktrain import hookspecs
from hooktrain.events import EVENT_NAMES, EXTRA_ARGS

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize("event", EVENT_NAMES)
def test_every_hook_is_documented_with_its_arguments(event: str) -> None:
    text = (DOCS / "events.md").read_text()
    extras = "".join(f", {name}" for name in EXTRA_ARGS[event])
    signature = f"`{event}(args, state, control, ...{extras})`"
    if not extras:
        signature = f"`{event}(args, state, control, ...)`"
    assert signature in text


@pytest.mark.parametrize("event", EVENT_NAMES)
def test_every_hookspec_has_a_docstring(event: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, event))
    assert doc and len(doc.splitlines()[0]) > 10


def test_loop_diagram_in_docs_matches_the_module_docstring() -> None:
    diagram = hookspecs.__doc__.split("::", 1)[1].split("\n\n", 2)[1]
    body = [line.strip() for line in diagram.splitlines() if line.strip()]
    docs = (DOCS / "events.md").read_text()
    for line in body:
        assert line in docs, f"docs/events.md lacks the diagram line {line!r}"


def test_ci_runs_the_test_command_the_readme_shows() -> None:
    """The README's two bash blocks are the set-up: the demo, then the tests; CI runs the second."""
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    blocks = [block.split("```", 1)[0].strip() for block in readme.split("```bash\n")[1:]]
    assert len(blocks) >= 2 and "hooktrain demo" in blocks[0]
    test_command = blocks[1]
    assert "tox" in test_command
    ci = [line.strip() for line in (root / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci, f".ci/run must run the README's test command: {test_command}"
