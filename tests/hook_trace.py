"""The golden hook-order traces (``test_hook_order*.py``): their format, key sets and steps.

Each test records every hook with :class:`~hooktrain.testing.HookRecorder`, registered as a user
callback (so after ``DefaultFlowCallback``, as HF's verified traces were taken) on a
``trainers.make_trainer`` trainer (8 samples unless said), and compares the whole run with a
literal list. One entry per call::

    (event, global_step, round(epoch, 2), flags)                   # most events
    (event, global_step, round(epoch, 2), flags, sorted keys)      # on_log, on_evaluate, on_predict

``flags`` is :func:`~hooktrain.testing.control_flags`: L(og) E(valuate) S(ave) sT(op), ``-`` for
none. The reference for every list is transformers' own Trainer (HF 5.23, verified): see
docs/events.md, "Where each event fires", and docs/migrating-from-transformers.md.
"""

from __future__ import annotations

from typing import Any

from hooktrain.testing import HookRecorder

#: Events whose dict argument is part of the trace, and the argument's name.
KEYED = {"on_pre_log": "logs", "on_log": "logs", "on_evaluate": "metrics", "on_predict": "metrics"}

TRAIN_LOG = ("epoch", "grad_norm", "learning_rate", "loss")
EVAL = ("epoch", "eval_loss", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second")
SUMMARY = (
    "epoch", "total_flos", "train_loss", "train_runtime", "train_samples_per_second",
    "train_steps_per_second",
)
TEST = ("test_loss", "test_runtime", "test_samples_per_second", "test_steps_per_second")


def trace(recorder: HookRecorder) -> list[tuple[Any, ...]]:
    """The recorder's calls as comparable tuples (see the module docstring)."""
    rows: list[tuple[Any, ...]] = []
    for call in recorder.calls:
        row: tuple[Any, ...] = (call.event, call.global_step, round(call.epoch, 2), call.flags)
        if call.event in KEYED:
            row += (tuple(sorted(call.payload[KEYED[call.event]])),)
        rows.append(row)
    return rows


def update(gs: int, before: float, after: float, flags: str = "-", micro_batches: int = 1):
    """One optimizer update that starts at ``global_step == gs``.

    ``on_step_begin``, one ``on_substep_end`` per micro-batch that is not the last of its
    accumulation group, ``on_pre_optimizer_step``, ``on_optimizer_step``, then ``on_step_end`` with
    the step counted, the epoch advanced and ``flags`` as ``DefaultFlowCallback`` left them.
    """
    rows = [("on_step_begin", gs, before, "-")]
    rows += [("on_substep_end", gs, before, "-")] * (micro_batches - 1)
    rows += [
        ("on_pre_optimizer_step", gs, before, "-"),
        ("on_optimizer_step", gs, before, "-"),
        ("on_step_end", gs + 1, after, flags),
    ]
    return rows
