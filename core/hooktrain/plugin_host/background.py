"""Non-blocking plugins: their hooks run on a worker thread of their own, in order.

A plugin runs off the training thread when it sets ``hooktrain_nonblocking = True`` or the user
sets ``nonblocking = true`` in its ``[plugins.<name>]`` table. The dispatcher then hands each
call to :class:`BackgroundWorker` with a snapshot of its arguments:

* ``logs`` / ``metrics`` are already the plugin's own copies; ``state`` and ``control`` are
  copied (``log_history`` as a new list of the same entries, which are never changed after
  they are appended); tensors such as ``loss`` are detached values no one writes to again.
  ``model``, ``optimizer`` and the dataloaders are the live objects: read them on the training
  thread, not here.
* The queue is bounded: when the worker falls behind, the training thread waits rather than
  dropping a call, so no log is ever lost.
* The worker runs every call in submission order, so the plugin sees the same event sequence as
  a blocking one. Its return values are ignored (it cannot steer the loop).
* :meth:`drain` waits until everything submitted has run; the Trainer drains at the end of every
  ``train`` / ``evaluate`` / ``predict`` (before ``train`` returns, after ``on_train_end``) and
  on errors, after ``on_exception``. Both that wait and a wait for room in a full queue are
  bounded by ``plugin_timeout``: a worker stuck past it is abandoned (its daemon thread cannot be
  stopped, but nothing waits for it) and the dispatcher reports and switches off its plugin.
* An error stops the worker; the dispatcher reports it like any plugin error.
* Each call's time on the worker thread goes into the :class:`~.timings.Timer` it was queued
  with (the training thread's own waiting is timed by the dispatcher, apart).
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from hooktrain.trainer_state import TrainerControl, TrainerState

_STOP = object()


def snapshot(value: Any) -> Any:
    """A copy of ``value`` that later training steps cannot change."""
    if isinstance(value, TrainerState):
        clone = copy.copy(value)
        clone.log_history = list(value.log_history)
        return clone
    if isinstance(value, TrainerControl):
        return copy.copy(value)
    return value


class BackgroundWorker:
    """One thread and one bounded queue for one plugin."""

    def __init__(self, label: str, on_error: Callable[[str, BaseException], None],
                 maxsize: int = 256) -> None:
        self.label = label
        self._on_error = on_error
        self._queue: queue.Queue[Any] = queue.Queue(maxsize)
        self._failed = False
        self.stuck = False  # gave up waiting for it: nothing more is queued or awaited
        self.running: str | None = None  # the hook on the worker thread now
        self._thread = threading.Thread(target=self._run, name=f"hooktrain-{label}", daemon=True)
        self._thread.start()

    def submit(self, hook: str, function: Callable[..., Any], args: list[Any],
               timeout: float | None = None, timer: Any = None) -> bool:
        """Queue a call (timed into ``timer``); False when the queue stayed full for
        ``timeout`` seconds."""
        if self._failed or self.stuck:
            return True
        try:
            self._queue.put((hook, function, [snapshot(a) for a in args], timer),
                            timeout=timeout)
        except queue.Full:
            self.stuck = True
            return False
        return True

    def drain(self, timeout: float | None = None) -> bool:
        """Block until every submitted call has run; False after ``timeout`` seconds."""
        if self.stuck:
            return False
        done = self._queue.all_tasks_done
        with done:
            if not done.wait_for(lambda: not self._queue.unfinished_tasks, timeout):
                self.stuck = True
                return False
        return True

    def pending(self) -> list[str]:
        """The hooks not yet run: the one running first, then the queued ones."""
        queued = [item[0] for item in list(self._queue.queue) if item is not _STOP]
        return ([self.running] if self.running else []) + queued

    def close(self) -> None:
        if self.stuck:  # its thread is a daemon; joining it would wait forever
            return
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                hook, function, args, timer = item
                if not self._failed:
                    self.running = hook
                    start = time.perf_counter_ns()
                    try:
                        function(*args)
                    except BaseException as exc:  # noqa: BLE001 - reported on the main thread
                        self._failed = True
                        self._on_error(hook, exc)
                    finally:
                        self.running = None
                        if timer is not None:  # written by this thread only
                            timer.add(time.perf_counter_ns() - start)
            finally:
                self._queue.task_done()
