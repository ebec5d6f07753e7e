"""No host synchronisation on non-logging steps.

Reading a device tensor on the host (``.item()``, ``float(t)``, ``bool(t)``, ``int(t)``,
``.tolist()``) stalls the host until the device catches up. hooktrain sums the loss on the device
and reads it once per logging step, so between two logs no such call may happen: not in the
loop, not in the default callbacks (DefaultFlowCallback, ProgressCallback, PrinterCallback).

A plugin patches those ``torch.Tensor`` methods with counting wrappers for a window of steps
(from ``on_step_begin`` of the first step in the window to ``on_step_begin`` of the step after
it, so the window covers each step's ``on_step_end`` and log/evaluate/save handling) and
records each call with the line that made it.
"""

from __future__ import annotations

import traceback
from collections import Counter

import pytest
import torch

from hooktrain import Trainer, hookimpl
from hooktrain.testing import RegressionDataset, TinyRegressor, tiny_args

PATCHED = ("item", "__float__", "__bool__", "__int__", "__index__", "tolist")


# Reads of tensors that live on the host by construction: no device is waited for, on CPU or
# CUDA. Each is a (file suffix, function) that a test may allow explicitly.
#: torch's non-fused, non-capturable optimizers keep ``state["step"]`` on the CPU on purpose
#: ("special device hosting for step", torch/optim/adam.py) and read it with ``.item()``.
OPTIMIZER_STEP = ("torch/optim/optimizer.py", "_get_value")
#: Each new DataLoader iterator (one per epoch) draws its base seed from the loader's CPU
#: generator with ``.item()``.
LOADER_SEED = ("torch/utils/data/dataloader.py", "__init__")
#: The sampler draws each epoch's permutation with a CPU generator and reads it with ``.tolist()``.
SAMPLER_ORDER = ("hooktrain/data.py", "__iter__")


