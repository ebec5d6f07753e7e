"""The hook reference page, generated from ``core/hooktrain/hookspecs.py``.

The specs are read with :mod:`ast`, never imported, so this runs without torch or pluggy (the
core test environment and the docs environment both import it). Every hookspec needs a docstring
in the format the module docstring of ``hookspecs.py`` describes; anything missing raises
:class:`HookDocError` naming the hook and the fix, which fails ``mkdocs build``.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from rst_inline import table_cell, to_markdown

#: The arguments every hook may take; ``hooktrain.events.COMMON_ARGS`` holds the same names.
COMMON_ARGS = (
    "args", "state", "control", "model", "processing_class", "optimizer", "lr_scheduler",
    "train_dataloader", "eval_dataloader",
)
#: The fields a hook's docstring must have, and what each one says.
REQUIRED_FIELDS = {
    "control": "what each TrainerControl flag set in this hook does",
    "hf": "what transformers calls this hook and where hooktrain differs",
}
_FIELD = re.compile(r":(param (\w+)|returns|control|hf):\s*(.*)")
# a field line, as opposed to prose that starts with a role (":meth:`train` ...")
_FIELD_START = re.compile(r":\w+(?: \w+)?:(?:\s|$)")
_SECTION = re.compile(r"# ---- (.+?) ----")
_FORMAT_HELP = (
    "a summary line, then ':param NAME:' for each argument beyond the common ones, "
    "':control:' ({control}) and ':hf:' ({hf})"
).format(**REQUIRED_FIELDS)


class HookDocError(Exception):
    """A hookspec whose docstring the hook reference cannot be built from."""


@dataclass
class Hook:
    name: str
    section: str
    params: list[tuple[str, str]]  # (name, annotation) beyond COMMON_ARGS
    returns: str
    summary: str
    body: str
    param_docs: dict[str, str] = field(default_factory=dict)
    returns_doc: str = ""
    control: str = ""
    hf: str = ""


@dataclass
class HookSpecs:
    loop_diagram: str
    common_args: list[tuple[str, str]]  # (name, description) from the module docstring
    hooks: list[Hook]


def read_hookspecs(path: Path) -> HookSpecs:
    """Every hookspec of ``path``, in source order, with its docstring split into fields."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    module_doc = ast.get_docstring(tree) or ""
    sections = {number: match.group(1) for number, line in enumerate(source.splitlines(), 1)
                if (match := _SECTION.match(line))}
    hooks = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and _is_hookspec(node):
            section = [title for line, title in sections.items() if line < node.lineno]
            hooks.append(_read_hook(node, section[-1] if section else "Hooks", path))
    if not hooks:
        raise HookDocError(f"{path} declares no @hookspec function: is it the hookspecs module?")
    return HookSpecs(_loop_diagram(module_doc, path), _common_args(module_doc), hooks)


def _is_hookspec(node: ast.FunctionDef) -> bool:
    return any(ast.unparse(decorator).split("(")[0] == "hookspec"
               for decorator in node.decorator_list)


def _read_hook(node: ast.FunctionDef, section: str, path: Path) -> Hook:
    name = node.name
    where = f"hookspec {name} ({path}, line {node.lineno})"
    names = [argument.arg for argument in node.args.args]
    if tuple(names[: len(COMMON_ARGS)]) != COMMON_ARGS:
        raise HookDocError(f"{where} must start with the common arguments "
                           f"{', '.join(COMMON_ARGS)}, in that order (pluggy reads them).")
    params = [(argument.arg, ast.unparse(argument.annotation) if argument.annotation else "Any")
              for argument in node.args.args[len(COMMON_ARGS):]]
    docstring = ast.get_docstring(node)
    if not docstring or not docstring.strip():
        raise HookDocError(f"{where} has no docstring. Add one: {_FORMAT_HELP}.")
    hook = Hook(name, section, params, ast.unparse(node.returns) if node.returns else "None",
                *_summary_and_body(docstring))
    for key, value in _fields(docstring, where).items():
        if key.startswith("param "):
            hook.param_docs[key.removeprefix("param ")] = value
        elif key == "returns":
            hook.returns_doc = value
        else:
            setattr(hook, key, value)
    for required, meaning in REQUIRED_FIELDS.items():
        if not getattr(hook, required):
            raise HookDocError(f"{where}: its docstring lacks ':{required}:' ({meaning}). "
                               f"Every hookspec docstring has {_FORMAT_HELP}.")
    declared = [param for param, _ in params]
    for param in declared:
        if param not in hook.param_docs:
            raise HookDocError(f"{where}: its docstring lacks ':param {param}:'; say what the "
                               "hook's own argument holds.")
    for param in hook.param_docs:
        if param not in declared:
            raise HookDocError(f"{where}: ':param {param}:' names no argument of the hook "
                               f"(its own arguments: {', '.join(declared) or 'none'}).")
    return hook


