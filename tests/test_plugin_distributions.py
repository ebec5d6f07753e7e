"""The fourteen distributions under ``plugins/`` use only the public API, and stay small.

A plugin imports ``hooktrain`` and ``hooktrain.plugin`` (its tests add ``hooktrain.testing``),
never the machinery behind them, so the core can change without breaking a published plugin
(docs/architecture.md, "Layout").
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
DISTRIBUTIONS = sorted(p.parent.name for p in PLUGINS.glob("*/pyproject.toml"))
PUBLIC = {"hooktrain", "hooktrain.plugin", "hooktrain.testing"}
MAX_SOURCE_LINES = 220  # "about 200": what is specific to one tracking library
#: Distributions allowed more, and why.
LARGER = {
    # Kubeflow has no client library: the plugin is its own throttled HTTP status sender (one
    # pending slot, outages, refusals surfaced at the next hook, a bounded wait at exit).
    "kubeflow": 290,
}


def hooktrain_imports(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        modules.update(n for n in names if n == "hooktrain" or n.startswith("hooktrain."))
    return modules


def sources(name: str, folder: str) -> list[Path]:
    return [p for p in sorted((PLUGINS / name / folder).rglob("*.py")) if "build" not in p.parts]


def test_every_distribution_is_checked():
    assert len(DISTRIBUTIONS) == 14, DISTRIBUTIONS


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_a_plugin_imports_only_the_public_api(name):
    wrong = {str(path.relative_to(PLUGINS)): sorted(hooktrain_imports(path) - PUBLIC)
             for path in sources(name, "src") + sources(name, "tests")}
    assert not {path: mods for path, mods in wrong.items() if mods}, (
        "plugins import hooktrain, hooktrain.plugin and hooktrain.testing only")


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_a_plugin_source_stays_small(name):
    lines = sum(len(path.read_text(encoding="utf-8").splitlines()) for path in sources(name, "src"))
    assert lines <= LARGER.get(name, MAX_SOURCE_LINES), f"plugins/{name}/src holds {lines} lines"


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_a_plugin_declares_its_entry_point_and_python(name):
    project = tomllib.loads((PLUGINS / name / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
    (target,) = project["entry-points"]["hooktrain.plugins"].values()
    assert target.split(":")[0] == f"hooktrain_{name}"
