"""The generated reference pages of the documentation site (docs/_build), without mkdocs.

The generators read the code (the hookspecs with ``ast``, the CLI parser, the TrainingArguments
dataclass); a hookspec whose docstring lacks what the hook reference shows must fail the build
with a message naming the hook and the fix.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOOKSPECS = ROOT / "core" / "hooktrain" / "hookspecs.py"
sys.path.insert(0, str(ROOT / "docs" / "_build"))

from args_reference import ArgumentDocError, render_arguments_page  # noqa: E402
from band_figure import BandFigureError, band_section, read_bands  # noqa: E402
from cli_reference import render_cli_page  # noqa: E402
from hook_reference import HookDocError, read_hookspecs, render_hooks_page  # noqa: E402

from hooktrain.events import COMMON_ARGS, EVENT_NAMES, EXTRA_ARGS  # noqa: E402

SIGNATURE = ", ".join(f"{name}: Any" for name in COMMON_ARGS)
GOOD_DOCSTRING = '''"""Fires when it fires.

:control: none takes effect.
:hf: the same name.
"""'''
MODULE = '''"""Hooks.

Where each event fires::

    train()    on_thing

``args``    the arguments.
"""

from typing import Any

from hooktrain.markers import hookspec

# ---- Things ----


@hookspec
def on_thing({signature}) -> None:
{body}
'''


def _hookspecs_file(tmp_path: Path, docstring: str, extra: str = "") -> Path:
    """A hookspecs module, written as the real one is, with one hook."""
    path = tmp_path / "hookspecs.py"
    path.write_text(MODULE.format(signature=SIGNATURE + extra,
                                  body=textwrap.indent(docstring, "    ")))
    return path


def test_the_real_hookspecs_give_every_hook_a_section() -> None:
    specs = read_hookspecs(HOOKSPECS)
    assert [hook.name for hook in specs.hooks] == list(EVENT_NAMES)
    assert [name for name, _ in specs.common_args] == list(COMMON_ARGS)
    assert "on_step_end(loss)" in specs.loop_diagram
    page = render_hooks_page(specs, band_section(HOOKSPECS.parent / "plugin_host" / "manager.py"))
    for hook in specs.hooks:
        assert f"### `{hook.name}` {{#{hook.name}}}" in page
        assert [name for name, _ in hook.params] == list(EXTRA_ARGS[hook.name])
        assert hook.control and hook.hf, hook.name
    assert "```mermaid" in page and "FLOW --> USER --> ENTRY_POINT --> REPORTER" in page


def test_a_hookspec_without_a_docstring_fails_naming_the_hook_and_the_fix(tmp_path) -> None:
    path = _hookspecs_file(tmp_path, "pass")
    with pytest.raises(HookDocError, match=r"hookspec on_thing .* has no docstring\. Add one"):
        read_hookspecs(path)


def test_a_well_formed_hookspec_is_read(tmp_path) -> None:
    (hook,) = read_hookspecs(_hookspecs_file(tmp_path, GOOD_DOCSTRING)).hooks
    assert (hook.section, hook.summary, hook.control, hook.hf) == (
        "Things", "Fires when it fires.", "none takes effect.", "the same name.")


@pytest.mark.parametrize("field", ["control", "hf"])
def test_a_docstring_without_a_required_field_fails(tmp_path, field: str) -> None:
    docstring = "\n".join(line for line in GOOD_DOCSTRING.splitlines()
                          if f":{field}:" not in line)
    with pytest.raises(HookDocError, match=f"on_thing .* lacks ':{field}:'"):
        read_hookspecs(_hookspecs_file(tmp_path, docstring))


def test_an_undocumented_own_argument_fails(tmp_path) -> None:
    with pytest.raises(HookDocError, match="lacks ':param loss:'"):
        read_hookspecs(_hookspecs_file(tmp_path, GOOD_DOCSTRING, extra=", loss: Any"))


def test_a_role_at_the_start_of_a_line_is_prose_not_a_field(tmp_path) -> None:
    docstring = GOOD_DOCSTRING.replace("it fires.\n", "it fires, in\n:meth:`train`.\n")
    (hook,) = read_hookspecs(_hookspecs_file(tmp_path, docstring)).hooks
    assert hook.summary == "Fires when it fires, in :meth:`train`."


def test_the_band_figure_follows_the_enum(tmp_path) -> None:
    bands = read_bands(HOOKSPECS.parent / "plugin_host" / "manager.py")
    assert [name for name, _, _ in bands] == ["FLOW", "USER", "ENTRY_POINT", "REPORTER"]
    (tmp_path / "manager.py").write_text("class Band:\n    FIRST = 0\n")
    with pytest.raises(BandFigureError, match="band FIRST needs a '#:' comment"):
        read_bands(tmp_path / "manager.py")


def test_the_cli_page_lists_every_subcommand_and_option() -> None:
    from hooktrain.cli import build_parser

    page = render_cli_page(build_parser())
    for command in ("demo", "train", "plugins", "new-plugin"):
        assert f"## `hooktrain {command}`" in page
    for option in ("`--output-dir` `OUTPUT_DIR`", "`--json`", "`--config` `CONFIG`", "`name`"):
        assert option in page


def test_the_arguments_page_has_every_field_with_help() -> None:
    from hooktrain.args import TrainingArguments
    from hooktrain.hf_args import FIELD_STATUS

    page = render_arguments_page(TrainingArguments, FIELD_STATUS)
    for name in TrainingArguments.field_names():
        assert f"| `{name}` |" in page
    assert "| `max_grad_norm` | `float | None` | `1.0` | Gradients are clipped" in page


def test_a_field_without_help_fails_naming_it(monkeypatch) -> None:
    from hooktrain.args import TrainingArguments
    from hooktrain.hf_args import FIELD_STATUS

    monkeypatch.setattr("args_reference.field_docstrings", lambda cls: {})
    with pytest.raises(ArgumentDocError, match="field.* output_dir, .* have no help"):
        render_arguments_page(TrainingArguments, FIELD_STATUS)
