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


# ---- ready for an index: the core distribution and the fourteen plugins -------------------------

ROOT = PLUGINS.parent
#: every distribution: the core at the root, then the plugins, by short name
PROJECTS = {"hooktrain": ROOT, **{name: PLUGINS / name for name in DISTRIBUTIONS}}
DOCS = "https://hooktrain.github.io/hooktrain/"
REPOSITORY = "https://github.com/hooktrain/hooktrain"
CLASSIFIERS = {
    "Development Status :: 4 - Beta",
    "Intended Audience :: Developers",
    "Intended Audience :: Science/Research",
    "Programming Language :: Python :: 3.11",
    "Programming Language :: Python :: 3.12",
    "Programming Language :: Python :: 3.13",
    "Topic :: Scientific/Engineering :: Artificial Intelligence",
    "Typing :: Typed",
}


def pyproject(name: str) -> dict:
    return tomllib.loads((PROJECTS[name] / "pyproject.toml").read_text(encoding="utf-8"))


def package(name: str) -> Path:
    return ROOT / "core" / "hooktrain" if name == "hooktrain" else (
        PLUGINS / name / "src" / f"hooktrain_{name}")


@pytest.mark.parametrize("name", PROJECTS)
def test_a_distribution_declares_its_metadata(name):
    config = pyproject(name)
    project = config["project"]
    # the SPDX form (PEP 639) needs setuptools 77, and rules out the License :: classifiers
    assert project["license"] == "Apache-2.0"
    assert config["build-system"]["requires"] == ["setuptools>=77"]
    classifiers = set(project["classifiers"])
    assert classifiers >= CLASSIFIERS, sorted(CLASSIFIERS - classifiers)
    assert not [c for c in classifiers if c.startswith("License ::")]
    # pytest finds the core's fixtures through its pytest11 entry point; no plugin has one
    assert ("Framework :: Pytest" in classifiers) == (name == "hooktrain")
    assert ("pytest11" in project.get("entry-points", {})) == (name == "hooktrain")
    assert project["keywords"] and project["description"]


@pytest.mark.parametrize("name", PROJECTS)
def test_a_distribution_links_its_repository_and_docs(name):
    urls = pyproject(name)["project"]["urls"]
    assert urls["Homepage"] == urls["Repository"] == REPOSITORY
    assert urls["Issues"] == f"{REPOSITORY}/issues"
    assert urls["Changelog"].startswith(REPOSITORY)
    page = DOCS if name == "hooktrain" else f"{DOCS}integrations/{name}/"
    assert urls["Documentation"] == page
    if name != "hooktrain":
        assert (ROOT / "docs" / "integrations" / f"{name}.md").is_file()


@pytest.mark.parametrize("name", PROJECTS)
def test_a_distribution_ships_py_typed(name):
    """The marker exists and is package data (tox -e packaging checks it is in the wheel)."""
    assert (package(name) / "py.typed").is_file()
    package_data = pyproject(name)["tool"]["setuptools"]["package-data"]
    assert package_data == {package(name).name: ["py.typed"]}


@pytest.mark.parametrize("name", PROJECTS)
def test_a_distribution_ships_the_license(name):
    """setuptools puts a LICENSE beside pyproject.toml into the sdist and the wheel; a plugin
    cannot point at the repository's, so each holds a copy of it."""
    assert (PROJECTS[name] / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes()


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_a_plugin_readme_says_how_to_install_and_turn_it_on(name):
    """The README is the index page: install line, report_to, settings table, docs link."""
    project = pyproject(name)["project"]
    assert project["readme"] == "README.md"
    readme = (PLUGINS / name / "README.md").read_text(encoding="utf-8")
    assert readme.startswith(f"# {project['name']}\n")
    assert f"pip install {project['name']}\n" in readme
    for needed in ("## What it logs", f'report_to=["{name}"]', 'report_to="all"',
                   f"[plugins.{name}]", f"{DOCS}integrations/{name}/"):
        assert needed in readme, f"plugins/{name}/README.md lacks {needed!r}"
    # relative links break on the index's page
    assert "](../" not in readme and "](./" not in readme
