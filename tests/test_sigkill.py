"""SIGKILL at random moments, even in the middle of writing a checkpoint, then resume (issue 4).

``tests/sigkill_worker.py`` trains a tiny model (dropout, shuffled data, gradient accumulation
over an odd number of batches, a checkpoint every 5 of 72 steps, ``save_total_limit=3``) with
``resume_from_checkpoint=True``. It runs once uninterrupted, as a fresh process, for the
reference weights and log history. Then, for each kill point chosen with a seeded
``random.Random``, a run is killed with SIGKILL (from outside after a delay, or by itself at a
chosen step, inside ``on_save``, or inside the checkpoint writer: after the M-th file fsync,
with a half-written file, at a directory fsync, or half-way through deleting a rotated
checkpoint), possibly killed again after the restart, restarted until it finishes, and its final
weights and log history must equal the reference bit for bit. After every kill, each
``checkpoint-*`` directory left behind must be complete with matching hashes.

The runs of the kill points are forked from two warmed-up worker processes (``--serve``), so
torch is imported three times instead of about twenty; each run is still its own process and
SIGKILL ends only it. A served uninterrupted run must match the fresh reference too.

Run with ``-s`` to see every kill point and the counts.
"""

from __future__ import annotations

import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from safetensors import safe_open

from hooktrain import checkpoint as ckpt

WORKER = Path(__file__).with_name("sigkill_worker.py")
SEED = 20240604
KILL_POINTS = 10
TOTAL_STEPS = 72
SAVE_STEPS = 5
SAVES = [*range(SAVE_STEPS, TOTAL_STEPS, SAVE_STEPS), TOTAL_STEPS]  # 15 checkpoints
FILES_PER_CHECKPOINT = 8  # 7 files + the manifest, each fsynced
ROTATIONS = len(SAVES) - 3  # save_total_limit=3
TIMEOUT = 120  # seconds, for any single run


def worker_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("SIGKILL_WORKER_KILL", None)
    return env


@dataclass
class Outcome:
    spec: str  # "" (no kill), "timed:<seconds>" or a SIGKILL_WORKER_KILL value
    returncode: int
    finished: bool  # the run printed DONE (a kill after that did not interrupt training)
    seconds: float | None = None  # READY to DONE

    @property
    def interrupted(self) -> bool:
        return self.returncode == -signal.SIGKILL and not self.finished


class ForkServer:
    """A ``sigkill_worker.py --serve`` process; runs one forked child at a time."""

    def __init__(self, log: Path) -> None:
        self._log = open(log, "ab")  # noqa: SIM115 - closed in close()
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), "--serve"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._log, env=worker_env(),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.ready = False

    def _read(self) -> None:
        for raw in self.proc.stdout:
            self.lines.put(raw.decode().strip())
        self.lines.put(None)

    def _next(self, timeout: float) -> str:
        line = self.lines.get(timeout=timeout)
        if line is None:
            raise RuntimeError(f"the fork server died: {self.log.read_text()[-3000:]}")
        return line

    def run(self, output_dir: Path, result: Path, spec: str) -> Outcome:
        if not self.ready:
            assert self._next(TIMEOUT) == "SERVING"
            self.ready = True
        delay = float(spec.split(":", 1)[1]) if spec.startswith("timed:") else None
        kill = "" if delay is not None else spec
        command = {"output_dir": str(output_dir), "result": str(result), "kill": kill}
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        self.proc.stdin.flush()
        pidfd = ready_at = seconds = None
        finished = sent = False
        started = time.monotonic()
        try:
            while True:
                timeout = TIMEOUT - (time.monotonic() - started)
                armed = (delay is not None and not sent and pidfd is not None and pidfd >= 0
                         and ready_at is not None)
                if armed:
                    timeout = min(timeout, ready_at + delay - time.monotonic())
                try:
                    line = self._next(max(timeout, 0.0))
                except queue.Empty:
                    if armed and time.monotonic() - started < TIMEOUT:
                        sent = True
                        try:  # a pidfd names this very process, never a recycled pid
                            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                        continue
                    raise TimeoutError(f"worker run {command} took over {TIMEOUT} s") from None
                word, _, value = line.partition(" ")
                if word == "PID":
                    try:
                        pidfd = os.pidfd_open(int(value))
                    except ProcessLookupError:
                        pidfd = -1  # already gone: nothing to kill
                elif word == "READY":
                    ready_at = time.monotonic()
                elif word == "DONE":
                    finished, seconds = True, float(value)
                elif word == "EXIT":
                    return Outcome(spec, int(value), finished, seconds)
        finally:
            if pidfd is not None and pidfd >= 0:
                os.close(pidfd)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def run_fresh(output_dir: Path, result: Path, log: Path) -> Outcome:
    """One uninterrupted run in a fresh python process (the script as a user runs it)."""
    with open(log, "ab") as stderr:
        done = subprocess.run(
            [sys.executable, str(WORKER), str(output_dir), str(result)], stdout=subprocess.PIPE,
            stderr=stderr, env=worker_env(), timeout=TIMEOUT, check=False,
        )
    lines = done.stdout.decode().split()
    finished = "DONE" in lines
    seconds = float(lines[lines.index("DONE") + 1]) if finished else None
    return Outcome("", done.returncode, finished, seconds)


