"""Sample plugin ``broken``: its dependency is not installed, so importing it fails."""

from __future__ import annotations

import os

from hooktrain import hookimpl

path = os.environ.get("SAMPLE_TRACE")
if path:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("broken imported\n")

import hooktrain_sample_missing_dependency  # noqa: E402,F401  (deliberately not installed)


class BrokenPlugin:
    @hookimpl
    def on_log(self, logs):
        pass
