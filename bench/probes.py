"""Measurements that are not training loops: dispatch cost, timing cost, start-up, host syncs,
slow loggers."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import torch
from workloads import TINY, MemoryLogger, Workload, dataset_for, hooktrain_loop

from hooktrain import TrainerCallback, hookimpl
from hooktrain.plugin_host import HookDispatcher, HooktrainPluginManager
from hooktrain.plugin_host.timings import RunTimings
from hooktrain.trainer_state import TrainerState


class NoOpPlugin:
    @hookimpl
    def on_step_end(self, state, loss):
        return None


class NoOpCallback(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        return None


def dispatch_cost(counts: tuple[int, ...] = (0, 1, 10, 50), calls: int = 20000) -> dict[str, float]:
    """Microseconds per ``on_step_end`` through the dispatcher, by number of plugins."""
    result = {}
    loss = torch.zeros(())
    for label, factory, count in [
        *[(f"{n} pluggy plugins", NoOpPlugin, n) for n in counts],
        ("1 TrainerCallback (bridge)", NoOpCallback, 1),
        ("10 TrainerCallbacks (bridge)", NoOpCallback, 10),
    ]:
        manager = HooktrainPluginManager()
        for _ in range(count):
            manager.register_plugin(factory())
        dispatcher = HookDispatcher(manager)
        dispatcher.set_context(state=TrainerState())
        dispatcher.on_step_end(loss)  # build the table outside the timing
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(calls):
                dispatcher.on_step_end(loss)
            samples.append((time.perf_counter() - start) / calls * 1e6)
        result[label] = statistics.median(samples)
    return result


def timing_overhead(tiny_us_per_step: float, calls: int = 200_000) -> dict[str, float]:
    """What the always-on plugin timings cost: ns per timed plugin call and per timed phase
    (the statements ``HookDispatcher._fire`` and ``TrainingLoop.train_epoch`` add, run on
    their own against an empty loop), the timed calls of one tiny step with the logging plugin,
    and so the share of a tiny step they take (the ratio with timings off, by subtraction)."""
    timings, now = RunTimings(), time.perf_counter_ns
    timer = timings.timer("plugin", "on_step_end", "plugin")

    def empty() -> int:
        start = now()
        for _ in range(calls):
            pass
        return now() - start

    def plugin_calls() -> int:  # as in HookDispatcher._fire, around each plugin call
        begin = now()
        for _ in range(calls):
            outer_nested, timings.nested_ns = timings.nested_ns, 0
            start = now()
            elapsed = now() - start
            own = elapsed - timings.nested_ns
            timings.nested_ns = outer_nested + elapsed
            timer.calls += 1
            timer.total_ns += own
            if own > timer.max_ns:
                timer.max_ns = own
        return now() - begin

    def phases() -> int:  # as in TrainingLoop.train_epoch, around each phase
        begin = now()
        for _ in range(calls):
            start, plugin_ns = now(), timings.nested_ns
            timer.add(now() - start - (timings.nested_ns - plugin_ns))
        return now() - begin

    per_call = statistics.median(plugin_calls() - empty() for _ in range(5)) / calls
    per_phase = statistics.median(phases() - empty() for _ in range(5)) / calls
    work = Workload("timing probe", TINY.sizes, TINY.batch_size, 200)
    trainers: list[Any] = []
    with tempfile.TemporaryDirectory() as tmp:
        hooktrain_loop(work, dataset_for(work), tmp, report_to=_logging_plugin(),
                       plugins=[], keep=trainers)
    rows = trainers[0].plugin_timings
    plugin_calls_per_step = sum(r.calls for r in rows if r.kind in ("plugin", "waited")) / 200
    phases_per_step = sum(r.calls for r in rows if r.kind == "phase" and r.hook in
                          ("data", "forward/backward", "optimizer")) / 200
    per_step_ns = plugin_calls_per_step * per_call + phases_per_step * per_phase
    share = per_step_ns / (tiny_us_per_step * 1e3)
    return {"ns per timed plugin call": per_call, "ns per timed phase": per_phase,
            "timed plugin calls per tiny step": plugin_calls_per_step,
            "timed phases per tiny step": phases_per_step,
            "ns per tiny step": per_step_ns, "share of a tiny hooktrain step": share}


def _logging_plugin() -> Any:
    from hooktrain.plugin_host import discovery

    return ["tensorboard"] if "tensorboard" in discovery.installed_plugins() else "none"


def _wall(code: list[str], repeats: int = 5) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(code, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def startup(repeats: int = 5) -> dict[str, Any]:
    """Seconds for fresh interpreters: torch, hooktrain, the Trainer, ``hooktrain plugins``."""
    python = sys.executable
    check = subprocess.run(
        [python, "-c", "import sys, hooktrain.cli as c; c.main(['plugins']); "
                       "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"],
        check=True, capture_output=True, text=True,
    ).stdout
    listed = subprocess.run([python, "-m", "hooktrain.cli", "plugins", "--json"],
                            check=True, capture_output=True, text=True).stdout
    import json

    return {
        "python -c pass": _wall([python, "-c", "pass"], repeats),
        "import torch": _wall([python, "-c", "import torch"], repeats),
        "import hooktrain": _wall([python, "-c", "import hooktrain"], repeats),
        "from hooktrain import Trainer": _wall(
            [python, "-c", "from hooktrain import Trainer"], repeats),
        "hooktrain plugins": _wall([python, "-m", "hooktrain.cli", "plugins"], repeats),
        "plugins installed": len(json.loads(listed)),
        "plugins imports torch": "NO-TORCH" not in check,
    }


class SyncCounter:
    """Counts tensor-to-host reads between two steps of a run."""

    NAMES = ("item", "__float__", "__bool__", "__int__", "tolist")

    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop, self.count = start, stop, 0
        self._saved: dict[str, Any] = {}

    @hookimpl
    def on_step_begin(self, state):
        if state.global_step == self.start:
            for name in self.NAMES:
                original = self._saved[name] = getattr(torch.Tensor, name)
                setattr(torch.Tensor, name, self._counting(original))

    @hookimpl(trylast=True)
    def on_step_end(self, state):
        if state.global_step == self.stop:
            for name, original in self._saved.items():
                setattr(torch.Tensor, name, original)
            self._saved.clear()

    def _counting(self, original: Any) -> Any:
        def counted(tensor: Any, *args: Any) -> Any:
            self.count += 1
            return original(tensor, *args)

        return counted


def host_syncs(steps: int = 100) -> int:
    """Host reads of tensors during ``steps`` steps that do not log (target 0)."""
    work = Workload("sync probe", TINY.sizes, TINY.batch_size, steps + 20)
    counter = SyncCounter(start=10, stop=10 + steps)
    with tempfile.TemporaryDirectory() as tmp:
        hooktrain_loop(work, dataset_for(work), tmp, plugins=[MemoryLogger(), counter],
                       logging_steps=10_000)
    return counter.count


class SlowLogger:
    """A logger whose every on_log takes ``delay`` seconds (a slow network, a slow disk)."""

    def __init__(self, delay: float, nonblocking: bool) -> None:
        self.delay = delay
        self.hooktrain_nonblocking = nonblocking
        self.calls = 0

    @hookimpl
    def on_log(self, logs):
        time.sleep(self.delay)
        self.calls += 1


def slow_logger(work: Workload, logging_steps: int, delay: float = 0.05,
                rounds: int = 3) -> dict[str, float]:
    """Seconds per step with no logger, a blocking slow logger and a non-blocking one."""
    dataset = dataset_for(work)
    cases = {
        "no logger": lambda: [],
        "blocking": lambda: [SlowLogger(delay, nonblocking=False)],
        "non-blocking": lambda: [SlowLogger(delay, nonblocking=True)],
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for name, plugins in cases.items():
                times[name].append(hooktrain_loop(work, dataset, tmp, plugins=plugins(),
                                                  logging_steps=logging_steps))
    return {name: statistics.median(values) for name, values in times.items()}