def read_result(result: Path) -> tuple[dict, list, int]:
    with safe_open(str(result), "pt") as handle:
        weights = {key: handle.get_tensor(key) for key in handle.keys()}
        metadata = handle.metadata()
    return weights, json.loads(metadata["log_history"]), int(metadata["global_step"])


def compare(result: Path, reference: tuple[dict, list, int]) -> str:
    """'' when ``result`` equals the reference bit for bit, else what differs."""
    weights, logs, step = read_result(result)
    ref_weights, ref_logs, ref_step = reference
    if step != ref_step:
        return f"global_step {step} != {ref_step}"
    if weights.keys() != ref_weights.keys():
        return "different weight names"
    differing = [k for k in ref_weights if not weights[k].equal(ref_weights[k])]
    if differing:
        return f"final weights differ from the uninterrupted run: {differing}"
    if logs != ref_logs:
        return "log_history differs from the uninterrupted run"
    return ""


def whole_checkpoints_problem(output_dir: Path) -> str:
    """Every ``checkpoint-*`` directory left by a kill must be complete and intact."""
    for path in ckpt.list_checkpoints(output_dir):
        reason = ckpt.incomplete_reason(path, check_hashes=True)
        if reason is not None:
            return f"after a kill, {path.name} is not whole: {reason}"
    return ""


def plan_kill_points(train_seconds: float) -> list[list[str]]:
    """Seeded kill points: each a list of kills applied to successive (re)starts."""
    rng = random.Random(SEED)
    kinds = ["timed", "timed", "timed", "step", "on_save", "fsync_file", "partial", "fsync_dir",
             "remove", "partial"]
    assert len(kinds) == KILL_POINTS
    rng.shuffle(kinds)

    def spec(kind: str, early: bool = False) -> str:
        if kind == "timed":
            return f"timed:{rng.uniform(0.01, 0.3 if early else 0.9) * train_seconds:.4f}"
        if kind == "step":
            return f"step:{rng.randint(1, TOTAL_STEPS - 1)}"
        if kind == "on_save":
            return f"on_save:{rng.choice(SAVES)}"
        if kind in ("fsync_file", "partial"):
            top = 3 if early else len(SAVES)
            return f"{kind}:{rng.randint(1, top * FILES_PER_CHECKPOINT)}"
        if kind == "fsync_dir":
            return f"fsync_dir:{rng.randint(1, (3 if early else len(SAVES)) * 2)}"
        return f"remove:{rng.randint(1, ROTATIONS)}"

    plans = []
    for kind in kinds:
        specs = [spec(kind)]
        if rng.random() < 0.5:  # kill the restarted run too, early, so that it lands
            specs.append(spec(rng.choice(["timed", "fsync_file", "partial", "fsync_dir"]), True))
        plans.append(specs)
    return plans


@dataclass
class KillPoint:
    index: int
    specs: list[str]
    outcomes: list[Outcome] = field(default_factory=list)
    problem: str = "not run"
    leftovers: list[str] = field(default_factory=list)  # hidden staging / deleting directories


def run_kill_point(point: KillPoint, server: ForkServer, root: Path,
                   reference: tuple[dict, list, int]) -> None:
    output_dir = root / f"point-{point.index}"
    result = root / f"point-{point.index}.safetensors"
    specs = [*point.specs, "", "", ""]  # the kills, then restarts until it finishes
    for attempt, spec in enumerate(specs):
        if result.exists():
            break
        outcome = server.run(output_dir, result, spec)
        point.outcomes.append(outcome)
        while attempt == 0 and spec.startswith("timed:") and outcome.finished:
            # the machine ran faster than the reference: start over with half the delay
            if float(spec.split(":")[1]) < 0.001:
                break
            shutil.rmtree(output_dir)
            result.unlink()
            spec = f"timed:{float(spec.split(':')[1]) / 2:.4f}"
            outcome = server.run(output_dir, result, spec)
            point.outcomes.append(outcome)
        if outcome.returncode not in (0, -signal.SIGKILL) or (not spec and not outcome.finished):
            point.problem = f"worker exited with {outcome.returncode}; see {server.log}"
            return
        if outcome.returncode == -signal.SIGKILL:
            point.problem = whole_checkpoints_problem(output_dir)
            if point.problem:
                return
    if not result.exists():
        point.problem = "the run never finished"
        return
    point.problem = compare(result, reference)
    point.leftovers = sorted(p.name for p in output_dir.iterdir() if p.name.startswith("."))


