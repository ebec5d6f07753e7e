"""Worker for tests/test_sigkill.py: train a tiny model with resume_from_checkpoint=True.

Usage::

    python tests/sigkill_worker.py OUTPUT_DIR RESULT_FILE     # one run
    python tests/sigkill_worker.py --serve                    # fork server (see below)

A run trains ``TinyRegressor(dropout=0.2)`` on shuffled data with gradient accumulation over an
odd number of batches (72 optimizer steps), saving every 5 steps with ``save_total_limit=3``,
always with ``resume_from_checkpoint=True``: running it again after a crash continues the run.
When training ends it writes the final weights (and the log history as safetensors metadata) to
``RESULT_FILE`` atomically and prints ``DONE <seconds since READY>``. It prints ``READY`` in
``on_train_begin`` (the optimizer is built and any checkpoint restored), so a parent can time a
kill from there.

``SIGKILL_WORKER_KILL`` (or the ``kill`` field of a served command) makes the run SIGKILL
itself at a chosen point:

* ``step:N``        in ``on_step_end`` at global step N (between checkpoints)
* ``on_save:N``     in ``on_save`` at global step N (checkpoint complete, rotation done)
* ``fsync_file:M``  on the M-th ``checkpoint._fsync_file`` call, after the file is fsynced
                    (checkpoint files, then the manifest, in the staging directory)
* ``partial:M``     on the M-th ``_fsync_file`` call, first truncating that file to half its
                    size (a write that had only partly reached the disk)
* ``fsync_dir:M``   on the M-th ``checkpoint._fsync_dir`` call (the staging directory before
                    the rename, or ``output_dir`` after it)
* ``remove:M``      on the M-th ``checkpoint._remove`` call, after the directory was renamed to
                    ``.deleting-*`` and before it is deleted (rotation)

Fork server: importing torch costs a few seconds of CPU per process, too much for the many
restarts of the SIGKILL test. With ``--serve`` the worker imports and warms up once, then for
each JSON line ``{"output_dir": ..., "result": ..., "kill": ...}`` on stdin forks a child process
that does one run exactly as above (the child is a separate process: SIGKILL ends it and
nothing else) and prints ``PID <pid>`` then, when the child is gone, ``EXIT <code>`` (negative:
killed by that signal). The child's ``READY``/``DONE`` lines share the same stdout.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

import torch

torch.set_num_threads(1)

from safetensors.torch import save_file  # noqa: E402

from hooktrain import PrinterCallback, hookimpl  # noqa: E402
from hooktrain.checkpoint import format as ckpt  # noqa: E402
from hooktrain.testing import RegressionDataset, TinyRegressor, tiny_args  # noqa: E402
from hooktrain.trainer import Trainer  # noqa: E402

TRAIN_SIZE = 44  # 11 batches of 4: with accumulation 2, 6 optimizer steps per epoch (2,2,2,2,2,1)
EPOCHS = 12  # 72 steps
SAVE_STEPS = 5
SAVE_TOTAL_LIMIT = 3
TIMING_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second")


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class Ready:
    """Prints READY when the training loop starts (optimizer built, checkpoint restored)."""

    started: float | None = None

    @hookimpl
    def on_train_begin(self):
        Ready.started = time.monotonic()
        print("READY", flush=True)


class KillAtStep:
    def __init__(self, event: str, step: int) -> None:
        self.event = event
        self.step = step

    @hookimpl
    def on_step_end(self, state):
        if self.event == "step" and state.global_step == self.step:
            die()

    @hookimpl
    def on_save(self, state, checkpoint_dir):
        if self.event == "on_save" and state.global_step == self.step:
            die()


def install_kill(spec: str) -> list[object]:
    """Arm the kill point described by ``spec``; returns plugins to register."""
    if not spec:
        return []
    kind, _, value = spec.partition(":")
    number = int(value)
    if kind in ("step", "on_save"):
        return [KillAtStep(kind, number)]
    calls = {"n": 0}

    def counted(original, before_kill=None):
        def wrapper(path, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == number and before_kill is not None:
                before_kill(path)
            result = original(path, *args, **kwargs)
            if calls["n"] == number:
                die()
            return result
        return wrapper

    if kind == "fsync_file":
        ckpt._fsync_file = counted(ckpt._fsync_file)
    elif kind == "partial":
        def truncate(path: Path) -> None:
            size = path.stat().st_size
            with open(path, "r+b") as handle:
                handle.truncate(size // 2)
        ckpt._fsync_file = counted(ckpt._fsync_file, truncate)
    elif kind == "fsync_dir":
        ckpt._fsync_dir = counted(ckpt._fsync_dir)
    elif kind == "remove":
        original_remove = ckpt._remove

        def remove(path: Path) -> None:
            calls["n"] += 1
            if calls["n"] != number:
                original_remove(path)
                return
            doomed = path.with_name(f".deleting-{path.name}-{os.getpid()}")
            os.replace(path, doomed)  # the first half of _remove, then the crash
            die()

        ckpt._remove = remove
    else:
        raise SystemExit(f"unknown SIGKILL_WORKER_KILL kind {kind!r}")
    return []


def run(output_dir: Path, result_file: Path, kill: str) -> None:
    """One run: resume from the newest complete checkpoint (if any) and train to the end."""
    plugins = install_kill(kill)
    torch.manual_seed(1234)
    model = TinyRegressor(dropout=0.2)
    args = tiny_args(
        output_dir, num_train_epochs=EPOCHS, gradient_accumulation_steps=2, logging_steps=3,
        save_strategy="steps", save_steps=SAVE_STEPS, save_total_limit=SAVE_TOTAL_LIMIT,
        learning_rate=1e-2, lr_scheduler_type="cosine", warmup_steps=4,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=RegressionDataset(TRAIN_SIZE, seed=0),
        callbacks=[Ready(), *plugins],
    )
    trainer.pop_callback(PrinterCallback)  # keep the output to READY / DONE
    trainer.train(resume_from_checkpoint=True)
    logs = [{k: v for k, v in entry.items() if not k.endswith(TIMING_SUFFIXES)}
            for entry in trainer.state.log_history]
    weights = {k: v.detach().clone().contiguous() for k, v in trainer.model.state_dict().items()}
    tmp = result_file.with_name(result_file.name + ".tmp")
    save_file(weights, str(tmp), metadata={
        "log_history": json.dumps(logs), "global_step": str(trainer.state.global_step),
    })
    os.replace(tmp, result_file)
    print(f"DONE {time.monotonic() - Ready.started:.4f}", flush=True)


def warm_up() -> None:
    """Import what a run imports lazily (the optimizer pulls in torch._dynamo: ~1 s)."""
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.AdamW([param], fused=True)
    param.grad = torch.ones(2)
    optimizer.step()
    torch.nn.utils.clip_grad_norm_([param], 1.0, foreach=True)


def serve() -> None:
    warm_up()
    print("SERVING", flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: one run, then leave without running the server's cleanup
            code = 0
            try:
                os.close(0)
                run(Path(command["output_dir"]), Path(command["result"]), command.get("kill", ""))
            except BaseException:  # noqa: BLE001 - report anything, exit non-zero
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(f"PID {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"EXIT {os.waitstatus_to_exitcode(status)}", flush=True)


def main() -> None:
    if sys.argv[1:] == ["--serve"]:
        serve()
        return
    output_dir, result_file = Path(sys.argv[1]), Path(sys.argv[2])
    run(output_dir, result_file, os.environ.get("SIGKILL_WORKER_KILL", ""))


if __name__ == "__main__":
    main()
