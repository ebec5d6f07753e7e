"""``ExceptionFunnel``: ``on_exception`` fires once per failed public call, however nested.

``train()`` calls ``evaluate()``, which may call ``evaluate()`` again for each of a dict of data
sets; only the outermost call reports an error to the plugins, and only the outermost successful
call waits for the non-blocking plugins to finish their queued events
(docs/configuring-plugins.md, "Non-blocking plugins").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


class ExceptionFunnel:
    """Call it as a context manager around each public entry point of the Trainer."""

    def __init__(self, dispatcher: Any) -> None:
        self.dispatcher = dispatcher
        self.depth = 0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        """Fire ``on_exception`` once (from the outermost call) before an error propagates.

        On success the outermost call drains the non-blocking plugins' queues before returning.
        """
        self.depth += 1
        try:
            yield
            if self.depth == 1:
                self.dispatcher.drain()  # non-blocking plugins finish before we return
        except BaseException as exc:
            if self.depth == 1:
                self.dispatcher.on_exception(exc)
            raise
        finally:
            self.depth -= 1
