"""Docstring markup (reStructuredText inline roles) as Markdown, for the generated pages.

The core's docstrings are written for ``help()`` and Sphinx-style readers: ````code````,
``:class:`~hooktrain.TrainerState``` and friends. Markdown reads double backticks as code
already; a role becomes code showing the name as the role would (``~`` keeps the last part).
"""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:class|meth|func|data|mod|attr|exc|obj):`(~?)([^`]+)`")
# the same roles once Markdown has turned their backticks into <code> (mkdocstrings' output)
_ROLE_HTML = re.compile(r":(?:class|meth|func|data|mod|attr|exc|obj):<code>(~?)([^<]+)</code>")
# a code span (kept) or a pipe (escaped)
_PIPE_OUTSIDE_CODE = re.compile(r"(`+).+?\1|\|")
# reST's "text::" before a literal block, which Markdown shows as a code block already
_LITERAL_MARKER = re.compile(r"::</p>")


def _shown(tilde: str, target: str) -> str:
    return target.rsplit(".", 1)[-1] if tilde else target


def to_markdown(text: str) -> str:
    """``:class:`~a.B``` -> ```B```; ``:meth:`train``` -> ```train```; the rest unchanged."""
    return _ROLE.sub(lambda m: f"`{_shown(m.group(1), m.group(2))}`", text)


def html_roles_to_code(html: str) -> str:
    """The same for rendered HTML: ``:class:<code>~a.B</code>`` -> ``<code>B</code>``, and a
    paragraph ending in reST's ``::`` ends in one colon."""
    html = _ROLE_HTML.sub(lambda m: f"<code>{_shown(m.group(1), m.group(2))}</code>", html)
    return _LITERAL_MARKER.sub(":</p>", html)


def table_cell(text: str) -> str:
    """Text that fits one Markdown table cell: one line, pipes escaped outside code spans
    (inside them a pipe splits no cell, and a backslash would show)."""
    return _PIPE_OUTSIDE_CODE.sub(lambda m: m.group(0) if m.group(1) else "\\|",
                                  " ".join(text.split()))
