"""The timed workloads: a plain PyTorch loop and hooktrain doing the same work.

Same model, data, optimizer (fused AdamW where torch has it), gradient clipping at 1.0 and linear
schedule on both sides; the data goes through the same ``DataLoader`` collation. Each function
returns seconds per optimizer step.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hooktrain import hookimpl


@dataclass(frozen=True)
class Workload:
    name: str
    sizes: tuple[int, ...]  # layer widths, input first
    batch_size: int
    steps: int


TINY = Workload("tiny MLP 32-64-64-2", (32, 64, 64, 2), 32, 2000)
MEDIUM = Workload("medium MLP 512-2048-2048-10", (512, 2048, 2048, 10), 64, 150)


class MLP(nn.Module):
    """An MLP that takes a batch dict and returns ``{"loss", "logits"}`` like an HF model."""

    def __init__(self, sizes: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.net(x)
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}


class RandomClassification(torch.utils.data.Dataset):
    def __init__(self, n: int, features: int, classes: int, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, features, generator=generator)
        self.y = torch.randint(0, classes, (n,), generator=generator)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[index], "labels": self.y[index]}


def dataset_for(work: Workload) -> RandomClassification:
    return RandomClassification(work.steps * work.batch_size, work.sizes[0], work.sizes[-1])


def fused_available() -> bool:
    try:
        torch.optim.AdamW([nn.Parameter(torch.zeros(1))], fused=True)
        return True
    except (RuntimeError, TypeError, ValueError):
        return False


def plain_loop(work: Workload, dataset: Any) -> float:
    """What a user writes by hand: the reference every ratio divides by."""
    torch.manual_seed(0)
    model = MLP(work.sizes)
    kwargs = {"fused": True} if fused_available() else {}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, **kwargs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(0.0, (work.steps - step) / work.steps)
    )
    generator = torch.Generator().manual_seed(0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=work.batch_size, shuffle=True,
                                         generator=generator)
    start = time.perf_counter()
    model.train()
    for batch in loader:
        loss = model(**batch)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / len(loader)


class MemoryLogger:
    """A logging plugin that keeps what it is given (stands in when TensorBoard is absent)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    @hookimpl
    def on_log(self, state: Any, logs: dict[str, Any]) -> None:
        self.records.append({"step": state.global_step, **logs})


def hooktrain_loop(work: Workload, dataset: Any, output_dir: str,
                   plugins: list[Any] | None = None, logging_steps: int = 50,
                   report_to: Any = "none", keep: list[Any] | None = None) -> float:
    """hooktrain with its defaults on: flow, progress bar, and the given logging plugins
    (``keep`` gets the trainer, for its ``plugin_timings``)."""
    from hooktrain import Trainer, TrainingArguments

    torch.manual_seed(0)
    args = TrainingArguments(
        output_dir=output_dir, max_steps=work.steps, per_device_train_batch_size=work.batch_size,
        learning_rate=1e-3, logging_steps=logging_steps, save_strategy="no",
        report_to=report_to, remove_unused_columns=False, seed=0,
    )
    trainer = Trainer(MLP(work.sizes), args, train_dataset=dataset,
                      callbacks=plugins if plugins is not None else [MemoryLogger()])
    with quiet_output():
        start = time.perf_counter()
        trainer.train()
        elapsed = time.perf_counter() - start
    if keep is not None:
        keep.append(trainer)
    return elapsed / work.steps


@contextlib.contextmanager
def quiet_output():  # type: ignore[no-untyped-def]
    """Progress bars and log lines still print (their cost counts), but not over the table."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with open(os.devnull, "w") as devnull:
        for fd in saved:
            os.dup2(devnull.fileno(), fd)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)


def interleaved(candidates: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Run each candidate once per round, A B C A B C ..., so drift hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, run in candidates.items():
            times[name].append(run())
    return times
