"""The command-line reference page, generated from ``hooktrain.cli.build_parser()``.

Every subcommand with its help, usage and arguments, read from the argparse parser itself, so
the page cannot miss an option. Importing :mod:`hooktrain.cli` does not import torch.
"""

from __future__ import annotations

import argparse

from rst_inline import table_cell

USAGE_WIDTH = 100  # usage lines wrap here, whatever the terminal building the site


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """``(name, help, parser)`` for each subcommand, in the order they were added."""
    for action in parser._actions:  # argparse keeps no public list of subparsers
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            return [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return []


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=USAGE_WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _argument_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.option_strings:
            names = ", ".join(f"`{option}`" for option in action.option_strings)
            if action.nargs != 0:
                names += f" `{action.metavar or action.dest.upper()}`"
        else:
            names = f"`{action.metavar or action.dest}`"
        default = "" if action.default in (None, argparse.SUPPRESS) or action.nargs == 0 \
            else f"`{action.default!r}`"
        if isinstance(action, argparse._VersionAction):
            help_text = "print the version and exit"
        else:
            help_text = action.help or ""
        rows.append(f"| {names} | {default} | {table_cell(help_text)} |")
    return rows


def _arguments_table(parser: argparse.ArgumentParser) -> list[str]:
    rows = _argument_rows(parser)
    if not rows:
        return ["No arguments."]
    return ["| argument | default | help |", "|---|---|---|", *rows]


def render_cli_page(parser: argparse.ArgumentParser) -> str:
    """The Markdown of ``reference/cli.md``."""
    out = [
        "# Command line",
        "",
        "Generated from the argument parser of `hooktrain.cli` when the site is built.",
        f"{parser.description or ''}; `hooktrain --help` and `hooktrain COMMAND --help` print",
        "the same.",
        "",
        "```text",
        _usage(parser),
        "```",
        "",
        *_arguments_table(parser),
    ]
    for name, help_text, sub in _subcommands(parser):
        out += ["", f"## `hooktrain {name}` {{#{name}}}", "", f"{help_text[:1].upper()}"
                f"{help_text[1:]}.", "", "```text", _usage(sub), "```", "",
                *_arguments_table(sub)]
        if sub.epilog:
            out += ["", sub.epilog]
    return "\n".join(out) + "\n"
