"""The module rules of ``core/hooktrain`` (docs/architecture.md), checked on the source's AST.

* no import cycles between modules;
* no module imports another module's underscore names;
* only the Trainer's users (``cli``, ``demo``, ``testing`` and the package's lazy ``__init__``)
  import ``Trainer`` at run time; the Trainer's collaborators name it for type checking only;
* no ``self: Trainer`` methods (the Trainer is composed, not mixed together);
* every module is under 400 lines.

Imports inside ``if TYPE_CHECKING:`` and ``if __name__ == "__main__":`` do not count; imports
inside functions do (a cycle hidden in a function is still a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "core"
PACKAGE = CORE / "hooktrain"
TRAINER_USERS = {"hooktrain", "hooktrain.cli", "hooktrain.demo", "hooktrain.testing",
                 "hooktrain.trainer"}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(CORE).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


MODULES = _modules()


def _guarded(tree: ast.AST) -> set[int]:
    """Nodes under ``if TYPE_CHECKING:`` or ``if __name__ == "__main__":``."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = ast.unparse(node.test)
            if "TYPE_CHECKING" in test or "__main__" in test:
                skipped.update(id(sub) for sub in ast.walk(node))
    return skipped


def _imports(path: Path) -> list[tuple[str, str | None, int]]:
    """Each run-time import as ``(module, imported name or None, line)``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _guarded(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.extend((node.module, alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend((alias.name, None, node.lineno) for alias in node.names)
    return found


def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for module, imported, _ in _imports(path):
            full = f"{module}.{imported}" if imported else module
            target = full if full in MODULES else module
            if target in MODULES and target != name:
                edges[name].add(target)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def test_the_checker_sees_the_package() -> None:
    assert {"hooktrain.trainer", "hooktrain.loop", "hooktrain.checkpoint"} <= set(MODULES)


def test_no_import_cycles() -> None:
    assert _cycles(_edges()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_another_modules_underscore_names() -> None:
    offenders = [
        f"{MODULES[name].relative_to(CORE)}:{line}: {module}.{imported}"
        for name in MODULES
        for module, imported, line in _imports(MODULES[name])
        if module.startswith("hooktrain") and imported is not None
        and imported.startswith("_") and not imported.startswith("__")
    ]
    offenders += [
        f"{MODULES[name].relative_to(CORE)}:{line}: import {module}"
        for name in MODULES
        for module, imported, line in _imports(MODULES[name])
        if imported is None and module.startswith("hooktrain")
        and any(part.startswith("_") for part in module.split("."))
    ]
    assert offenders == []


def test_only_the_trainers_users_import_it_at_run_time() -> None:
    offenders = []
    for name, path in MODULES.items():
        if name in TRAINER_USERS:
            continue
        for module, imported, line in _imports(path):
            if (module == "hooktrain.trainer"
                    or (module == "hooktrain" and imported in ("Trainer", "trainer"))):
                offenders.append(f"{path.relative_to(CORE)}:{line}")
    assert offenders == []


def test_no_method_annotates_self_as_the_trainer() -> None:
    offenders = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.args.args:
                first = node.args.args[0]
                if first.arg == "self" and first.annotation is not None and ast.unparse(
                        first.annotation).strip("'\"") == "Trainer":
                    offenders.append(f"{path.relative_to(CORE)}:{node.lineno} {node.name}")
    assert offenders == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_is_under_the_line_limit(name: str) -> None:
    lines = MODULES[name].read_text(encoding="utf-8").count("\n")
    assert lines < MAX_LINES, f"{MODULES[name].relative_to(CORE)} has {lines} lines"


def test_every_module_is_described_in_the_architecture_page() -> None:
    """docs/architecture.md, "Layout", has one line per module: a new one must be added there."""
    page = (CORE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    layout = page.split("## Layout", 1)[1].split("\n## ", 1)[0]
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("callbacks/") and relative != "callbacks/__init__.py":
            listed = relative.removeprefix("callbacks/")  # named in the callbacks/ row
        elif relative.endswith("/__init__.py"):
            listed = relative.removesuffix("__init__.py")  # the package's row
        else:
            listed = relative
        if f"`{listed}" not in layout and listed not in layout:
            missing.append(relative)
    assert not missing, f"add these modules to docs/architecture.md, Layout: {missing}"
