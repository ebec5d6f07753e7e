"""Sample plugin ``typo``: implements ``on_stepend`` (a misspelling of ``on_step_end``)."""

from __future__ import annotations

from hooktrain import hookimpl


class TypoPlugin:
    @hookimpl
    def on_log(self, logs):
        pass

    @hookimpl
    def on_stepend(self, state):
        pass
