"""Checkpoint rotation (issue 4; docs/architecture.md, "Checkpoints and resume"):
save_total_limit keeps the newest checkpoints and never deletes the best one or the one being
resumed from.

Every run here is tiny (16 samples, batch 4: 4 optimizer steps per epoch, 2 epochs by default).
"""

from __future__ import annotations

import shutil
from typing import Any

import torch
from checkpoint_runs import checkpoint_names, copy_run, train
from safetensors.torch import load_file

from hooktrain import TrainerCallback

# ---- rotation --------------------------------------------------------------------------------


def test_rotation_keeps_the_newest(tmp_path):
    out = tmp_path / "run"
    seen: list[list[str]] = []

    class Watch(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            seen.append(checkpoint_names(out))

    train(out, save_steps=1, save_total_limit=3, plugins=[Watch()])
    assert checkpoint_names(out) == ["checkpoint-6", "checkpoint-7", "checkpoint-8"]
    assert seen[0] == ["checkpoint-1"]
    assert all(len(names) <= 3 for names in seen)


def _scores(*values: float):
    """compute_metrics that returns the given scores, one per evaluation."""
    calls = iter(values)

    def compute_metrics(prediction: Any) -> dict[str, float]:
        return {"score": next(calls)}

    return compute_metrics


def test_rotation_never_deletes_the_best_checkpoint_hf_limit_2(tmp_path):
    out = tmp_path / "run"
    seen: list[list[str]] = []

    class Watch(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            seen.append(checkpoint_names(out))

    trainer = train(
        out, eval_strategy="steps", eval_steps=2, save_steps=2, save_total_limit=2,
        load_best_model_at_end=True, metric_for_best_model="score", greater_is_better=True,
        compute_metrics=_scores(5.0, 1.0, 2.0, 3.0), plugins=[Watch()],
    )
    assert trainer.state.best_global_step == 2
    assert trainer.state.best_model_checkpoint == str(out / "checkpoint-2")
    # HF: with the best model kept, a limit of 2 leaves [best, newest]
    assert checkpoint_names(out) == ["checkpoint-2", "checkpoint-8"]
    assert all("checkpoint-2" in names for names in seen), seen
    # and the best model is what training ends with
    best = load_file(str(out / "checkpoint-2" / "model.safetensors"))
    final = trainer.model.state_dict()
    assert all(torch.equal(best[k], final[k]) for k in best)


def test_rotation_limit_1_with_best_keeps_best_and_newest(tmp_path):
    out = tmp_path / "run"
    train(
        out, eval_strategy="steps", eval_steps=2, save_steps=2, save_total_limit=1,
        load_best_model_at_end=True, metric_for_best_model="score", greater_is_better=True,
        compute_metrics=_scores(1.0, 9.0, 2.0, 3.0),
    )
    assert checkpoint_names(out) == ["checkpoint-4", "checkpoint-8"]


def test_rotation_when_the_best_is_the_newest(tmp_path):
    out = tmp_path / "run"
    train(
        out, eval_strategy="steps", eval_steps=2, save_steps=2, save_total_limit=2,
        load_best_model_at_end=True, metric_for_best_model="score", greater_is_better=True,
        compute_metrics=_scores(1.0, 2.0, 3.0, 4.0),
    )
    assert checkpoint_names(out) == ["checkpoint-6", "checkpoint-8"]


def test_rotation_never_deletes_the_checkpoint_being_resumed_from(finished_run, tmp_path):
    out = copy_run(finished_run, tmp_path)
    for name in ("checkpoint-6", "checkpoint-8"):
        shutil.rmtree(out / name)
    seen: list[list[str]] = []

    class Watch(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            seen.append(checkpoint_names(out))

    # resume from the *older* of two checkpoints, with a limit of 2
    train(out, resume=str(out / "checkpoint-2"), save_total_limit=2, plugins=[Watch()])
    assert seen, "no checkpoint saved after resuming"
    assert all("checkpoint-2" in names for names in seen), seen
    assert all(len(names) <= 3 for names in seen), seen
    assert "checkpoint-2" in checkpoint_names(out)
    assert "checkpoint-8" in checkpoint_names(out)


def test_rotation_with_resume_true_keeps_the_resumed_checkpoint(finished_run, tmp_path):
    out = copy_run(finished_run, tmp_path)
    (out / "checkpoint-8" / "scheduler.pt").unlink()  # incomplete: resume takes checkpoint-6
    seen: list[list[str]] = []

    class Watch(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            seen.append(checkpoint_names(out))

    train(out, resume=True, save_total_limit=1, max_steps=12, plugins=[Watch()])
    assert seen
    assert all("checkpoint-6" in names for names in seen), seen
