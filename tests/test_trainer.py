"""Trainer: what train/evaluate/predict log and return, HF's numbers, optimisation, data and
checkpoints (what a model may return: test_model_conventions.py)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from trainers import assert_same_weights, mae, make_trainer, seeded_model, weights

from hooktrain import Trainer
from hooktrain.testing import HookRecorder, RegressionDataset, tiny_args

TRAIN_LOG_KEYS = ["loss", "grad_norm", "learning_rate", "epoch"]
FINAL_LOG_KEYS = {"train_runtime", "train_samples_per_second", "train_steps_per_second",
                  "total_flos", "train_loss", "epoch"}
SPEED_KEYS = ["runtime", "samples_per_second", "steps_per_second"]


class XOnly(torch.utils.data.Dataset):
    """Inputs without labels."""

    def __init__(self, n: int) -> None:
        self.inner = RegressionDataset(n, seed=2)

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.inner[i]["x"]}


# ---- what train() logs -------------------------------------------------------------------


def test_train_logs_have_hf_keys(tmp_path):
    recorder = HookRecorder()
    trainer = make_trainer(tmp_path / "out", plugins=[recorder], logging_steps=2)
    output = trainer.train()
    assert output.global_step == 8  # 16 samples / batch 4 x 2 epochs

    train_logs = [c.payload["logs"] for c in recorder.of("on_log")][:-1]
    assert [c.global_step for c in recorder.of("on_log")][:-1] == [2, 4, 6, 8]
    for logs in train_logs:
        assert list(logs) == TRAIN_LOG_KEYS
        assert all(isinstance(logs[k], float) for k in ("loss", "grad_norm", "learning_rate"))

    history = trainer.state.log_history
    assert len(history) == 5
    for entry, step in zip(history[:-1], [2, 4, 6, 8]):
        assert list(entry) == TRAIN_LOG_KEYS + ["step"]
        assert entry["step"] == step
        assert entry["epoch"] == pytest.approx(step / 4)

    final = history[-1]
    assert set(final) == FINAL_LOG_KEYS | {"step"}
    assert final["step"] == 8 and final["epoch"] == pytest.approx(2.0)
    assert set(recorder.of("on_log")[-1].payload["logs"]) == FINAL_LOG_KEYS
    assert set(output.metrics) == FINAL_LOG_KEYS
    assert output.metrics["train_loss"] == pytest.approx(output.training_loss)
    assert final["train_loss"] == pytest.approx(output.training_loss)


@pytest.mark.parametrize("max_grad_norm", [None, 0.0])
def test_grad_norm_is_measured_without_clipping_as_in_hf_5(tmp_path, max_grad_norm):
    clipped = make_trainer(tmp_path / "clip", logging_steps=2, max_grad_norm=1e-3)
    free = make_trainer(tmp_path / "free", logging_steps=2, max_grad_norm=max_grad_norm)
    for trainer in (clipped, free):
        trainer.train()
    first = free.state.log_history[0]
    assert list(first) == ["loss", "grad_norm", "learning_rate", "epoch", "step"]
    assert first["grad_norm"] > 1e-3, "the norm before any clipping"
    assert clipped.state.log_history[0]["grad_norm"] == pytest.approx(first["grad_norm"])
    assert not torch.equal(clipped.model.net[0].weight, free.model.net[0].weight), "one clips"


def test_logged_loss_is_mean_of_step_losses_since_last_log(tmp_path):
    recorder = HookRecorder()
    trainer = make_trainer(
        tmp_path / "out", plugins=[recorder], logging_steps=3, num_train_epochs=2,
    )
    output = trainer.train()
    step_losses = [c.payload["loss"].item() for c in recorder.of("on_step_end")]
    assert len(step_losses) == 8
    assert len(set(step_losses)) > 1
    logs = [e for e in trainer.state.log_history if "loss" in e]
    assert [e["step"] for e in logs] == [3, 6]
    assert logs[0]["loss"] == pytest.approx(np.mean(step_losses[0:3]), rel=1e-6)
    assert logs[1]["loss"] == pytest.approx(np.mean(step_losses[3:6]), rel=1e-6)
    # train_loss averages every step, including the two after the last log.
    assert output.training_loss == pytest.approx(np.mean(step_losses), rel=1e-6)


def test_logged_loss_with_gradient_accumulation_is_mean_per_step(tmp_path):
    recorder = HookRecorder()
    trainer = make_trainer(
        tmp_path / "out", plugins=[recorder], logging_steps=2, per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
    )
    trainer.train()
    step_losses = [c.payload["loss"].item() for c in recorder.of("on_step_end")]
    assert len(step_losses) == 8
    logs = [e for e in trainer.state.log_history if "loss" in e]
    for index, entry in enumerate(logs):
        assert entry["loss"] == pytest.approx(np.mean(step_losses[2 * index:2 * index + 2]),
                                              rel=1e-6)


# ---- evaluate / predict --------------------------------------------------------------------


def test_evaluate_metric_keys(tmp_path):
    recorder = HookRecorder()
    trainer = make_trainer(tmp_path / "out", plugins=[recorder], compute_metrics=mae)
    trainer.train()
    metrics = trainer.evaluate()
    expected = {"eval_mae", "eval_loss", "eval_runtime", "eval_samples_per_second",
                "eval_steps_per_second", "epoch"}
    assert set(metrics) == expected
    assert metrics["epoch"] == pytest.approx(2.0)
    assert set(recorder.of("on_evaluate")[-1].payload["metrics"]) == expected
    assert set(trainer.state.log_history[-1]) == expected | {"step"}


def test_evaluate_metric_key_order_matches_hf(tmp_path):
    # HF's evaluation_loop: metrics = compute_metrics(...); metrics["eval_loss"] = ...; then
    # every key without the prefix is popped and re-inserted as "eval_<key>", which moves it
    # after eval_loss. Speed metrics follow, and Trainer.log appends epoch.
    trainer = make_trainer(tmp_path / "out", compute_metrics=mae)
    metrics = trainer.evaluate()
    assert list(metrics) == ["eval_loss", "eval_mae", "eval_runtime",
                             "eval_samples_per_second", "eval_steps_per_second", "epoch"]


def test_evaluate_without_compute_metrics(tmp_path):
    metrics = make_trainer(tmp_path / "out").evaluate()
    assert list(metrics) == ["eval_loss", "eval_runtime", "eval_samples_per_second",
                             "eval_steps_per_second", "epoch"]


def test_eval_loss_is_sample_weighted(tmp_path):
    eval_set = RegressionDataset(10, seed=1)  # batches of 4, 4, 2
    trainer = make_trainer(tmp_path / "out", per_device_eval_batch_size=4)
    trainer.train()
    metrics = trainer.evaluate(eval_set)
    model = trainer.model.eval()
    with torch.no_grad():
        batch_losses = [model(x=eval_set.x[i:i + 4], labels=eval_set.y[i:i + 4])["loss"].item()
                        for i in (0, 4, 8)]
    by_hand = (batch_losses[0] * 4 + batch_losses[1] * 4 + batch_losses[2] * 2) / 10
    assert metrics["eval_loss"] == pytest.approx(by_hand, rel=1e-5)
    assert not math.isclose(by_hand, np.mean(batch_losses), rel_tol=1e-3)  # the test bites
    assert metrics["eval_samples_per_second"] > 0


def test_predict_returns_numpy_predictions_labels_and_test_metrics(tmp_path):
    recorder = HookRecorder()
    trainer = make_trainer(tmp_path / "out", plugins=[recorder], compute_metrics=mae)
    test_set = RegressionDataset(10, seed=3)
    history_before = list(trainer.state.log_history)
    output = trainer.predict(test_set)
    assert isinstance(output.predictions, np.ndarray)
    assert output.predictions.shape == (10,)
    assert isinstance(output.label_ids, np.ndarray)
    np.testing.assert_allclose(output.label_ids, test_set.y.numpy())
    with torch.no_grad():
        expected = trainer.model(x=test_set.x)["logits"].numpy()
    np.testing.assert_allclose(output.predictions, expected, rtol=1e-5, atol=1e-6)
    assert set(output.metrics) == {"test_loss", "test_mae", "test_runtime",
                                   "test_samples_per_second", "test_steps_per_second"}
    assert output.metrics["test_mae"] == pytest.approx(
        float(np.abs(expected - test_set.y.numpy()).mean()), rel=1e-5)
    # predict() never logs; it fires on_predict.
    assert trainer.state.log_history == history_before
    assert "on_log" not in recorder.events
    assert recorder.events.count("on_predict") == 1


def test_predict_without_labels(tmp_path):
    trainer = make_trainer(tmp_path / "out", compute_metrics=mae)
    output = trainer.predict(XOnly(6))
    assert output.label_ids is None
    assert isinstance(output.predictions, np.ndarray) and output.predictions.shape == (6,)
    assert "test_loss" not in output.metrics
    assert "test_mae" not in output.metrics
    assert "test_runtime" in output.metrics


def test_evaluate_before_train(tmp_path):
    trainer = make_trainer(tmp_path / "out", logging_steps=2)
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics and metrics["epoch"] == 0
    assert trainer.state.log_history[-1]["step"] == 0
    trainer.train()
    # HF: train() starts from a fresh TrainerState, so the earlier entry is gone.
    assert all("eval_loss" not in e for e in trainer.state.log_history)
    assert trainer.state.global_step == 8


# ---- optimisation --------------------------------------------------------------------------


@pytest.mark.parametrize("train_size", [16, 14])  # 14: the last accumulation group is short
def test_gradient_accumulation_matches_bigger_batch(tmp_path, train_size):
    common = dict(optim="sgd", max_grad_norm=None, learning_rate=0.05, num_train_epochs=2,
                  logging_steps=1)
    small = seeded_model(seed=3)
    big = copy.deepcopy(small)
    accumulated = make_trainer(
        tmp_path / "ga", model=small, train_size=train_size, per_device_train_batch_size=2,
        gradient_accumulation_steps=2, **common,
    )
    plain = make_trainer(
        tmp_path / "plain", model=big, train_size=train_size, per_device_train_batch_size=4,
        gradient_accumulation_steps=1, **common,
    )
    out_a = accumulated.train()
    out_b = plain.train()
    assert out_a.global_step == out_b.global_step == 2 * math.ceil(train_size / 4)
    assert_same_weights(weights(small), weights(big))
    losses_a = [e["loss"] for e in accumulated.state.log_history if "loss" in e]
    losses_b = [e["loss"] for e in plain.state.log_history if "loss" in e]
    np.testing.assert_allclose(losses_a, losses_b, rtol=1e-5)
    # and the runs did move the weights
    assert not torch.equal(weights(small)["net.0.weight"], weights(seeded_model(seed=3))["net.0.weight"])


@pytest.mark.parametrize("epochs, max_steps", [(1, 10), (100, 3)])
def test_max_steps_overrides_epochs(tmp_path, epochs, max_steps):
    recorder = HookRecorder()
    trainer = make_trainer(
        tmp_path / "out", plugins=[recorder], num_train_epochs=epochs, max_steps=max_steps,
    )
    output = trainer.train()
    assert output.global_step == max_steps
    assert trainer.state.max_steps == max_steps
    assert recorder.events.count("on_step_end") == max_steps
    assert trainer.state.epoch == pytest.approx(max_steps / 4)  # 4 steps per epoch


def test_same_seed_gives_identical_weights(tmp_path):
    initial = seeded_model(seed=5, dropout=0.3)
    models = [copy.deepcopy(initial) for _ in range(3)]
    for index, (model, seed) in enumerate(zip(models, [7, 7, 8])):
        torch.manual_seed(1000 + index)  # the global RNG before the Trainer must not matter
        make_trainer(tmp_path / str(index), model=model, seed=seed).train()
    assert_same_weights(weights(models[0]), weights(models[1]), exact=True)
    assert not torch.equal(weights(models[0])["net.0.weight"], weights(models[2])["net.0.weight"])


def test_bf16_trains_on_cpu(tmp_path):
    trainer = make_trainer(
        tmp_path / "out", bf16=True, use_cpu=True, logging_steps=2, compute_metrics=mae,
    )
    output = trainer.train()
    assert output.global_step == 8
    assert math.isfinite(output.training_loss)
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    metrics = trainer.evaluate()
    assert math.isfinite(metrics["eval_loss"])
    prediction = trainer.predict(RegressionDataset(6, seed=4))
    assert prediction.predictions.dtype == np.float32


# ---- data ----------------------------------------------------------------------------------


class WithExtraColumns(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.inner = RegressionDataset(n, seed=0)

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.inner[i])
        item["idx"] = torch.tensor(i)
        item["text"] = f"sample {i}"
        return item


def test_remove_unused_columns_drops_keys_forward_does_not_take(tmp_path):
    trainer = Trainer(model=seeded_model(), args=tiny_args(tmp_path / "a"),
                      train_dataset=WithExtraColumns(16), eval_dataset=WithExtraColumns(8))
    assert trainer.train().global_step == 8
    assert "eval_loss" in trainer.evaluate()
    assert trainer.predict(WithExtraColumns(5)).predictions.shape == (5,)


def test_remove_unused_columns_false_passes_every_key(tmp_path):
    trainer = Trainer(model=seeded_model(), args=tiny_args(tmp_path / "b", remove_unused_columns=False),
                      train_dataset=WithExtraColumns(16))
    with pytest.raises(TypeError, match="idx|text"):
        trainer.train()


# ---- checkpoints ---------------------------------------------------------------------------


def _checkpoints(output_dir: Path) -> list[str]:
    return sorted((p.name for p in output_dir.iterdir() if p.name.startswith("checkpoint")),
                  key=lambda name: int(name.split("-")[-1]))


def test_save_total_limit_keeps_newest(tmp_path):
    trainer = make_trainer(
        tmp_path / "out", save_strategy="steps", save_steps=2, save_total_limit=2,
    )
    trainer.train()
    output_dir = tmp_path / "out"
    assert _checkpoints(output_dir) == ["checkpoint-6", "checkpoint-8"]
    assert not [p for p in output_dir.iterdir() if "deleting" in p.name]


def test_no_save_total_limit_keeps_all(tmp_path):
    make_trainer(tmp_path / "out", save_strategy="steps", save_steps=2).train()
    assert _checkpoints(tmp_path / "out") == [f"checkpoint-{s}" for s in (2, 4, 6, 8)]


def _scripted_metric(scores):
    calls = iter(scores)

    def compute_metrics(prediction):
        return {"score": next(calls)}

    return compute_metrics


def test_load_best_model_at_end_restores_best_checkpoint(tmp_path):
    trainer = make_trainer(
        tmp_path / "out", eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2,
        load_best_model_at_end=True, metric_for_best_model="score", save_total_limit=2,
        compute_metrics=_scripted_metric([0.1, 0.9, 0.3, 0.2]),
    )
    assert trainer.args.greater_is_better is True
    trainer.train()
    output_dir = tmp_path / "out"
    best = Path(trainer.state.best_model_checkpoint)
    assert best == output_dir / "checkpoint-4"
    assert trainer.state.best_metric == pytest.approx(0.9)
    assert trainer.state.best_global_step == 4
    # HF: save_total_limit=2 with load_best_model_at_end keeps the best and the newest.
    assert _checkpoints(output_dir) == ["checkpoint-4", "checkpoint-8"]
    best_weights = load_file(str(best / "model.safetensors"))
    last_weights = load_file(str(output_dir / "checkpoint-8" / "model.safetensors"))
    current = weights(trainer.model)
    assert_same_weights(current, best_weights, exact=True)
    assert any(not torch.equal(best_weights[k], last_weights[k]) for k in best_weights)


def test_load_best_model_at_end_with_loss(tmp_path):
    trainer = make_trainer(
        tmp_path / "out", eval_strategy="epoch", save_strategy="epoch",
        load_best_model_at_end=True, learning_rate=0.05, num_train_epochs=3,
    )
    assert trainer.args.metric_for_best_model == "loss"
    trainer.train()
    eval_losses = {e["step"]: e["eval_loss"] for e in trainer.state.log_history
                   if "eval_loss" in e}
    best_step = min(eval_losses, key=eval_losses.get)
    assert trainer.state.best_model_checkpoint == str(tmp_path / "out" / f"checkpoint-{best_step}")
    assert trainer.state.best_metric == pytest.approx(eval_losses[best_step])
    best_weights = load_file(str(Path(trainer.state.best_model_checkpoint) / "model.safetensors"))
    assert_same_weights(weights(trainer.model), best_weights, exact=True)
    assert trainer.evaluate()["eval_loss"] == pytest.approx(eval_losses[best_step], rel=1e-6)
