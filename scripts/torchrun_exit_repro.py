"""Count how often a finished two-process ``torchrun`` job fails at exit.

A gloo job whose training ended well can still die at interpreter shutdown (SIGABRT,
``terminate called without an active exception``), and ``torchrun`` then reports the whole run
as failed. The abort needs a native thread of the process group (gloo's ``pt_gloo_runloop`` and
``gloo_tcp_loop``, the store's ``pt_tcpstore_uv``) to still be running when the interpreter
finalizes, and to take the GIL at that moment: rare per run, certain over enough runs. So this
script counts two things over many runs of the job the distributed tests run
(``tests/ddp_worker.py``), optionally beside busy processes that load the CPUs:

- runs that did not exit 0, separating aborts (SIGABRT or ``terminate called``) from others;
- runs in which a worker still had native threads besides the main one after every ``atexit``
  handler ran (the worker records them in ``exit-threads-<rank>.json``): the precondition of
  the abort, which a run shows whether or not it happens to abort.

Logs of every failed run are kept, so a new torch version can be measured the same way:

    python scripts/torchrun_exit_repro.py --runs 200 --load 2
    python scripts/torchrun_exit_repro.py --runs 100 --load 2 --worker-args batch=2 eval=1 save=2

``--load N`` starts N busy-looping processes for the duration (the machine CI runs on has two
cores, and the abort was seen while other tests loaded them); ``--faulthandler`` sets
``PYTHONFAULTHANDLER=1`` in the workers, so an abort prints every Python thread's stack.
Exit status: 0 when every run exited 0 and left no native thread behind, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER = Path(__file__).resolve().parents[1] / "tests" / "ddp_worker.py"


def busy_loop() -> None:
    while True:
        pass


def run_once(workdir: Path, worker_args: list[str], threads: str,
             faulthandler: bool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": threads, "TMPDIR": str(workdir),
           "PYTHONDONTWRITEBYTECODE": "1"}
    if faulthandler:
        env["PYTHONFAULTHANDLER"] = "1"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node=2", str(WORKER), str(workdir / "out"), *worker_args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def leftover_threads(workdir: Path) -> list[str]:
    """Native threads other than the main one that some rank left running into finalization."""
    left = []
    for record in sorted((workdir / "out").glob("exit-threads-*.json")):
        left += [name for name in json.loads(record.read_text()) if name != "python"]
    return left


def classify(result: subprocess.CompletedProcess[str]) -> str:
    if result.returncode == 0:
        return "ok"
    text = result.stdout + result.stderr
    if "terminate called" in text or "Signal 6 (SIGABRT)" in text or "SIGABRT" in text:
        return "abort"
    return "other"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--load", type=int, default=2, help="busy processes beside the runs")
    parser.add_argument("--threads", default="1,2,4",
                        help="OMP_NUM_THREADS values, used in turn (default 1,2,4)")
    parser.add_argument("--faulthandler", action="store_true")
    parser.add_argument("--logs", type=Path, default=Path("runs/torchrun-exit-repro"),
                        help="where the logs of failed runs go")
    parser.add_argument("--worker-args", nargs="*", default=["batch=2", "eval=1", "save=2"])
    options = parser.parse_args()

    threads = options.threads.split(",")
    load = [multiprocessing.Process(target=busy_loop, daemon=True) for _ in range(options.load)]
    for process in load:
        process.start()
    counts = {"ok": 0, "abort": 0, "other": 0}
    threads_left = 0
    started = time.monotonic()
    try:
        for index in range(options.runs):
            with tempfile.TemporaryDirectory(prefix="torchrun-repro-") as tmp:
                result = run_once(Path(tmp), options.worker_args, threads[index % len(threads)],
                                  options.faulthandler)
                left = leftover_threads(Path(tmp))
            threads_left += bool(left)
            kind = classify(result)
            counts[kind] += 1
            if kind != "ok":
                options.logs.mkdir(parents=True, exist_ok=True)
                log = options.logs / f"run-{index:04d}-{kind}.log"
                log.write_text(f"exit {result.returncode}\n--- stdout\n{result.stdout}"
                               f"\n--- stderr\n{result.stderr}")
                print(f"run {index}: {kind} (exit {result.returncode}), log in {log}",
                      flush=True)
            if (index + 1) % 10 == 0:
                print(f"{index + 1} runs: {counts}, threads left at exit in {threads_left}"
                      + (f" (last: {left})" if left else ""), flush=True)
    finally:
        for process in load:
            process.terminate()
    elapsed = time.monotonic() - started
    failed = counts["abort"] + counts["other"]
    print(f"{options.runs} runs in {elapsed:.0f} s with {options.load} busy processes: "
          f"{counts['ok']} exited 0, {counts['abort']} aborted, {counts['other']} failed "
          f"otherwise ({100 * failed / max(options.runs, 1):.1f} % failed); native threads "
          f"outlived the teardown in {threads_left} runs")
    return 0 if failed == 0 and threads_left == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
