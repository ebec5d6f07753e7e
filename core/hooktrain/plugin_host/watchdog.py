"""A warning for a synchronous hook that runs longer than ``plugin_timeout``, while it runs.

Python cannot stop a thread, so a plugin stuck in ``on_train_end`` would hold the run forever
without a word. The dispatcher notes which plugin and hook it is calling (two attribute writes
per call, no timer); one daemon thread per process looks every second or so and warns, naming
the plugin, the hook and the step, once the same call has run for ``plugin_timeout`` seconds,
and again every ``plugin_timeout`` after.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from typing import Any

logger = logging.getLogger("hooktrain")

_watched: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()
_thread: threading.Thread | None = None
_stopping = threading.Event()
_INTERVAL = 1.0


class CallWatch:
    """What one dispatcher is calling now; read by the watchdog thread."""

    def __init__(self, timeout: float, step: Any) -> None:
        self.timeout = timeout
        self.step = step  # a function returning the current global step
        self.record: Any = None
        self.hook = ""
        self.calls = 0
        self._seen = (-1, 0.0, 0)  # (calls, since, warnings given)

    def check(self, now: float) -> None:
        record, calls = self.record, self.calls
        seen_calls, since, warned = self._seen
        if record is None or calls != seen_calls:
            self._seen = (calls, now, 0)
            return
        if now - since >= self.timeout * (warned + 1):
            self._seen = (calls, since, warned + 1)
            logger.warning(
                "Plugin %s has been running %s for %.0f s (step %s), past plugin_timeout=%g s. "
                "Python cannot stop it: training waits until it returns. Fix or disable the "
                "plugin (disable_plugins, pop_callback), or raise plugin_timeout if it is "
                "merely slow.", record.label, self.hook, now - since, self.step(), self.timeout,
            )


def watch(call_watch: CallWatch) -> None:
    """Start watching (and the thread, once per process)."""
    global _thread
    with _lock:
        _watched.add(call_watch)
        if _thread is None or not _thread.is_alive():
            _stopping.clear()
            _thread = threading.Thread(target=_run, name="hooktrain-watchdog", daemon=True)
            _thread.start()
            atexit.register(stop)


def stop() -> None:
    """End the thread (at exit: hooktrain leaves no thread of its own to interpreter shutdown)."""
    _stopping.set()
    thread = _thread
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout=5)


def _run() -> None:
    while True:
        timeouts = [w.timeout for w in list(_watched)]
        if _stopping.wait(min([_INTERVAL] + [t / 4 for t in timeouts if t > 0])):
            return
        now = time.monotonic()
        for call_watch in list(_watched):
            try:
                call_watch.check(now)
            except Exception:  # noqa: BLE001 - the watchdog must never die
                logger.debug("watchdog check failed", exc_info=True)
