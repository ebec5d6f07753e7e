"""mkdocs hooks (``hooks:`` in mkdocs.yml): the generated reference pages.

``on_files`` adds ``reference/hooks.md``, ``reference/cli.md`` and
``reference/training-arguments.md``, built from the code by the modules beside this file; they
exist only in the built site, never in ``docs/``. An error in a generator (a hookspec without a
docstring, a field without help) stops the build with its message.

``on_page_content`` shows the core's reStructuredText roles (``:class:`~hooktrain.X```) in
mkdocstrings' pages as plain code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# The generators beside this file, and the package from this checkout (not an installed copy).
# mkdocs restores sys.path once this module has run, so everything is imported here.
sys.path[:0] = [str(HERE), str(ROOT / "core")]

from args_reference import ArgumentDocError, render_arguments_page  # noqa: E402
from band_figure import BandFigureError, band_section  # noqa: E402
from cli_reference import render_cli_page  # noqa: E402
from hook_reference import HookDocError, read_hookspecs, render_hooks_page  # noqa: E402
from mkdocs.exceptions import PluginError  # noqa: E402
from mkdocs.structure.files import File, Files  # noqa: E402
from rst_inline import html_roles_to_code  # noqa: E402

from hooktrain.args import TrainingArguments  # noqa: E402
from hooktrain.cli import build_parser  # noqa: E402
from hooktrain.hf_args import FIELD_STATUS  # noqa: E402

HOOKSPECS = ROOT / "core" / "hooktrain" / "hookspecs.py"
PLUGIN_MANAGER = ROOT / "core" / "hooktrain" / "plugin_host" / "manager.py"


def generated_pages() -> dict[str, str]:
    """Page path under docs/ -> its Markdown. The hookspecs are re-read on every build."""
    return {
        "reference/hooks.md": render_hooks_page(read_hookspecs(HOOKSPECS),
                                                band_section(PLUGIN_MANAGER)),
        "reference/cli.md": render_cli_page(build_parser()),
        "reference/training-arguments.md": render_arguments_page(TrainingArguments,
                                                                 FIELD_STATUS),
    }


def on_files(files: Files, config: Any) -> Files:
    try:
        pages = generated_pages()
    except (HookDocError, ArgumentDocError, BandFigureError) as exc:
        # mkdocs prints a PluginError as one line and exits 1, without a traceback
        raise PluginError(f"docs/_build: {exc}") from exc
    for path, markdown in pages.items():
        files.append(File.generated(config, path, content=markdown))
    return files


def on_page_content(html: str, **kwargs: Any) -> str:
    return html_roles_to_code(html)