def _summary_and_body(docstring: str) -> tuple[str, str]:
    lines = inspect.cleandoc(docstring).splitlines()
    end = next((i for i, line in enumerate(lines) if _FIELD_START.match(line)), len(lines))
    prose = "\n".join(lines[:end])
    paragraphs = [" ".join(p.split()) for p in prose.strip().split("\n\n") if p.strip()]
    if not paragraphs:
        return "", ""
    return paragraphs[0], "\n\n".join(paragraphs[1:])


def _fields(docstring: str, where: str) -> dict[str, str]:
    """``:name: text`` fields, continuation lines joined; an unknown field is an error."""
    found: dict[str, str] = {}
    current = None
    for line in inspect.cleandoc(docstring).splitlines():
        if _FIELD_START.match(line):
            match = _FIELD.match(line)
            if match is None:
                raise HookDocError(f"{where}: unknown docstring field {line.split(':')[1]!r}; "
                                   "use :param NAME:, :returns:, :control: or :hf:.")
            current = f"param {match.group(2)}" if match.group(2) else match.group(1)
            found[current] = match.group(3)
        elif current is not None and line.strip():
            found[current] += " " + line.strip()
        elif current is not None:
            current = None  # a blank line ends the field
    return found


def _loop_diagram(module_doc: str, path: Path) -> str:
    """The indented block after the module docstring's first ``::`` line."""
    lines = module_doc.splitlines()
    start = next((i for i, line in enumerate(lines) if line.rstrip().endswith("::")), None)
    if start is None:
        raise HookDocError(f"{path}: the module docstring lost its loop diagram (a block after "
                           "a line ending in '::'); the hook reference shows it first.")
    block = []
    for line in lines[start + 1:]:
        if line.strip() and not line.startswith(" "):
            break
        block.append(line)
    return inspect.cleandoc("\n".join(block))


def _common_args(module_doc: str) -> list[tuple[str, str]]:
    """The ````name``   description`` lines of the module docstring, continuations joined."""
    rows: list[tuple[str, str]] = []
    for line in module_doc.splitlines():
        match = re.match(r"``(\w+)``\s+(.*)", line)
        if match and match.group(1) in COMMON_ARGS:
            rows.append((match.group(1), match.group(2)))
        elif rows and line.startswith(" ") and line.strip():
            rows[-1] = (rows[-1][0], rows[-1][1] + " " + line.strip())
        elif not line.strip() and len(rows) == len(COMMON_ARGS):
            break
    return rows


def render_hooks_page(specs: HookSpecs, band_figure: str) -> str:
    """The Markdown of ``reference/hooks.md``."""
    out = [
        "# Hooks",
        "",
        "Generated from `core/hooktrain/hookspecs.py` when the site is built: every event a",
        "plugin can implement, where it fires, its arguments, what the `TrainerControl` flags",
        "it sets do, and how it compares to transformers' `TrainerCallback`. The guide is",
        "[Events](../events.md); [Writing a plugin](../plugins.md) shows both plugin styles.",
        "",
        "## Where each event fires",
        "",
        "```text",
        specs.loop_diagram,
        "```",
        "",
        "## Common arguments",
        "",
        "Every hook may take any of these by name; an implementation names only those it uses.",
        "",
        "| argument | what it is |",
        "|---|---|",
        *(f"| `{name}` | {table_cell(to_markdown(text))} |" for name, text in specs.common_args),
        "",
        "Returning a `TrainerControl` from a hook replaces the control the plugins after it, and",
        "the loop, see (transformers' chain); returning `None` keeps it.",
        "",
        "## Order within an event",
        "",
        band_figure,
        "",
        "## All hooks",
        "",
        "| hook | own arguments | when |",
        "|---|---|---|",
        *(f"| [`{hook.name}`](#{hook.name}) | {', '.join(f'`{p}`' for p, _ in hook.params) or '—'}"
          f" | {table_cell(to_markdown(hook.summary))} |" for hook in specs.hooks),
    ]
    section = None
    for hook in specs.hooks:
        if hook.section != section:
            section = hook.section
            out += ["", f"## {section}"]
        out += ["", *_render_hook(hook)]
    return "\n".join(out) + "\n"


def _render_hook(hook: Hook) -> list[str]:
    arguments = ", ".join([*COMMON_ARGS, *(f"{p}: {a}" for p, a in hook.params)]) + ","
    lines = [f"### `{hook.name}` {{#{hook.name}}}", "", "```python", f"def {hook.name}(",
             *textwrap.wrap(arguments, 88, initial_indent="    ", subsequent_indent="    "),
             f") -> {hook.returns}", "```", "", to_markdown(hook.summary)]
    if hook.body:
        lines += ["", to_markdown(hook.body)]
    lines += ["", "**Arguments:** the [common arguments](#common-arguments)"
              + (", and:" if hook.params else "; no arguments of its own.")]
    if hook.params:
        lines += [""] + [f"- `{p}` (`{a}`): {to_markdown(hook.param_docs[p])}"
                         for p, a in hook.params]
    if hook.returns_doc:
        lines += ["", f"**Returns:** {to_markdown(hook.returns_doc)}"]
    lines += ["", f"**Control flags:** {to_markdown(hook.control)}",
              "", f"**transformers:** {to_markdown(hook.hf)}"]
    return lines
