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