class SyncCounter:
    """Patches the host-reading ``torch.Tensor`` methods while active and counts the calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.counts: Counter[str] = Counter()
        self.callers: list[str] = []
        self.sources: list[tuple[str, str]] = []
        self.active = False

    def unexpected(self, allowed=()) -> list[str]:  # type: ignore[no-untyped-def]
        """Recorded calls whose (file, function) is not in ``allowed``."""
        return [
            caller for caller, (filename, function) in zip(self.callers, self.sources)
            if not any(filename.endswith(suffix) and function == name
                       for suffix, name in allowed)
        ]

    def _wrap(self, name: str, original):  # type: ignore[no-untyped-def]
        counter = self

        def wrapper(tensor, *args, **kwargs):  # type: ignore[no-untyped-def]
            if counter.active:
                counter.counts[name] += 1
                frame = traceback.extract_stack(limit=2)[0]
                counter.callers.append(f"{name} at {frame.filename}:{frame.lineno} ({frame.name})")
                counter.sources.append((frame.filename.replace("\\", "/"), frame.name))
            return original(tensor, *args, **kwargs)

        return wrapper

    def start(self) -> None:
        for name in PATCHED:
            self.monkeypatch.setattr(torch.Tensor, name, self._wrap(name, getattr(torch.Tensor, name)))
        self.active = True

    def stop(self) -> None:
        self.active = False
        self.monkeypatch.undo()

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class SyncWindow:
    """Counts host syncs during optimizer steps ``first..last`` (1-based) of the run."""

    def __init__(self, counter: SyncCounter, first: int, last: int) -> None:
        self.counter = counter
        self.first = first
        self.last = last
        self.opened_at: int | None = None
        self.closed_at: int | None = None

    @hookimpl
    def on_step_begin(self, state):  # type: ignore[no-untyped-def]
        # At on_step_begin of step k, global_step == k - 1.
        if state.global_step == self.first - 1:
            self.opened_at = state.global_step + 1
            self.counter.start()
        elif state.global_step == self.last and self.counter.active:
            self.counter.stop()
            self.closed_at = state.global_step

    @hookimpl
    def on_train_end(self):  # type: ignore[no-untyped-def]
        if self.counter.active:  # the window reached the last step
            self.counter.stop()


def _train(tmp_path, counter, first, last, *, train_size=160, **overrides):
    window = SyncWindow(counter, first, last)
    torch.manual_seed(0)
    values = dict(max_steps=40, logging_steps=50, logging_first_step=True,
                  save_strategy="no", eval_strategy="no", disable_tqdm=False)
    values.update(overrides)
    trainer = Trainer(
        model=TinyRegressor(),
        args=tiny_args(tmp_path / "out", **values),
        train_dataset=RegressionDataset(train_size, seed=0),
        callbacks=[window],
    )
    try:
        trainer.train()
    finally:
        if counter.active:
            counter.stop()
    return trainer, window


@pytest.mark.parametrize("disable_tqdm", [False, True], ids=["progress", "printer"])
@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"optim": "sgd", "max_grad_norm": None},
        {"gradient_accumulation_steps": 2, "train_size": 320},
        {"lr_scheduler_type": "cosine", "warmup_steps": 5},
        {"plugin_report": True, "plugin_report_threshold": 0.0, "plugin_report_min_seconds": 0.0},  # timings are always on
    ],
    ids=["defaults", "sgd-noclip", "accumulation", "cosine-warmup", "plugin-report"],
)
def test_no_host_sync_between_logs(tmp_path, monkeypatch, capsys, disable_tqdm, overrides):
    # 160 samples in batches of 4 (320 with accumulation 2): one epoch, so no epoch boundary
    # falls in the window and the count must be exactly zero.
    counter = SyncCounter(monkeypatch)
    trainer, window = _train(tmp_path, counter, 2, 30, disable_tqdm=disable_tqdm, **overrides)
    assert window.opened_at == 2 and window.closed_at == 30
    # The run did log on step 1 (before the window) and at the end (after it).
    assert trainer.state.log_history[0]["step"] == 1
    assert trainer.state.global_step == 40
    assert trainer.state.num_train_epochs == 1
    assert counter.total == 0, "host syncs on non-logging steps:\n" + "\n".join(counter.callers)


def test_no_hooktrain_sync_with_foreach_adamw(tmp_path, monkeypatch, capsys):
    # optim="adamw_torch" (not fused): torch itself reads its CPU-hosted step counter; nothing
    # else may read a tensor.
    counter = SyncCounter(monkeypatch)
    _train(tmp_path, counter, 2, 30, optim="adamw_torch")
    assert counter.counts["item"] > 0  # torch's own step-counter reads are seen
    unexpected = counter.unexpected([OPTIMIZER_STEP])
    assert unexpected == [], "\n".join(unexpected)


def test_counter_sees_the_logging_step(tmp_path, monkeypatch, capsys):
    # The window covers step 5, a logging step: reading the summed loss must be counted.
    counter = SyncCounter(monkeypatch)
    trainer, window = _train(tmp_path, counter, 2, 6, logging_steps=5)
    assert window.closed_at == 6
    assert [e["step"] for e in trainer.state.log_history if "loss" in e][:2] == [1, 5]
    assert counter.counts["item"] >= 1, counter.callers
    # the logged grad norm is read in progress.py, on the logging step only
    assert any("hooktrain/progress.py" in caller for caller in counter.callers), counter.callers


def test_counter_counts_each_kind_of_read(monkeypatch):
    counter = SyncCounter(monkeypatch)
    counter.start()
    try:
        t = torch.tensor(3.0)
        t.item()
        float(t)
        bool(t)
        int(t)
        t.tolist()
    finally:
        counter.stop()
    for name in ("item", "__float__", "__bool__", "__int__", "tolist"):
        assert counter.counts[name] >= 1, name
    # and everything is restored afterwards
    assert torch.Tensor.item is not None and counter.active is False
    before = counter.total
    torch.tensor(1.0).item()
    assert counter.total == before


def test_no_host_sync_across_epoch_boundaries(tmp_path, monkeypatch, capsys):
    # 16 samples in batches of 4: an epoch ends every 4 steps inside the window. Each epoch start
    # reads two host-side values made by CPU generators (the sampler's permutation and the
    # DataLoader's base seed); those are allowed, no other read is.
    counter = SyncCounter(monkeypatch)
    trainer, window = _train(tmp_path, counter, 2, 30, train_size=16)
    assert window.closed_at == 30
    assert trainer.state.num_train_epochs == 10
    assert counter.total > 0  # the per-epoch host-side reads are seen ...
    unexpected = counter.unexpected([LOADER_SEED, SAMPLER_ORDER])
    assert unexpected == [], "\n".join(unexpected)  # ... and nothing else


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_cuda_sync_between_logs(tmp_path):  # pragma: no cover - GPU machines only
    class SyncDebugWindow:
        @hookimpl
        def on_step_begin(self, state):  # type: ignore[no-untyped-def]
            if state.global_step == 1:
                torch.cuda.set_sync_debug_mode("error")
            elif state.global_step == 30:
                torch.cuda.set_sync_debug_mode("default")

    trainer = Trainer(
        model=TinyRegressor(),
        args=tiny_args(tmp_path / "out", max_steps=40, logging_steps=50, logging_first_step=True,
                       disable_tqdm=False),
        train_dataset=RegressionDataset(160, seed=0),
        callbacks=[SyncDebugWindow()],
    )
    try:
        trainer.train()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert trainer.state.global_step == 40
