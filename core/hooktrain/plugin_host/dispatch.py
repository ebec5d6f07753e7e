"""The one place hooks are called from: ordering, control chaining, copies, isolation, gating.

The :class:`~hooktrain.Trainer` calls one typed method per event (``hooks.on_step_end(loss)``), so
no hook name is spelled anywhere else. Each method first clears the control flags HF's
``CallbackHandler`` clears for that event, then calls every enabled implementation in the order
of :meth:`HooktrainPluginManager.ordered_impls`:

* Arguments come from one shared dict (the common arguments plus the event's own) and each
  implementation receives only the names it declares.
* A returned ``TrainerControl`` replaces the control for the implementations after it and for
  the loop (HF's chain).
* ``logs`` / ``metrics`` are copied per implementation, so no plugin sees another's edits.
* An isolated (entry-point) plugin that raises is reported once with its traceback, switched off
  and listed in the manager's ``faults`` (``trainer.plugin_faults``); with
  ``plugin_errors="raise"``, or for a user callback, the error propagates with a note naming
  the plugin and hook.
* Plugins that do not run on every rank are left out of the tables on other ranks; on rank zero,
  in a run of several processes, a change they make to ``control`` is undone with a warning
  (the other ranks would never see it, and the processes would part ways).
* Non-blocking plugins get their calls queued to a worker thread (:mod:`.background`); their
  errors are handled here, on the training thread, at the next event or :meth:`drain`.
* Every call is timed into :attr:`timings` (:mod:`.timings`: per plugin and hook, exclusive
  of the plugin calls nested in it; a non-blocking plugin's waits apart from its worker's time).
* ``HOOKTRAIN_TRACE_PLUGINS=1`` prints every call to stderr.
* HF's ``CallbackHandler`` surface (:mod:`.hf_handler`): each event method also takes HF's
  ``(args, state, control, ...)`` and then returns the control, for Trainer subclasses that call
  ``callback_handler.on_log(...)`` themselves.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from hooktrain.errors import PluginError
from hooktrain.events import COMMON_ARGS, COPIED_ARGS, EXTRA_ARGS, argument_getter
from hooktrain.plugin_host.background import BackgroundWorker
from hooktrain.plugin_host.hf_handler import CallbackHandlerSurface, accepts_hf_call
from hooktrain.plugin_host.manager import HooktrainPluginManager, PluginFault, PluginRecord
from hooktrain.plugin_host.steering import SteeringGuard
from hooktrain.plugin_host.timings import RunTimings, Timer
from hooktrain.plugin_host.watchdog import CallWatch, watch
from hooktrain.trainer_state import TrainerControl

logger = logging.getLogger("hooktrain")

_Impl = tuple[PluginRecord, Callable[..., Any], Callable[[dict[str, Any]], tuple[Any, ...]],
              Timer]
_now = time.perf_counter_ns


class HookDispatcher(CallbackHandlerSurface, SteeringGuard):
    """Calls the hooks of one Trainer's plugins. See the module docstring."""

    def __init__(self, manager: HooktrainPluginManager, plugin_errors: str = "warn",
                 plugin_timeout: float = 60.0) -> None:
        self.manager = manager
        self.plugin_errors = plugin_errors
        self.plugin_timeout = plugin_timeout
        self.is_world_process_zero = True
        self.world_size = 1
        self._warned_steering: set[tuple[str, str]] = set()
        self.kwargs: dict[str, Any] = dict.fromkeys(COMMON_ARGS)
        self.kwargs["control"] = TrainerControl()
        self._tables: dict[str, tuple[_Impl, ...]] = {}
        self._trace = os.environ.get("HOOKTRAIN_TRACE_PLUGINS", "") not in ("", "0")
        self._workers: dict[str, tuple[PluginRecord, BackgroundWorker]] = {}
        self._watch = CallWatch(plugin_timeout, self._global_step)
        if plugin_timeout > 0:
            watch(self._watch)
        self._additions: dict[str, Any] = {}
        self._background_errors: list[tuple[PluginRecord, str, BaseException]] = []
        #: every plugin call's time, and the loop's phases (filled in by the loop)
        self.timings = RunTimings()
        manager.add_change_listener(self._tables.clear)

    # ---- shared arguments ----------------------------------------------------------------

    @property
    def control(self) -> TrainerControl:
        return self.kwargs["control"]

    @control.setter
    def control(self, value: TrainerControl) -> None:
        self.kwargs["control"] = value

    def set_context(self, **values: Any) -> None:
        """Update common arguments (``model=...``, ``optimizer=...``)."""
        unknown = set(values) - set(COMMON_ARGS)
        if unknown:
            raise TypeError(f"not common hook arguments: {sorted(unknown)}")
        self.kwargs.update(values)

    def set_rank(self, is_world_process_zero: bool, world_size: int = 1) -> None:
        self.is_world_process_zero = is_world_process_zero
        self.world_size = world_size
        self._tables.clear()

    # ---- one typed method per event --------------------------------------------------------

    @accepts_hf_call
    def on_init_end(self) -> None:
        self._fire("on_init_end")

    @accepts_hf_call
    def on_load_checkpoint(self, checkpoint_dir: Any) -> None:
        self.kwargs["checkpoint_dir"] = checkpoint_dir
        self._fire("on_load_checkpoint")

    @accepts_hf_call
    def on_train_begin(self) -> None:
        self.control.should_training_stop = False
        self._fire("on_train_begin")

    @accepts_hf_call
    def on_epoch_begin(self) -> None:
        self.control.should_epoch_stop = False
        self._fire("on_epoch_begin")

    @accepts_hf_call
    def on_step_begin(self) -> None:
        control = self.control
        control.should_log = control.should_evaluate = control.should_save = False
        self._fire("on_step_begin")

    @accepts_hf_call
    def on_substep_end(self) -> None:
        self._fire("on_substep_end")

    @accepts_hf_call
    def on_pre_optimizer_step(self) -> None:
        self._fire("on_pre_optimizer_step")

    @accepts_hf_call
    def on_optimizer_step(self) -> None:
        self._fire("on_optimizer_step")

    @accepts_hf_call
    def on_step_end(self, loss: Any = None) -> None:
        self.kwargs["loss"] = loss
        self._fire("on_step_end")

    @accepts_hf_call
    def on_epoch_end(self) -> None:
        self._fire("on_epoch_end")

    @accepts_hf_call
    def on_pre_log(self, logs: dict[str, Any]) -> dict[str, Any]:
        """Values plugins add to a log about to be recorded (merged in plugin order)."""
        self.kwargs["logs"] = logs
        self._additions = {}
        self._fire("on_pre_log")
        additions, self._additions = self._additions, {}
        return additions

    @accepts_hf_call
    def on_log(self, logs: dict[str, Any]) -> None:
        self.control.should_log = False
        self.kwargs["logs"] = logs
        self._fire("on_log")

    @accepts_hf_call
    def on_prediction_step(self) -> None:
        self._fire("on_prediction_step")

    @accepts_hf_call
    def on_evaluate(self, metrics: dict[str, Any]) -> None:
        self.control.should_evaluate = False
        self.kwargs["metrics"] = metrics
        self._fire("on_evaluate")

    @accepts_hf_call
    def on_predict(self, metrics: dict[str, Any]) -> None:
        self.kwargs["metrics"] = metrics
        self._fire("on_predict")

    @accepts_hf_call
    def on_save(self, checkpoint_dir: Any = None) -> None:
        self.control.should_save = False
        self.kwargs["checkpoint_dir"] = checkpoint_dir
        self._fire("on_save")

    @accepts_hf_call
    def on_train_end(self) -> None:
        self._fire("on_train_end")

    @accepts_hf_call
    def on_push_begin(self) -> None:
        """HF's event before a push to the Hub; hooktrain never pushes, but a Trainer subclass
        that does can fire it through ``callback_handler``."""
        self._fire("on_push_begin")

    @accepts_hf_call
    def on_exception(self, exception: BaseException) -> None:
        """Call every plugin; failures are logged and never hide ``exception``."""
        self.kwargs["exception"] = exception
        for record, function, arguments, _ in self._table("on_exception"):
            try:
                function(*arguments(self.kwargs))
            except Exception:  # noqa: BLE001 - teardown must reach every plugin
                logger.exception(
                    "Plugin %s failed in on_exception while handling %r; continuing.",
                    record.label, exception,
                )
        self.drain(raising=False)

    # ---- machinery -----------------------------------------------------------------------

    def drain(self, raising: bool = True) -> None:
        """Wait for every non-blocking plugin's queued calls, then stop their workers.

        Their errors are then handled as if raised in place; with ``raising=False`` (while
        another error propagates) they are only logged.
        """
        workers, self._workers = self._workers, {}
        if workers:
            self._tables.clear()
        for record, worker in workers.values():
            if worker.stuck:  # abandoned (and reported) while its queue stayed full
                continue
            start = _now()
            finished = worker.drain(self.plugin_timeout or None)
            elapsed = _now() - start
            self.timings.timer(record.label, "drain", "waited").add(elapsed)
            self.timings.nested_ns += elapsed
            if not finished:
                self._abandon(record, worker, "did not finish its queued calls")
            worker.close()
        self._handle_background_errors(raising)

    def _abandon(self, record: PluginRecord, worker: BackgroundWorker, what: str) -> None:
        """A non-blocking plugin stuck past plugin_timeout: one report, switched off."""
        pending = worker.pending()
        logger.error(
            "Non-blocking plugin %s %s within plugin_timeout=%g s (pending: %s); it is switched "
            "off and the run goes on without it. Its thread cannot be stopped and is left "
            "behind. Fix or disable the plugin, or raise plugin_timeout if it is merely slow.",
            record.label, what, self.plugin_timeout, ", ".join(pending) or "none",
        )
        self.manager.faults.append(PluginFault(record.label, pending[0] if pending else "drain",
                                       f"timed out after {self.plugin_timeout:g} s"))
        self.manager.disable_plugin(record, f"timed out after {self.plugin_timeout:g} s")

    def _global_step(self) -> Any:
        return getattr(self.kwargs.get("state"), "global_step", None)

    def _fire(self, hook: str) -> None:
        if self._background_errors:
            self._handle_background_errors(True)
        impls = self._tables.get(hook)
        if impls is None:
            impls = self._table(hook)
        if not impls:
            return
        kwargs = self.kwargs
        copied = COPIED_ARGS.get(hook)
        original = kwargs[copied] if copied else None
        watched, timings = self._watch, self.timings
        outer = watched.record  # a hook may fire events itself (evaluate() in on_step_end)
        for record, function, arguments, timer in impls:
            if record.disabled_reason is not None:
                continue  # switched off earlier in this same event
            if copied:
                kwargs[copied] = dict(original)
            watched.record, watched.hook = record, hook
            watched.calls += 1
            # Exclusive time: the calls nested in this one (events it fires) count as theirs.
            outer_nested, timings.nested_ns = timings.nested_ns, 0
            start = _now()
            try:
                result = function(*arguments(kwargs))
            except Exception as exc:  # noqa: BLE001 - isolation: reported, the run goes on
                elapsed = _now() - start
                timer.add(elapsed - timings.nested_ns)
                timings.nested_ns = outer_nested + elapsed
                watched.record = outer
                self._handle_fault(record, hook, exc)
                continue
            elapsed = _now() - start
            own = elapsed - timings.nested_ns
            timings.nested_ns = outer_nested + elapsed
            timer.calls += 1
            timer.total_ns += own
            if own > timer.max_ns:
                timer.max_ns = own
            watched.record = outer
            if result is not None:
                if isinstance(result, TrainerControl):
                    kwargs["control"] = result
                elif hook == "on_pre_log" and isinstance(result, dict):
                    self._add_log_values(record, result, original)
                elif hook == "on_pre_log":
                    self._handle_fault(record, hook, PluginError(
                        f"on_pre_log of plugin {record.label} returned a "
                        f"{type(result).__name__}; it must return a dict of values to add to "
                        "the log, or None."))
        if copied:
            kwargs[copied] = original

    def _add_log_values(
        self, record: PluginRecord, values: dict[str, Any], logs: dict[str, Any]
    ) -> None:
        for key, value in values.items():
            if key in logs or key in self._additions:
                logger.warning("Plugin %s tried to add %r to a log that already has it; "
                               "the value is ignored.", record.label, key)
            else:
                self._additions[key] = value

    def _handle_fault(self, record: PluginRecord, hook: str, exc: Exception) -> None:
        if not record.isolated or self.plugin_errors == "raise":
            exc.add_note(f"(raised by plugin {record.label} in hook {hook})")
            raise exc
        logger.error(
            "Plugin %s raised in %s and is switched off for the rest of this run; training goes "
            "on. Fix or upgrade the plugin, disable it with disable_plugins=[%r], or set "
            "plugin_errors='raise' to make this fatal.",
            record.label, hook, record.name, exc_info=exc,
        )
        self.manager.faults.append(PluginFault(record.label, hook, f"{type(exc).__name__}: {exc}"))
        self.manager.disable_plugin(record, f"raised {type(exc).__name__} in {hook}")

    def _handle_background_errors(self, raising: bool) -> None:
        errors, self._background_errors = self._background_errors, []
        for record, hook, exc in errors:
            if not raising:
                logger.error("Non-blocking plugin %s raised in %s.", record.label, hook,
                             exc_info=exc)
            elif isinstance(exc, Exception):
                self._handle_fault(record, hook, exc)
            else:
                raise exc

    def _queued(self, record: PluginRecord, hook: str, function: Callable[..., Any]) -> Any:
        timer = self.timings.timer(record.label, hook, "worker")
        entry = self._workers.get(record.name)
        if entry is None:
            entry = self._workers[record.name] = (record, BackgroundWorker(
                record.label,
                lambda failed_hook, exc: self._background_errors.append((record, failed_hook, exc)),
            ))
        worker = entry[1]

        def submit(*args: Any) -> None:
            if not worker.submit(hook, function, list(args), self.plugin_timeout or None, timer):
                self._abandon(record, worker, "kept its queue full")

        return submit

    def _table(self, hook: str) -> tuple[_Impl, ...]:
        rows = []
        for record, impl in self.manager.ordered_impls(hook):
            if not record.all_ranks and not self.is_world_process_zero:
                continue
            function = impl.function
            if not record.all_ranks and self.world_size > 1 and not record.nonblocking:
                function = self._without_steering(function, hook, record)
            if self._trace:
                function = _traced(function, hook, record.label)
            if record.nonblocking:
                function = self._queued(record, hook, function)
            kind = "waited" if record.nonblocking else "plugin"
            rows.append((record, function, argument_getter(tuple(impl.argnames)),
                         self.timings.timer(record.label, hook, kind)))
        table = self._tables[hook] = tuple(rows)
        return table

    def summary(self) -> str | None:
        """One line per plugin switched off during the run, or ``None``."""
        if not self.manager.faults:
            return None
        lines = [f"  {f.plugin}: {f.error} (in {f.hook})" for f in self.manager.faults]
        return "Plugins switched off after an error during this run:\n" + "\n".join(lines)


def _traced(function: Callable[..., Any], hook: str, label: str) -> Callable[..., Any]:
    def traced(*args: Any) -> Any:
        print(f"[hooktrain] {hook} -> {label}", file=sys.stderr)
        return function(*args)

    return traced



assert set(COPIED_ARGS) <= set(EXTRA_ARGS)
