"""Run the Python examples of a Markdown page as a reader would (the docs' example convention).

The convention, also in docs/architecture.md ("Examples in the documentation"):

* Every fenced block tagged ``python`` (or ``py``, ``python3``) runs. The blocks of one page run
  in page order in one shared namespace, in a fresh temporary working directory that is also on
  the import path, as for a script saved there; the examples keep ``max_steps`` and data tiny so
  a page takes seconds.
* Whatever a block needs (a model, a data set, an environment variable) comes from a visible
  block earlier on the same page, usually under "Set-up for the examples on this page".
* A fenced block (any language) with a title, ```` ```toml title="config.toml" ````, is a file
  the page asks the reader to save: it is written under that name into the working directory
  when the page reaches it, and a Python one is not run (the blocks after it import it).
* A Python block that must not run is preceded by ``<!-- not run: REASON -->``; the reason is
  required. Shell blocks (``bash``) never run.
* ``<!-- requires: module_a, module_b -->`` says the page's examples need those installed (an
  integration); without them the core suite skips the page and the ``all`` suite runs it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
import traceback
import types
from collections.abc import Iterator
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
PYTHON_TAGS = {"python", "py", "python3"}
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n]*)$")
_TITLE = re.compile(r"""\btitle=(?P<q>["'])(?P<title>[^"']+)(?P=q)""")
_NOT_RUN = re.compile(r"^\s*<!--\s*not run:(?P<reason>.*?)-->\s*$")
_NOT_RUN_LOOSE = re.compile(r"^\s*<!--\s*not[\s_-]*run", re.IGNORECASE)
_REQUIRES = re.compile(r"^\s*<!--\s*requires:(?P<modules>[^>]*?)-->\s*$", re.MULTILINE)


class ExampleError(Exception):
    """A page's example is malformed or failed; the message names the file and the line."""


@dataclasses.dataclass(frozen=True)
class Block:
    """One fenced block: ``line`` is the line of its opening fence (1-based)."""

    line: int
    tag: str
    code: str
    title: str | None = None
    not_run: str | None = None  # the reason, for a Python block marked not to run

    @property
    def is_python(self) -> bool:
        return self.tag in PYTHON_TAGS


def relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPOSITORY))
    except ValueError:
        return str(path)


def blocks(path: Path) -> list[Block]:
    """Every fenced block of the page, with its title and not-run marker."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    marker: tuple[int, str] | None = None  # (line, reason) of a not-run marker awaiting a block
    index = 0
    while index < len(lines):
        text = lines[index]
        opening = _FENCE.match(text)
        if _NOT_RUN_LOOSE.search(text):
            if marker is not None:
                raise ExampleError(f"{relative(path)}:{marker[0]}: a not-run marker with no "
                                   "```python block right after it")
            matched = _NOT_RUN.match(text)
            if matched is None or not matched.group("reason").strip():
                raise ExampleError(f"{relative(path)}:{index + 1}: write a not-run marker as "
                                   "<!-- not run: REASON --> with the reason (e.g. needs a "
                                   "W&B account)")
            marker = (index + 1, matched.group("reason").strip())
        elif opening is None and text.strip() and marker is not None:
            raise ExampleError(f"{relative(path)}:{marker[0]}: a not-run marker must be the line "
                               "right before its ```python block")
        if opening is None:
            index += 1
            continue
        info = opening.group("info").strip()
        tag = info.split()[0].lower() if info else ""
        title = _TITLE.search(info)
        block = Block(index + 1, tag, "", title.group("title") if title else None,
                      marker[1] if marker else None)
        if marker is not None and not block.is_python:
            raise ExampleError(f"{relative(path)}:{marker[0]}: a not-run marker before a "
                               f"```{tag} block (only Python blocks run)")
        body, index = _block_body(lines, index, opening)
        block = dataclasses.replace(block, code=body)
        found.append(block)
        marker = None
    if marker is not None:
        raise ExampleError(f"{relative(path)}:{marker[0]}: a not-run marker with no block after it")
    return found


def _block_body(lines: list[str], start: int, opening: re.Match[str]) -> tuple[str, int]:
    """The dedented text of the block opening at ``start``, and the index after its closing."""
    fence, indent = opening.group("fence"), len(opening.group("indent"))
    closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
    body: list[str] = []
    index = start + 1
    while index < len(lines) and not closing.match(lines[index]):
        body.append(lines[index][indent:] if lines[index][:indent].isspace() else lines[index])
        index += 1
    return "\n".join(body) + "\n", index + 1


def required_modules(path: Path) -> list[str]:
    """The modules a ``<!-- requires: ... -->`` marker names."""
    text = path.read_text(encoding="utf-8")
    return [name.strip() for match in _REQUIRES.finditer(text)
            for name in match.group("modules").split(",") if name.strip()]


def run_page(path: Path, workdir: Path) -> int:
    """Run the page's examples in ``workdir``; return how many blocks ran.

    Raises :class:`ExampleError` naming the file, the block's line, the failing line and the
    exception.
    """
    path = path.resolve()  # before the working directory changes
    page = blocks(path)
    module = types.ModuleType("docs_example_" + re.sub(r"\W", "_", path.stem))
    module.__file__ = str(workdir / f"{path.stem}.py")
    ran = 0
    with _isolated(workdir, module):
        for block in page:
            if block.title is not None:
                (workdir / block.title).parent.mkdir(parents=True, exist_ok=True)
                (workdir / block.title).write_text(block.code, encoding="utf-8")
                continue
            if not block.is_python or block.not_run is not None:
                continue
            # leading newlines and the page's absolute path: tracebacks (and inspect.getsource,
            # which flytekit's @task calls) find the page's own lines
            code = compile("\n" * block.line + block.code, str(path), "exec")
            try:
                exec(code, module.__dict__)
            except Exception as exc:
                raise ExampleError(_failure(path, block, exc)) from exc
            ran += 1
    return ran


def _failure(path: Path, block: Block, exc: BaseException) -> str:
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__)
              if frame.filename == str(path)]
    where = f", line {frames[-1].lineno}" if frames else ""
    trace = "".join(traceback.format_exception(exc))
    return (f"{relative(path)}: the ```python block at line {block.line} failed{where}: "
            f"{type(exc).__name__}: {exc}\n\n{trace}")


@contextlib.contextmanager
def _isolated(workdir: Path, module: types.ModuleType) -> Iterator[None]:
    """The page's working directory, import path and module; the environment, the working
    directory and the modules imported from ``workdir`` are put back afterwards."""
    saved_environ, saved_path, saved_cwd = dict(os.environ), list(sys.path), os.getcwd()
    sys.modules[module.__name__] = module
    os.chdir(workdir)
    sys.path.insert(0, str(workdir))
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        sys.path[:] = saved_path
        os.environ.clear()
        os.environ.update(saved_environ)
        for name, loaded in list(sys.modules.items()):
            if loaded is module or str(getattr(loaded, "__file__", "") or "").startswith(
                    str(workdir)):
                del sys.modules[name]
