"""What the checkpoint tests (``test_checkpoint*.py``) share: tiny runs (16 samples, batch 4: 4
optimizer steps per epoch, 2 epochs by default, a checkpoint every 2 steps), the checkpoints they
leave, and one finished run to copy.

``finished_run`` is a fixture: test modules import it as ``from checkpoint_helpers import
finished_run as finished_run``, which pytest finds by name and linters read as a deliberate
re-export. It is module-scoped, so each test module that uses it trains its own copy once.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from hooktrain.testing import RegressionDataset, TinyRegressor, tiny_args
from hooktrain.trainer import Trainer


def make_trainer(output_dir: Path, *, callbacks: list[Any] = (), compute_metrics: Any = None,
                 **overrides: Any) -> Trainer:
    torch.manual_seed(0)
    model = TinyRegressor()
    values = {"save_strategy": "steps", "save_steps": 2}
    values.update(overrides)
    return Trainer(
        model=model, args=tiny_args(output_dir, **values),
        train_dataset=RegressionDataset(16, seed=0), eval_dataset=RegressionDataset(8, seed=1),
        callbacks=list(callbacks), compute_metrics=compute_metrics,
    )


def train(output_dir: Path, resume: Any = None, **kwargs: Any) -> Trainer:
    trainer = make_trainer(output_dir, **kwargs)
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def checkpoint_names(output_dir: Path) -> list[str]:
    return sorted((p.name for p in output_dir.iterdir() if p.name.startswith("checkpoint-")),
                  key=lambda n: int(n.split("-")[1]))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Trainer]:
    """One finished run with a checkpoint every 2 steps (2, 4, 6, 8) and evaluation."""
    out = tmp_path_factory.mktemp("finished") / "run"
    trainer = train(out, eval_strategy="steps", eval_steps=2)
    return out, trainer


def copy_run(finished_run: tuple[Path, Trainer], tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished_run[0], out)
    return out
