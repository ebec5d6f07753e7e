"""The ``TrainingArguments`` reference page: every field with its type, default and help.

Types and defaults come from the dataclass (:mod:`hooktrain.args` imports no torch). The help of
the fields the loop uses is the docstring line under each field in ``args.py``, read with
:mod:`ast`; a field without one fails the build. The rest of transformers' fields are described
by ``hooktrain.hf_args.FIELD_STATUS``, which also generates ``hf-training-arguments.md``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path
from typing import Any

from rst_inline import table_cell, to_markdown


class ArgumentDocError(Exception):
    """A ``TrainingArguments`` field the reference cannot describe."""


def field_docstrings(cls: type) -> dict[str, str]:
    """The string literal under each annotated field of ``cls``'s own class body."""
    path = Path(inspect.getsourcefile(cls))
    tree = ast.parse(path.read_text(encoding="utf-8"))
    body = next(node.body for node in ast.walk(tree)
                if isinstance(node, ast.ClassDef) and node.name == cls.__name__)
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _default(spec: dataclasses.Field) -> Any:
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return spec.default


def _row(spec: dataclasses.Field, *cells: str) -> str:
    columns = [f"`{spec.name}`", table_cell(f"`{spec.type}`"),
               table_cell(f"`{_default(spec)!r}`"), *cells]
    return "| " + " | ".join(columns) + " |"


def render_arguments_page(arguments_class: type, field_status: dict[str, tuple[str, str]]) -> str:
    """The Markdown of ``reference/training-arguments.md``."""
    own = [f for f in dataclasses.fields(arguments_class) if f.name not in field_status]
    docs = field_docstrings(arguments_class)
    missing = [f.name for f in own if f.name not in docs]
    if missing:
        raise ArgumentDocError(
            f"TrainingArguments field(s) {', '.join(missing)} have no help: add a docstring line "
            f"under each field in {inspect.getsourcefile(arguments_class)}, as the others have.")
    hf_fields = [f for f in dataclasses.fields(arguments_class) if f.name in field_status]
    return "\n".join([
        "# TrainingArguments",
        "",
        "Generated from the `hooktrain.TrainingArguments` dataclass when the site is built.",
        to_markdown(" ".join(inspect.cleandoc(arguments_class.__doc__ or "").split("\n\n")[0]
                             .split())),
        "",
        "```python",
        "from hooktrain import TrainingArguments",
        "",
        'args = TrainingArguments("runs/exp1", learning_rate=3e-4, eval_strategy="epoch")',
        'args = TrainingArguments.from_toml("run.toml")  # the [training] table',
        "```",
        "",
        "## Fields the training loop uses",
        "",
        "Names and defaults are transformers'; `disable_plugins`, `plugin_errors`,",
        "`plugin_timeout` and `plugin_settings` are hooktrain's own.",
        "",
        "| field | type | default | help |",
        "|---|---|---|---|",
        *(_row(f, table_cell(to_markdown(docs[f.name]))) for f in own),
        "",
        "## The rest of transformers' fields",
        "",
        "Accepted by name so transformers scripts run unchanged. *status* is one of",
        "*implemented*, *no effect* (any value is accepted), *error when set* (only the default",
        "is accepted) and *transformers 4.x* (accepted with a deprecation warning); the same",
        "table is [transformers' TrainingArguments](../hf-training-arguments.md).",
        "",
        "| field | type | default | status | here |",
        "|---|---|---|---|---|",
        *(_row(f, field_status[f.name][0], table_cell(field_status[f.name][1]))
          for f in hf_fields),
    ]) + "\n"
