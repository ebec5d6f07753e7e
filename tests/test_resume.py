"""Resume: bit-identical parity with an uninterrupted run (issue 4).

The interrupted run uses the *full-length* arguments (so the learning-rate schedule is the same)
and is stopped by a callback that raises right after the checkpoint at step K was written. The
resumed run is a new Trainer with a fresh model built from the same seed. Every plugin's state is
in ``test_resume_plugin_state.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from checkpoint_runs import Interrupt, StopAfterSave, resumable_trainer, run_interrupted

from hooktrain.testing import HookRecorder
from hooktrain.trainer import Trainer

TIMING_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second")


def comparable_logs(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in entry.items() if not k.endswith(TIMING_SUFFIXES)}
            for entry in log_history]


def assert_identical(expected: Trainer, got: Trainer) -> None:
    """Weights, optimizer, scheduler, progress and logs are equal, bit for bit."""
    assert got.state.global_step == expected.state.global_step
    assert got.state.epoch == expected.state.epoch
    exp_params = dict(expected.model.named_parameters())
    got_params = dict(got.model.named_parameters())
    assert exp_params.keys() == got_params.keys()
    for name, value in exp_params.items():
        assert torch.equal(value, got_params[name]), f"parameter {name} differs"
    exp_opt, got_opt = expected.optimizer.state_dict(), got.optimizer.state_dict()
    assert exp_opt["param_groups"] == got_opt["param_groups"]
    assert exp_opt["state"].keys() == got_opt["state"].keys()
    for index, tensors in exp_opt["state"].items():
        assert tensors.keys() == got_opt["state"][index].keys()
        for key, value in tensors.items():
            other = got_opt["state"][index][key]
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, other), f"optimizer state {index}/{key} differs"
            else:
                assert value == other, f"optimizer state {index}/{key} differs"
    assert expected.lr_scheduler.state_dict() == got.lr_scheduler.state_dict()
    exp_logs = comparable_logs(expected.state.log_history)
    got_logs = comparable_logs(got.state.log_history)
    for key in ("loss", "grad_norm", "learning_rate", "eval_loss"):
        exp_values = [(e["step"], e[key]) for e in exp_logs if key in e]
        got_values = [(e["step"], e[key]) for e in got_logs if key in e]
        assert got_values == exp_values, f"log_history {key!r} differs"
    assert got_logs == exp_logs
    assert got.state.best_metric == expected.state.best_metric
    assert got.state.best_global_step == expected.state.best_global_step


PARITY_CASES = {
    # name: (stop_at, make_trainer keyword arguments)
    "plain": (4, {"num_train_epochs": 3}),
    "plain_first_step": (1, {"num_train_epochs": 2}),
    "grad_accum_odd_batches_mid_epoch": (
        4, {"gradient_accumulation_steps": 2, "train_size": 20, "num_train_epochs": 3}),
    "grad_accum_odd_batches_before_short_group": (
        2, {"gradient_accumulation_steps": 2, "train_size": 20, "num_train_epochs": 3}),
    "grad_accum_odd_batches_epoch_end": (
        3, {"gradient_accumulation_steps": 2, "train_size": 20, "num_train_epochs": 3}),
    "mid_epoch_inside_a_logging_window": (6, {"num_train_epochs": 3, "logging_steps": 4}),
    "dropout": (6, {"dropout": 0.2, "num_train_epochs": 3, "logging_steps": 4}),
    "several_epochs_shuffled": (9, {"num_train_epochs": 5, "logging_steps": 3}),
    "eval_during_training": (
        6, {"eval_size": 8, "eval_strategy": "steps", "eval_steps": 3, "num_train_epochs": 3}),
    "epoch_strategies": (
        8, {"num_train_epochs": 3, "save_strategy": "epoch", "logging_strategy": "epoch",
            "eval_size": 8, "eval_strategy": "epoch"}),
    "max_steps_mid_epoch": (5, {"max_steps": 10, "logging_steps": 3}),
    "drop_last_grad_accum": (
        3, {"dataloader_drop_last": True, "train_size": 30, "gradient_accumulation_steps": 3,
            "num_train_epochs": 4, "dropout": 0.2}),
    "best_model_at_end_with_rotation": (
        6, {"num_train_epochs": 3, "eval_size": 8, "eval_strategy": "steps", "eval_steps": 2,
            "save_steps": 2, "save_total_limit": 2, "load_best_model_at_end": True,
            "dropout": 0.2, "learning_rate": 0.5}),  # best: step 4, before the stop
    "everything": (
        5, {"dropout": 0.2, "gradient_accumulation_steps": 2, "train_size": 22,
            "num_train_epochs": 4, "eval_size": 8, "eval_strategy": "steps", "eval_steps": 2,
            "logging_steps": 3, "lr_scheduler_type": "cosine", "warmup_steps": 2}),
}


@pytest.mark.parametrize("case", list(PARITY_CASES))
def test_resume_parity(tmp_path, case):
    stop_at, kwargs = PARITY_CASES[case]
    reference = resumable_trainer(tmp_path / "reference", **kwargs)
    ref_output = reference.train()
    ref_rng = torch.get_rng_state()
    assert 0 < stop_at < reference.state.global_step

    out = tmp_path / "run"
    run_interrupted(out, stop_at, **kwargs)
    resumed = resumable_trainer(out, **kwargs)
    output = resumed.train(resume_from_checkpoint=str(out / f"checkpoint-{stop_at}"))

    assert_identical(reference, resumed)
    assert output.global_step == ref_output.global_step
    assert output.training_loss == ref_output.training_loss
    assert torch.equal(torch.get_rng_state(), ref_rng)


def test_resume_parity_with_resume_true_and_a_second_interruption(tmp_path):
    kwargs = {"dropout": 0.2, "num_train_epochs": 4, "logging_steps": 3,
              "gradient_accumulation_steps": 2, "train_size": 20}
    reference = resumable_trainer(tmp_path / "reference", **kwargs)
    reference.train()
    out = tmp_path / "run"
    run_interrupted(out, 2, **kwargs)
    first = resumable_trainer(out, plugins=[StopAfterSave(7)], **kwargs)
    with pytest.raises(Interrupt):
        first.train(resume_from_checkpoint=True)
    resumed = resumable_trainer(out, **kwargs)
    resumed.train(resume_from_checkpoint=True)
    assert_identical(reference, resumed)


def test_resume_of_a_finished_run_trains_no_extra_step(tmp_path):
    out = tmp_path / "run"
    first = resumable_trainer(out, save_steps=3, dropout=0.2)
    first.train()
    assert first.state.global_step == 8
    weights = {k: v.clone() for k, v in first.model.state_dict().items()}
    recorder = HookRecorder()
    again = resumable_trainer(out, save_steps=3, dropout=0.2, plugins=[recorder])
    output = again.train(resume_from_checkpoint=True)
    assert output.global_step == 8
    assert again.state.global_step == 8
    assert recorder.of("on_step_end") == [] and recorder.of("on_step_begin") == []
    for key, value in again.model.state_dict().items():
        assert torch.equal(value, weights[key]), key
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-3", "checkpoint-6", "checkpoint-8"]


def test_on_load_checkpoint_fires_after_restore_before_train_begin(tmp_path):
    out = tmp_path / "run"
    run_interrupted(out, 3)
    recorder = HookRecorder()
    trainer = resumable_trainer(out, plugins=[recorder])
    trainer.train(resume_from_checkpoint=True)
    loads = recorder.of("on_load_checkpoint")
    assert len(loads) == 1
    assert loads[0].global_step == 3
    assert Path(loads[0].payload["checkpoint_dir"]).name == "checkpoint-3"
    events = recorder.events
    assert events.index("on_load_checkpoint") < events.index("on_train_begin")
