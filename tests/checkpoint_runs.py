"""Runs that leave checkpoints, for the checkpoint tests (``test_checkpoint*.py``) and the resume
tests (``test_resume*.py``). Both build their trainers with :func:`trainers.make_trainer`.

* checkpoint tests: 16 samples, batch 4 (4 optimizer steps per epoch, 2 epochs by default), a
  checkpoint every 2 steps, model seed 0 (:func:`checkpointing_trainer`, :func:`train`); the
  ``finished_run`` fixture in ``conftest.py`` is one such run to copy (:func:`copy_run`).
* resume tests: a checkpoint every step, no evaluation unless asked, and a fresh model built
  from seed 1234 in every run (:func:`resumable_trainer`); :func:`run_interrupted` is a first run
  "crashed" by a callback that raises right after the checkpoint at step K was written.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from trainers import make_trainer

from hooktrain import TrainerCallback
from hooktrain.trainer import Trainer


def checkpointing_trainer(output_dir: Path, **kwargs: Any) -> Trainer:
    """:func:`make_trainer` with a checkpoint every 2 steps and model seed 0 (all overridable)."""
    return make_trainer(output_dir, **{"model_seed": 0, "save_strategy": "steps", "save_steps": 2,
                                       **kwargs})


def train(output_dir: Path, resume: Any = None, **kwargs: Any) -> Trainer:
    """A :func:`checkpointing_trainer`, trained (``resume`` is ``resume_from_checkpoint``)."""
    trainer = checkpointing_trainer(output_dir, **kwargs)
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def checkpoint_names(output_dir: Path) -> list[str]:
    return sorted((p.name for p in output_dir.iterdir() if p.name.startswith("checkpoint-")),
                  key=lambda n: int(n.split("-")[1]))


def copy_run(finished_run: tuple[Path, Trainer], tmp_path: Path) -> Path:
    """A copy of the ``finished_run`` fixture's output folder, for a test to damage or resume."""
    out = tmp_path / "run"
    shutil.copytree(finished_run[0], out)
    return out


# ---- resume ------------------------------------------------------------------------------------


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


def resumable_trainer(output_dir: Path, **kwargs: Any) -> Trainer:
    """:func:`make_trainer` with a checkpoint every step, no evaluation (``eval_size=8`` for
    some) and model seed 1234: a fresh model, identical in every run (all overridable)."""
    return make_trainer(output_dir, **{"model_seed": 1234, "eval_size": 0,
                                       "save_strategy": "steps", "save_steps": 1, **kwargs})


def run_interrupted(output_dir: Path, stop_at: int, **kwargs: Any) -> None:
    """A :func:`resumable_trainer` run stopped right after writing ``checkpoint-{stop_at}``."""
    plugins = [*kwargs.pop("plugins", []), StopAfterSave(stop_at)]
    trainer = resumable_trainer(output_dir, plugins=plugins, **kwargs)
    with pytest.raises(Interrupt):
        trainer.train()
    assert trainer.state.global_step == stop_at
