"""What the resume tests (``test_resume*.py``) share: a Trainer with a fresh model built from the
same seed, and a first run "crashed" by a callback that raises right after the checkpoint at step K
was written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from hooktrain import TrainerCallback
from hooktrain.testing import RegressionDataset, TinyRegressor, tiny_args
from hooktrain.trainer import Trainer


class Interrupt(Exception):
    """Raised by StopAfterSave: the 'crash' of the first run."""


class StopAfterSave(TrainerCallback):
    """Raises once the checkpoint of step ``step`` exists (on_save fires after the write)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            assert (Path(args.output_dir) / f"checkpoint-{self.step}" / "manifest.json").is_file()
            raise Interrupt(f"stopped after checkpoint-{self.step}")


def make_trainer(
    output_dir: Path, *, dropout: float = 0.0, train_size: int = 16, with_eval: bool = False,
    callbacks: list[Any] = (), compute_metrics: Any = None, **overrides: Any,
) -> Trainer:
    torch.manual_seed(1234)  # a fresh model, identical in every run
    model = TinyRegressor(dropout=dropout)
    values: dict[str, Any] = {"save_strategy": "steps", "save_steps": 1}
    values.update(overrides)
    return Trainer(
        model=model, args=tiny_args(output_dir, **values),
        train_dataset=RegressionDataset(train_size, seed=0),
        eval_dataset=RegressionDataset(8, seed=1) if with_eval else None,
        callbacks=list(callbacks), compute_metrics=compute_metrics,
    )


def run_interrupted(output_dir: Path, stop_at: int, **kwargs: Any) -> None:
    callbacks = [*kwargs.pop("callbacks", []), StopAfterSave(stop_at)]
    trainer = make_trainer(output_dir, callbacks=callbacks, **kwargs)
    with pytest.raises(Interrupt):
        trainer.train()
    assert trainer.state.global_step == stop_at
