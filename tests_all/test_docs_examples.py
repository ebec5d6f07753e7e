"""The Python examples of the integration pages run as written, where every plugin is installed.

The convention and the runner are tests/markdown_examples.py's (docs/architecture.md, "Examples
in the documentation"): one page's blocks run in order in one namespace, in a fresh temporary
working directory; a page sets whatever environment its examples need (an offline mode) in a
visible block; blocks that need an account or a service are marked
``<!-- not run: REASON -->``. The core pages run in tests/test_docs_examples.py; the ones marked
``<!-- requires: ... -->`` (they need an integration) run here too.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

# the shared runner lives beside the core tests; tests_all has no package of its own
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from markdown_examples import (  # noqa: E402
    REPOSITORY,
    ExampleError,
    relative,
    required_modules,
    run_page,
)

INTEGRATIONS = REPOSITORY / "docs" / "integrations"
PAGES = [*sorted(p for p in INTEGRATIONS.glob("*.md") if p.name != "adding-an-integration.md"),
         *sorted(p for p in [REPOSITORY / "README.md", *(REPOSITORY / "docs").glob("*.md")]
                 if required_modules(p))]


def needed_modules(page: Path) -> list[str]:
    """An integration page needs its plugin (``azure_ml.md``: ``hooktrain_azure_ml``)."""
    own = [f"hooktrain_{page.stem}"] if page.parent == INTEGRATIONS else []
    return own + required_modules(page)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("page", PAGES, ids=[relative(p) for p in PAGES])
def test_page_examples_run(page: Path, tmp_path: Path) -> None:
    missing = [name for name in needed_modules(page) if importlib.util.find_spec(name) is None]
    if missing:  # only outside the all environment, which installs every plugin
        pytest.skip(f"{relative(page)} needs {', '.join(missing)} installed")
    try:
        run_page(page, tmp_path)
    except ExampleError as exc:  # the message names the page, the line and the error
        pytest.fail(str(exc), pytrace=False)
