"""Every Python example in README.md and docs/ runs as written.

The convention (tests/markdown_examples.py has it in full, docs/architecture.md in short): a
```python block runs; one page's blocks run in order in one namespace, in a fresh temporary
working directory; what a block needs comes from a visible set-up block earlier on the page; a
block preceded by ``<!-- not run: REASON -->`` is skipped, with its reason required; a block
with ``title="NAME"`` is a file the reader saves, written under that name; shell blocks never
run. This module runs the pages of the core environment; the integration pages, which need
their plugin installed, run in tests_all/test_docs_examples.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from markdown_examples import (
    REPOSITORY,
    ExampleError,
    blocks,
    relative,
    required_modules,
    run_page,
)

DOCS = REPOSITORY / "docs"
#: The pages of this environment: the README, docs/*.md and the integration how-to (generated
#: reference pages are not examples).
PAGES = [REPOSITORY / "README.md", *sorted(DOCS.glob("*.md")),
         DOCS / "integrations" / "adding-an-integration.md"]
#: Every page with examples, for the spelling check (generated reference pages excepted).
ALL_PAGES = [REPOSITORY / "README.md",
             *sorted(p for p in DOCS.rglob("*.md") if "reference" not in p.relative_to(DOCS).parts)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("page", PAGES, ids=[relative(p) for p in PAGES])
def test_page_examples_run(page: Path, tmp_path: Path) -> None:
    missing = [name for name in required_modules(page) if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"{relative(page)} needs {', '.join(missing)} installed (the all environment "
                    "runs it: tests_all/test_docs_examples.py)")
    try:
        run_page(page, tmp_path)
    except ExampleError as exc:  # the message names the page, the line and the error
        pytest.fail(str(exc), pytrace=False)


@pytest.mark.parametrize("page", ALL_PAGES, ids=[relative(p) for p in ALL_PAGES])
def test_python_blocks_are_spelled_python(page: Path) -> None:
    """```py and ```python3 would run too, but one spelling keeps the pages greppable."""
    odd = [f"line {block.line}: ```{block.tag}" for block in blocks(page)
           if block.is_python and block.tag != "python"]
    assert not odd, f"{relative(page)}: write ```python for {', '.join(odd)}"


def _page(tmp_path: Path, text: str) -> Path:
    page = tmp_path / "page.md"
    page.write_text(text, encoding="utf-8")
    return page


def test_a_failing_block_names_the_page_the_block_and_the_line(tmp_path: Path) -> None:
    page = _page(tmp_path, "# Page\n\n```python\nx = 1\n```\n\n```python\ny = x\nz = model\n```\n")
    with pytest.raises(ExampleError, match=r"page\.md: the ```python block at line 7 failed, "
                                           r"line 9: NameError: name 'model' is not defined"):
        run_page(page, tmp_path)


def test_a_not_run_marker_needs_a_reason_and_a_python_block(tmp_path: Path) -> None:
    for text, message in [
        ("<!-- not run: -->\n```python\nraise SystemExit\n```\n", "with the reason"),
        ("<!-- not run: needs W&B -->\n```bash\nwandb login\n```\n", "only Python blocks run"),
        ("<!-- not run: needs W&B -->\n\nSome prose.\n```python\npass\n```\n", "right before"),
    ]:
        with pytest.raises(ExampleError, match=message):
            blocks(_page(tmp_path, text))
    marked = _page(tmp_path, "<!-- not run: needs a W&B account -->\n```python\n1 / 0\n```\n")
    assert run_page(marked, tmp_path) == 0


def test_a_titled_block_is_a_file_the_next_blocks_import(tmp_path: Path) -> None:
    page = _page(tmp_path, '```python title="helpers.py"\nANSWER = 42\n```\n\n'
                           "```py\nfrom helpers import ANSWER\nassert ANSWER == 42\n```\n")
    workdir = tmp_path / "work"
    workdir.mkdir()
    assert run_page(page, workdir) == 1
    assert (workdir / "helpers.py").read_text() == "ANSWER = 42\n"
    assert [block.tag for block in blocks(page)] == ["python", "py"]
