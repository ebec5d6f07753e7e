"""The sender: one daemon thread that POSTs the latest pending status at most once per interval.

The training thread only replaces the pending status (:meth:`Sender.offer`, never waiting on the
network); a refusal that retrying cannot fix is handed back to it and raised at its next hook,
an outage costs one warning and the latest status is tried again.
"""

from __future__ import annotations

import atexit
import http.client
import logging
import math
import ssl
import threading
import time
import urllib.error
import weakref
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("hooktrain")


class KubeflowStatusError(RuntimeError):
    """A setting the plugin cannot use, or a refusal from the server that retrying cannot fix."""


def _classify(exc: BaseException) -> tuple[str, bool]:
    """The error in a line, and whether trying again may help (down, slow, 5xx, 429)."""
    if isinstance(exc, urllib.error.HTTPError):
        detail = exc.read(300).decode("utf-8", "replace").strip() if exc.fp else ""
        message = f"HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail else "")
        return message, exc.code == 429 or exc.code >= 500
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    transient = isinstance(reason, (OSError, http.client.HTTPException))  # not TLS, token, bugs
    return f"{type(reason).__name__}: {reason}", transient and not isinstance(reason, ssl.SSLError)


class Sender:
    """One daemon thread and one pending slot: the latest status, posted once per interval."""

    def __init__(self, post: Callable[[dict[str, Any]], None], config: Any,
                 previous: Sender | None) -> None:
        self._post, self._config, self._url = post, config, config.url
        self._previous = previous  # an earlier train()'s final status goes first
        self.exit_bound = 2 * config.timeout + 1  # the request in flight, then the final one
        self._cond = threading.Condition()
        self._pending: dict[str, Any] | None = None
        self._error: str | None = None  # a refusal for the training thread to raise
        self.closing = False  # the pending status is the last; later offers are ignored
        self._warned = self._down = False
        self._thread = threading.Thread(target=self._run, name="hooktrain-kubeflow", daemon=True)
        self._thread.start()
        _OPEN.add(self)

    def offer(self, status: dict[str, Any], final: bool = False) -> None:
        """Replace the pending status (training thread; never waits on the network)."""
        with self._cond:
            if self._error is not None:
                error, self._error, self.closing = self._error, None, True
                raise KubeflowStatusError(error)
            if not self.closing:
                self._pending, self.closing = status, final
                self._cond.notify()

    def join(self, timeout: float | None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _next(self, last: float) -> tuple[dict[str, Any], bool] | None:
        """Wait for a pending status and its turn (``interval`` after the last POST ended)."""
        with self._cond:
            while True:
                if self._pending is None:
                    if self.closing:
                        return None
                    self._cond.wait()
                    continue
                delay = 0.0 if self.closing else last + self._config.interval - time.monotonic()
                if delay <= 0:
                    status, self._pending = self._pending, None
                    return status, self.closing
                self._cond.wait(delay)

    def _run(self) -> None:
        if (previous := self._previous) is not None:
            self._previous = None
            previous.join(previous.exit_bound)
        last = -math.inf
        while (item := self._next(last)) is not None:
            status, final = item
            try:
                self._post(status)
            except Exception as exc:  # noqa: BLE001 - classified: raised later or reported
                (message, transient), config = _classify(exc), self._config
                if not transient:
                    return self._fail(
                        f"kubeflow: POST {self._url} failed: {message} (CA: "
                        f"{config.ca_cert or 'system trust store'}, token: {config.token_file})")
                self._outage(message, status, final)
            else:
                if self._down:
                    logger.info("kubeflow: the status server at %s answers again.", self._url)
                self._down = False
            last = time.monotonic()

    def _outage(self, message: str, status: dict[str, Any], final: bool) -> None:
        """One warning per run; later outages (once each) and the final status at INFO."""
        if final or not self._down:
            logger.log(logging.INFO if self._warned else logging.WARNING,
                       "kubeflow: could not post %s to %s (%s). Training goes on%s.",
                       "the final status" if final else "the training status", self._url, message,
                       "" if final else "; the latest status is tried again every "
                       f"{self._config.interval:g} s")
        self._warned = self._down = True
        with self._cond:
            if self._pending is None and not self.closing:
                self._pending = status  # nothing newer arrived: retry this one

    def _fail(self, message: str) -> None:
        with self._cond:
            if not self.closing:  # raised on the training thread at its next hook
                self._error = message
                return
        logger.error("%s. Nothing more is posted.", message)  # no hook comes after the last


_OPEN: weakref.WeakSet[Sender] = weakref.WeakSet()


@atexit.register
def _deliver_at_exit() -> None:
    """Give a final status still in flight its bounded time before the interpreter exits."""
    for sender in list(_OPEN):
        if sender.closing:
            sender.join(sender.exit_bound)
