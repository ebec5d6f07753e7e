"""A Mermaid figure of the plugin order bands, generated from the ``Band`` enum.

``core/hooktrain/plugin_host/manager.py`` declares the bands (lowest runs first) with a ``#:``
comment above each member; both are read with :mod:`ast` and the source lines, so the figure
changes when the enum does and nothing is imported.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

ENUM_NAME = "Band"


class BandFigureError(Exception):
    """The ``Band`` enum is not where the figure expects it."""


def read_bands(path: Path) -> list[tuple[str, int, str]]:
    """``(name, value, comment)`` for each member of ``Band``, lowest value first."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    enum = next((node for node in ast.parse(source).body
                 if isinstance(node, ast.ClassDef) and node.name == ENUM_NAME), None)
    if enum is None:
        raise BandFigureError(f"{path} has no class {ENUM_NAME}; update docs/_build/band_figure.py "
                              "to where the plugin order bands are declared.")
    bands = []
    for node in enum.body:
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, int)):
            comment = lines[node.lineno - 2].strip()
            if not comment.startswith("#:"):
                raise BandFigureError(f"{path}, line {node.lineno}: band {node.targets[0].id} "
                                      "needs a '#:' comment above it saying what runs in it.")
            bands.append((node.targets[0].id, node.value.value, comment[2:].strip()))
    if not bands:
        raise BandFigureError(f"{path}: {ENUM_NAME} has no integer members.")
    return sorted(bands, key=lambda band: band[1])


def mermaid_figure(bands: list[tuple[str, int, str]]) -> str:
    """A left-to-right flowchart, one box per band, as a fenced ``mermaid`` block."""
    lines = ["```mermaid", "flowchart LR"]
    for name, _, comment in bands:
        label = "<br/>".join(textwrap.wrap(comment.replace('"', "#quot;"), 28))
        lines.append(f'    {name}["<b>{name}</b><br/>{label}"]')
    lines.append("    " + " --> ".join(name for name, _, _ in bands))
    lines.append("```")
    return "\n".join(lines)


def band_section(path: Path) -> str:
    """The figure and the rule it draws, for the hook reference."""
    return "\n".join([
        "Every event calls its implementations band by band, whatever order they were",
        "registered in (generated from the `Band` enum of the plugin manager):",
        "",
        mermaid_figure(read_bands(path)),
        "",
        "`@hookimpl(tryfirst=True)` / `trylast=True` move an implementation to the front or back",
        "of its own band, never out of it; ties keep registration order",
        "([Architecture, \"Order\"](../architecture.md#order)).",
    ])