def test_sigkill_at_random_points_then_resume_gives_identical_weights(tmp_path):
    started = time.monotonic()
    servers = [ForkServer(tmp_path / f"server-{i}.log") for i in range(2)]  # import meanwhile
    try:
        ref_dir, ref_result = tmp_path / "reference", tmp_path / "reference.safetensors"
        fresh = run_fresh(ref_dir, ref_result, tmp_path / "reference.log")
        assert fresh.returncode == 0 and fresh.finished, (tmp_path / "reference.log").read_text()
        reference = read_result(ref_result)
        assert reference[2] == TOTAL_STEPS
        assert sorted(p.name for p in ref_dir.iterdir()) == [
            "checkpoint-65", "checkpoint-70", "checkpoint-72"]

        # a served run behaves exactly like a fresh process
        served = servers[0].run(tmp_path / "served", tmp_path / "served.safetensors", "")
        assert served.returncode == 0 and served.finished
        assert compare(tmp_path / "served.safetensors", reference) == ""

        plans = plan_kill_points(min(fresh.seconds, served.seconds))
        points = [KillPoint(i, specs) for i, specs in enumerate(plans)]
        free: queue.Queue[ForkServer] = queue.Queue()
        for server in servers:
            free.put(server)

        def work(point: KillPoint) -> None:
            server = free.get()
            try:
                run_kill_point(point, server, tmp_path, reference)
            finally:
                free.put(server)

        with ThreadPoolExecutor(max_workers=len(servers)) as pool:
            list(pool.map(work, points))
    finally:
        for server in servers:
            server.close()

    kills = sum(o.interrupted for p in points for o in p.outcomes)
    identical = sum(not p.problem for p in points)
    for p in points:
        trail = " -> ".join(
            (o.spec or "restart") + (" [KILLED]" if o.interrupted else
                                     " [killed after DONE]" if o.returncode else "")
            for o in p.outcomes)
        left = f" (left behind: {', '.join(p.leftovers)})" if p.leftovers else ""
        print(f"kill point {p.index}: {trail}: {p.problem or 'identical'}{left}")
    print(f"SIGKILL test: {len(points)} kill points tried, {kills} SIGKILLs landed during "
          f"training, {identical}/{len(points)} resumed with identical weights and log history "
          f"(uninterrupted training {fresh.seconds:.2f} s, "
          f"test {time.monotonic() - started:.1f} s)")

    problems = [f"kill point {p.index} {p.specs}: {p.problem}" for p in points if p.problem]
    assert not problems, "\n".join(problems)
    missed = [p.specs for p in points if not any(o.interrupted for o in p.outcomes)]
    assert not missed, f"kill points where no SIGKILL interrupted training: {missed}"
    assert identical == KILL_POINTS


def test_kill_inside_the_first_checkpoint_write_leaves_nothing_that_looks_like_one(tmp_path):
    """Killed while the very first checkpoint is staged, or right after its rename."""
    server = ForkServer(tmp_path / "server.log")
    try:
        for spec, expected in [("partial:3", []), ("fsync_file:8", []),
                               ("fsync_dir:1", []), ("fsync_dir:2", ["checkpoint-5"])]:
            out = tmp_path / spec.replace(":", "-")
            outcome = server.run(out, tmp_path / "unused", spec)
            assert outcome.interrupted, spec
            names = sorted(p.name for p in out.iterdir())
            assert [n for n in names if n.startswith("checkpoint-")] == expected, (spec, names)
            assert all(n.startswith((".tmp-checkpoint-5-", "checkpoint-5")) for n in names), names
            if expected:
                assert ckpt.incomplete_reason(out / "checkpoint-5", check_hashes=True) is None
            # a restart (resuming from checkpoint-5 or from scratch) gets past it
            outcome = server.run(out, tmp_path / f"{out.name}.safetensors", "step:7")
            assert outcome.interrupted
            assert ckpt.newest_complete_checkpoint(out) == (out / "checkpoint-5")
    finally:
        server.close()
