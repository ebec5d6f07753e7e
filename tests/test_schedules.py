"""Learning-rate schedules and warm-up: the rates HF's schedulers give, logged as HF 5.x logs
them (the rate each step used), and a fresh schedule for each ``train()`` call."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from trainers import make_trainer

from hooktrain import TrainingArguments


def _schedule(kind: str, step: int, warmup: int, total: int) -> float:
    if kind == "constant":
        return 1.0
    if kind == "constant_with_warmup":
        return step / max(1, warmup) if step < warmup else 1.0
    if step < warmup:
        return step / max(1, warmup)
    if kind == "linear":
        return max(0.0, (total - step) / max(1, total - warmup))
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant", "constant_with_warmup"])
@pytest.mark.parametrize("warmup_steps, warmup", [(3, 3), (0, 0), (0.25, 3)])
def test_lr_schedules_match_hf(tmp_path, kind, warmup_steps, warmup):
    base = 0.01
    trainer = make_trainer(
        tmp_path / "out", lr_scheduler_type=kind, warmup_steps=warmup_steps, learning_rate=base,
        logging_steps=1, max_steps=10, train_size=40,
    )
    trainer.train()
    logged = [(e["step"], e["learning_rate"]) for e in trainer.state.log_history
              if "learning_rate" in e]
    assert [s for s, _ in logged] == list(range(1, 11))
    for step, lr in logged:  # the rate the step used, logged before the scheduler moves on (HF 5.x)
        assert lr == pytest.approx(base * _schedule(kind, step - 1, warmup, 10), abs=1e-12), step


def test_warmup_ratio_field(tmp_path):
    trainer = make_trainer(
        tmp_path / "out", warmup_ratio=0.2, learning_rate=0.01, logging_steps=1, max_steps=10,
        train_size=40,
    )
    trainer.train()
    lrs = [e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e]
    np.testing.assert_allclose(lrs, [0.01 * _schedule("linear", s, 2, 10) for s in range(10)])


def test_warmup_steps_below_one_is_a_ratio():
    args = TrainingArguments(warmup_steps=0.25)
    assert args.get_warmup_steps(8) == 2
    assert args.get_warmup_steps(10) == 3  # ceil, as HF
    assert TrainingArguments(warmup_steps=5).get_warmup_steps(100) == 5


def test_a_second_train_call_trains_again_with_a_fresh_schedule(tmp_path) -> None:
    from hooktrain import Trainer
    from hooktrain.testing import RegressionDataset, TinyRegressor, tiny_args

    trainer = Trainer(TinyRegressor(), tiny_args(tmp_path, max_steps=4, logging_steps=1),
                      train_dataset=RegressionDataset(16))
    first = trainer.train()
    weights = [p.detach().clone() for p in trainer.model.parameters()]
    second = trainer.train()
    assert first.global_step == second.global_step == 4
    assert trainer.state.log_history[0]["learning_rate"] == pytest.approx(0.01)  # step 1 used 1e-2
    assert any(not torch.equal(a, b) for a, b in zip(weights, trainer.model.parameters()))
