"""hooktrain's benchmarks: one command, a table on stdout, the numbers as JSON.

    python bench/run.py                  # full run, a few minutes on 2 CPU cores
    python bench/run.py --smoke          # seconds: every section runs, no number means anything

Every training figure is a ratio against a plain PyTorch loop doing the same work in the same
process, interleaved (plain, hooktrain, [HF, Lightning], plain, ...), median over rounds, with
one torch thread on both sides (two shared cores make two threads noisy).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import others  # noqa: E402
import probes  # noqa: E402
from workloads import (  # noqa: E402
    MEDIUM,
    TINY,
    Workload,
    dataset_for,
    hooktrain_loop,
    interleaved,
    plain_loop,
)


def training_ratios(work: Workload, rounds: int) -> dict[str, Any]:
    dataset = dataset_for(work)
    report_to = _report_to()
    plugins = None if report_to == "none" else []  # None: hooktrain_loop's memory logger
    with tempfile.TemporaryDirectory() as tmp:
        candidates = {
            "plain": lambda: plain_loop(work, dataset),
            "hooktrain": lambda: hooktrain_loop(work, dataset, tmp, plugins=plugins,
                                                report_to=report_to),
        }
        for name, run in others.available().items():
            candidates[name] = lambda run=run: run(work, dataset, tmp)
        plain_loop(work, dataset)  # warm-up: first optimizer creation compiles kernels
        times = interleaved(candidates, rounds)
    plain = times["plain"]
    result: dict[str, Any] = {"plain us/step": statistics.median(plain) * 1e6}
    for name, values in times.items():
        if name == "plain":
            continue
        ratios = [v / p for v, p in zip(values, plain)]
        result[name] = {"ratio": statistics.median(ratios), "min": min(ratios),
                        "max": max(ratios)}
    return result


def _report_to() -> Any:
    """The TensorBoard plugin as the logging plugin when installed, else a memory logger."""
    from hooktrain.plugin_host import discovery

    return ["tensorboard"] if "tensorboard" in discovery.installed_plugins() else "none"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default="bench/results/latest.json")
    options = parser.parse_args(argv)
    torch.set_num_threads(1)
    tiny, medium, rounds = TINY, MEDIUM, options.rounds
    if options.smoke:
        tiny, medium, rounds = replace(TINY, steps=20), replace(MEDIUM, steps=3), 1
    report: dict[str, Any] = {
        "machine": f"{platform.machine()} {platform.processor() or ''} "
                   f"{torch.get_num_threads()} torch thread(s), torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "logging plugin": _report_to(),
    }
    report["tiny"] = training_ratios(tiny, rounds)
    report["medium"] = training_ratios(medium, rounds)
    report["dispatch us/event"] = probes.dispatch_cost(calls=200 if options.smoke else 20000)
    tiny_us = report["tiny"]["plain us/step"] * report["tiny"]["hooktrain"]["ratio"]
    timing = report["plugin timings"] = probes.timing_overhead(
        tiny_us, calls=2000 if options.smoke else 200_000)
    # the same run without the timings: their cost taken out of the hooktrain step
    timing["tiny ratio without timings"] = report["tiny"]["hooktrain"]["ratio"] * (
        1 - timing["share of a tiny hooktrain step"])
    report["startup s"] = probes.startup(repeats=1 if options.smoke else 5)
    slow_work = replace(tiny, steps=200 if not options.smoke else 4)
    report["slow logger (50 ms), s/step"] = {
        "logging_steps=1, 200 steps": probes.slow_logger(slow_work, 1, rounds=1),
        f"logging_steps=100, {tiny.steps} steps": probes.slow_logger(
            tiny, 100, rounds=1 if options.smoke else 3),
    }
    report["host syncs per 100 non-logging steps"] = probes.host_syncs(
        100 if not options.smoke else 5)
    print(format_table(report))
    path = Path(options.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {path}")
    return 0


def format_table(report: dict[str, Any]) -> str:
    lines = [f"machine: {report['machine']}", f"date: {report['date']}",
             f"logging plugin: {report['logging plugin']}", ""]
    for key in ("tiny", "medium"):
        section = report[key]
        lines.append(f"{key}: plain loop {section['plain us/step']:.0f} us/step")
        for name, value in section.items():
            if isinstance(value, dict):
                lines.append(f"  {name:<12} {value['ratio']:.3f}x  "
                             f"(min {value['min']:.3f}, max {value['max']:.3f})")
    lines.append("dispatch, us per on_step_end:")
    lines += [f"  {k:<30} {v:7.2f}" for k, v in report["dispatch us/event"].items()]
    timing = report["plugin timings"]
    lines.append(f"plugin timings: {timing['ns per timed plugin call']:.0f} ns per plugin call, "
                 f"{timing['ns per timed phase']:.0f} ns per phase; "
                 f"{timing['timed plugin calls per tiny step']:.1f} calls and "
                 f"{timing['timed phases per tiny step']:.0f} phases per tiny step = "
                 f"{timing['ns per tiny step'] / 1e3:.2f} us "
                 f"({timing['share of a tiny hooktrain step']:.2%} of it); tiny "
                 f"{report['tiny']['hooktrain']['ratio']:.3f}x with, "
                 f"{timing['tiny ratio without timings']:.3f}x without")
    lines.append("start-up, s:")
    lines += [f"  {k:<30} {v if not isinstance(v, float) else round(v, 3)}"
              for k, v in report["startup s"].items()]
    lines.append("slow logger, ms/step (no logger | blocking | non-blocking):")
    for name, values in report["slow logger (50 ms), s/step"].items():
        cells = " | ".join(f"{values[k] * 1e3:.2f}" for k in
                           ("no logger", "blocking", "non-blocking"))
        ratio = values["non-blocking"] / values["no logger"]
        lines.append(f"  {name:<30} {cells}   non-blocking {ratio:.2f}x")
    lines.append(f"host syncs per 100 non-logging steps: "
                 f"{report['host syncs per 100 non-logging steps']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
