"""Where the training time went: every plugin in every hook, and the loop's own phases.

Always on. The dispatcher times each plugin call with two ``time.perf_counter_ns()`` reads into
a :class:`Timer` it looked up once, when it built the hook's table, so a call allocates nothing
but the integers. What is counted (docs/plugin-timings.md):

* A plugin's time in a hook is *exclusive*: when its hook fires other events (a callback that
  calls ``trainer.evaluate()`` in ``on_step_end``), the plugins called by those events are
  charged for their own calls and subtracted from the outer one. The work itself (the
  evaluation's forward passes) stays with the plugin that asked for it.
* A non-blocking plugin has two kinds of row: ``waited``, the time the training thread spent
  handing it a call (a snapshot, and waiting while its queue was full) or waiting for it to
  finish at the end (hook ``drain``); and ``worker``, the time its hooks ran on its own thread,
  which overlaps training and is not part of the loop's time.
* The loop's phases (``set-up``, ``data``, ``forward/backward``, ``optimizer``, ``evaluation``,
  ``checkpoint save``) are host wall time minus the plugin calls made inside them; ``plugins``
  is the sum of the plugins' time on the training thread and ``other`` the rest of ``train()``
  (the loop's own bookkeeping, logging). On CUDA the device runs ahead of the host, so a phase
  is the time the host spent in it: the loop never waits for the device to time a phase.
* ``share`` is a row's total over the wall time of ``train()``; a resumed run continues the
  totals (and the time) saved in its checkpoint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

logger = logging.getLogger("hooktrain")

#: where the table is kept in ``TrainerState.stateful_callbacks`` (checkpoints and
#: ``trainer_state.json``): transformers ignores keys of plugins it does not have
STATE_KEY = "HooktrainTimings"
LOOP = "loop"  #: the name of the loop's phase rows
PHASES = ("set-up", "data", "forward/backward", "optimizer", "evaluation", "checkpoint save")
_NS = 1e-9
#: hooks fired once per ``train()``: a tracker's start-up and finish (creating its run takes
#: Comet seconds) is a fixed cost that a longer run dilutes, and neither non-blocking mode nor
#: ``logging_steps`` changes it, so the warning is about the hooks whose cost grows with the run
ONCE_PER_RUN = frozenset({"on_init_end", "on_train_begin", "on_train_end"})


class Timer:
    """Calls, total and longest call of one (plugin or phase, hook, kind), in nanoseconds."""

    __slots__ = ("calls", "total_ns", "max_ns")

    def __init__(self) -> None:
        self.calls = 0
        self.total_ns = 0
        self.max_ns = 0

    def add(self, elapsed_ns: int) -> None:
        self.calls += 1
        self.total_ns += elapsed_ns
        if elapsed_ns > self.max_ns:
            self.max_ns = elapsed_ns


@dataclass(frozen=True)
class TimingRow:
    """One line of :attr:`Trainer.plugin_timings <hooktrain.Trainer.plugin_timings>`.

    ``name`` is a plugin's label or ``"loop"``; ``hook`` the hook, or the loop's phase;
    ``kind`` is ``"phase"``, ``"plugin"`` (on the training thread), ``"waited"`` (the training
    thread waiting for a non-blocking plugin) or ``"worker"`` (a non-blocking plugin's own
    thread). Times are in seconds; ``share`` is ``total_s`` over the run's wall time.
    """

    name: str
    hook: str
    kind: str
    calls: int
    total_s: float
    mean_s: float
    max_s: float
    share: float


class RunTimings:
    """One Trainer's accumulators; :meth:`table` turns them into rows."""

    def __init__(self) -> None:
        self._timers: dict[tuple[str, str, str], Timer] = {}
        #: plugin time on the training thread so far; inside a plugin call, the nested calls'
        #: time (the dispatcher subtracts it from that call and then adds the call's own)
        self.nested_ns = 0
        self._started_ns: int | None = None
        self._earlier_run_ns = 0  # from the checkpoint a resumed run continues
        self._stopped_run_ns: int | None = None

    def timer(self, name: str, hook: str, kind: str) -> Timer:
        """The accumulator for one row, made on first use (the dispatcher keeps it)."""
        key = (name, hook, kind)
        found = self._timers.get(key)
        if found is None:
            found = self._timers[key] = Timer()
        return found

    def phase(self, name: str) -> Timer:
        return self.timer(LOOP, name, "phase")

    # ---- the run's clock -----------------------------------------------------------------

    def start_run(self) -> None:
        """``train()`` begins: the table starts empty (a resume then adds the saved totals)."""
        for timer in self._timers.values():  # kept: the dispatcher's tables hold them
            timer.calls = timer.total_ns = timer.max_ns = 0
        self.nested_ns = 0
        self._earlier_run_ns = 0
        self._stopped_run_ns = None
        self._started_ns = time.perf_counter_ns()

    def stop_run(self) -> None:
        """``train()`` ended (the non-blocking plugins drained): the share's denominator."""
        if self._started_ns is not None and self._stopped_run_ns is None:
            self._stopped_run_ns = self._run_ns()

    def _run_ns(self) -> int:
        if self._stopped_run_ns is not None:
            return self._stopped_run_ns
        if self._started_ns is None:
            return self._earlier_run_ns
        return self._earlier_run_ns + time.perf_counter_ns() - self._started_ns

    # ---- the table -----------------------------------------------------------------------

    def table(self) -> list[TimingRow]:
        """Phases first (in loop order, then ``plugins`` and ``other``), then plugin rows by
        total time, longest first."""
        run_ns = self._run_ns()
        plugin_ns = sum(t.total_ns for (_, _, kind), t in self._timers.items()
                        if kind in ("plugin", "waited"))
        phases = [(name, self._timers.get((LOOP, name, "phase"))) for name in PHASES]
        rows = [_row(LOOP, name, "phase", t.calls, t.total_ns, t.max_ns, run_ns)
                for name, t in phases if t is not None and t.calls]
        plugin_calls = sum(t.calls for (_, _, kind), t in self._timers.items()
                           if kind in ("plugin", "waited"))
        rows.append(_row(LOOP, "plugins", "phase", plugin_calls, plugin_ns, 0, run_ns))
        accounted = plugin_ns + sum(t.total_ns for _, t in phases if t is not None)
        rows.append(_row(LOOP, "other", "phase", 0, max(run_ns - accounted, 0), 0, run_ns))
        plugins = [_row(name, hook, kind, t.calls, t.total_ns, t.max_ns, run_ns)
                   for (name, hook, kind), t in self._timers.items()
                   if kind != "phase" and t.calls]
        return rows + sorted(plugins, key=lambda row: -row.total_s)

    def run_seconds(self) -> float:
        return self._run_ns() * _NS

    # ---- saving and resuming -------------------------------------------------------------

    def to_saved(self) -> dict[str, Any]:
        """JSON-ready: the run's seconds so far and every row, for checkpoints and
        ``trainer_state.json``."""
        return {"run_s": self.run_seconds(),
                "rows": [asdict(row) for row in self.table()
                         if not (row.name == LOOP and row.hook in ("plugins", "other"))]}

    def restore(self, saved: Any) -> None:
        """Add a checkpoint's totals to this run's (a resumed run continues them)."""
        if not isinstance(saved, dict):
            return
        try:
            rows = [(str(r["name"]), str(r["hook"]), str(r["kind"]), int(r["calls"]),
                     round(float(r["total_s"]) / _NS), round(float(r["max_s"]) / _NS))
                    for r in saved.get("rows", [])]
            run_ns = round(float(saved.get("run_s", 0.0)) / _NS)
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("The checkpoint's plugin timings cannot be read (%s); the timings "
                           "start from this run.", exc)
            return
        self._earlier_run_ns += run_ns
        for name, hook, kind, calls, total_ns, max_ns in rows:
            timer = self.timer(name, hook, kind)
            timer.calls += calls
            timer.total_ns += total_ns
            timer.max_ns = max(timer.max_ns, max_ns)

    # ---- the end of train() --------------------------------------------------------------

    def finish(self, state: Any, args: Any, is_main_process: bool) -> None:
        """After ``train()`` (and the drain of the non-blocking plugins, whose wait is part of
        the run): stop the clock, keep the table in ``state`` (for ``save_state``), and on the
        main process warn about a slow plugin and print the table if ``plugin_report``."""
        self.stop_run()
        state.stateful_callbacks[STATE_KEY] = self.to_saved()
        if not is_main_process:
            return
        self.warn_slow_plugins(getattr(args, "plugin_report_threshold", 0.05),
                               getattr(args, "plugin_report_min_seconds", 1.0))
        if getattr(args, "plugin_report", False):
            print(format_table(self.table(), self.run_seconds()), flush=True)

    def warn_slow_plugins(self, threshold: float, min_seconds: float = 1.0) -> TimingRow | None:
        """One warning naming the plugin row with the largest share above ``threshold``.

        A row must also have taken ``min_seconds`` in all: in a run of a few hundred
        milliseconds (a test, a smoke run) a logger's first write is a large share of nothing,
        and a warning there would be noise the user can do nothing about. Hooks in
        :data:`ONCE_PER_RUN` are in the table but never warned about."""
        slow = [row for row in self.table() if row.kind in ("plugin", "waited")
                and row.hook not in ONCE_PER_RUN
                and row.share > threshold and row.total_s >= min_seconds]
        if not slow:
            return None
        worst = max(slow, key=lambda row: row.share)
        if worst.kind == "waited":  # already off the training thread: the loop waited anyway
            advice = ("It is non-blocking, yet training waited for it (its queue was full, or "
                      "at the end for its last calls): raise logging_steps so it gets fewer "
                      "calls, or make its hook faster")
        else:
            advice = ("Make it non-blocking (nonblocking = true in its [plugins.<name>] table, "
                      "or hooktrain_nonblocking = True on the plugin) so it runs off the "
                      "training thread, or raise logging_steps if it works on every log")
        others = len(slow) - 1
        logger.warning(
            "Plugin %s took %.1f%% of this run's time in %s (%d calls, %.3g s, longest %.3g s)%s. "
            "%s; trainer.plugin_timings or plugin_report=True shows the whole table.",
            worst.name, worst.share * 100, worst.hook, worst.calls, worst.total_s, worst.max_s,
            f"; {others} more plugin hook(s) above {threshold:.0%}" if others else "", advice,
        )
        return worst


def _row(name: str, hook: str, kind: str, calls: int, total_ns: int, max_ns: int,
         run_ns: int) -> TimingRow:
    total = total_ns * _NS
    return TimingRow(name, hook, kind, calls, total, total / calls if calls else 0.0,
                     max_ns * _NS, total_ns / run_ns if run_ns > 0 else 0.0)


def format_table(rows: list[TimingRow], run_seconds: float | None = None) -> str:
    """The table as text, one row per line, for ``plugin_report``."""
    header = ("name", "hook / phase", "kind", "calls", "total s", "mean ms", "max ms", "share")
    cells = [header] + [
        (row.name, row.hook, row.kind, str(row.calls), f"{row.total_s:.3f}",
         f"{row.mean_s * 1e3:.3f}" if row.calls else "", f"{row.max_s * 1e3:.3f}"
         if row.calls and row.max_s else "", f"{row.share:.1%}") for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < 3 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(line, widths))).rstrip()
             for line in cells]
    title = "Where the training time went"
    if run_seconds is not None:
        title += f" ({run_seconds:.2f} s of train())"
    return "\n".join([title + ":", *lines])
