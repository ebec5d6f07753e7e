"""Every documented HF override point of ``Trainer`` is the method the loop calls.

Each test subclasses ``Trainer`` the way HF's docs tell users to, overrides one method, and
checks that the run went through it (and that its result was used).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from trainers import make_trainer

from hooktrain import Trainer
from hooktrain.testing import RegressionDataset, TinyRegressor, tiny_args


def build(cls: type[Trainer], output_dir, **overrides) -> Trainer:
    """A ``cls`` trainer from ``make_trainer`` that evaluates every epoch."""
    return make_trainer(output_dir, trainer_class=cls, **{"eval_strategy": "epoch", **overrides})


def test_create_optimizer_override_is_the_optimizer_that_trains(tmp_path) -> None:
    class SGDTrainer(Trainer):
        def create_optimizer(self):
            if self.optimizer is None:
                self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05)
            return self.optimizer

    trainer = build(SGDTrainer, tmp_path)
    trainer.train()
    assert isinstance(trainer.optimizer, torch.optim.SGD)
    # the Trainer's linear schedule on the override's rate: step 2 of 8 logs step 1's rate
    assert trainer.state.log_history[0]["learning_rate"] == pytest.approx(0.05 * 7 / 8)


def test_create_scheduler_override_is_the_schedule_that_runs(tmp_path) -> None:
    made = []

    class ConstantTrainer(Trainer):
        def create_scheduler(self, num_training_steps, optimizer=None):
            made.append(num_training_steps)
            if self.lr_scheduler is None:
                self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: 0.5)
            return self.lr_scheduler

    trainer = build(ConstantTrainer, tmp_path)
    trainer.train()
    assert made == [8]
    rates = [e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e]
    assert rates and all(rate == pytest.approx(0.005) for rate in rates)


def test_create_optimizer_and_scheduler_override_is_called_with_the_step_count(tmp_path) -> None:
    calls = []

    class Recording(Trainer):
        def create_optimizer_and_scheduler(self, num_training_steps):
            calls.append(num_training_steps)
            super().create_optimizer_and_scheduler(num_training_steps)

    build(Recording, tmp_path).train()
    assert calls == [8]


def test_get_decay_parameter_names_override_decides_weight_decay(tmp_path) -> None:
    class OnlyFirstLayer(Trainer):
        def get_decay_parameter_names(self, model):
            return ["net.0.weight"]

    trainer = build(OnlyFirstLayer, tmp_path, weight_decay=0.1)
    trainer.train()
    decayed = [g for g in trainer.optimizer.param_groups if g["weight_decay"] == 0.1]
    assert len(decayed) == 1 and decayed[0]["params"][0] is trainer.model.net[0].weight


def test_num_examples_override_feeds_the_throughput(tmp_path) -> None:
    class Counting(Trainer):
        def num_examples(self, dataloader):
            return 1000

    trainer = build(Counting, tmp_path)
    output = trainer.train()
    runtime = output.metrics["train_runtime"]
    assert output.metrics["train_samples_per_second"] == pytest.approx(2000 / runtime, rel=0.05)


def test_get_eval_dataloader_takes_no_argument_and_is_what_evaluate_uses(tmp_path) -> None:
    seen = []

    class Recording(Trainer):
        def get_eval_dataloader(self, eval_dataset=None):
            seen.append(eval_dataset)
            return super().get_eval_dataloader(eval_dataset)

    trainer = build(Recording, tmp_path)
    assert len(trainer.get_eval_dataloader().dataset) == 8
    trainer.train()
    assert len(seen) == 3  # the direct call, then one evaluation per epoch


def test_get_test_dataloader_is_what_predict_uses(tmp_path) -> None:
    class Recording(Trainer):
        def get_test_dataloader(self, test_dataset):
            self.test_calls = getattr(self, "test_calls", 0) + 1
            return super().get_test_dataloader(test_dataset)

    trainer = build(Recording, tmp_path)
    output = trainer.predict(RegressionDataset(6, seed=2))
    assert trainer.test_calls == 1 and output.predictions.shape == (6,)


def test_get_train_dataloader_override_is_what_training_reads(tmp_path) -> None:
    class Small(Trainer):
        def get_train_dataloader(self):
            loader = super().get_train_dataloader()
            self.loaders = getattr(self, "loaders", 0) + 1
            return loader

    trainer = build(Small, tmp_path)
    trainer.train()
    assert trainer.loaders == 1


def test_compute_loss_and_training_step_overrides_run_every_step(tmp_path) -> None:
    class Doubling(Trainer):
        steps = 0

        def training_step(self, model, inputs, num_items_in_batch=None):
            self.steps += 1
            return super().training_step(model, inputs, num_items_in_batch)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
            return (2 * loss, outputs) if return_outputs else 2 * loss

    doubled = build(Doubling, tmp_path / "a")
    doubled.train()
    plain = build(Trainer, tmp_path / "b")
    plain.train()
    assert doubled.steps == 8
    first = doubled.state.log_history[0]["loss"], plain.state.log_history[0]["loss"]
    assert first[0] == pytest.approx(2 * first[1], rel=1e-5)


def test_prediction_step_evaluate_and_log_overrides_are_what_the_loop_calls(tmp_path) -> None:
    class Recording(Trainer):
        calls: list[str] = []

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            self.calls.append("prediction_step")
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
            self.calls.append("evaluate")
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)

        def log(self, logs, start_time=None):
            self.calls.append("log")
            logs["seen_by_override"] = 1
            super().log(logs, start_time)

    trainer = build(Recording, tmp_path)
    trainer.train()
    assert trainer.calls.count("evaluate") == 2
    assert trainer.calls.count("prediction_step") == 4  # 2 batches of 4, twice
    assert all(e["seen_by_override"] == 1 for e in trainer.state.log_history)


def test_predict_override_is_public_and_called(tmp_path) -> None:
    class Scaled(Trainer):
        def predict(self, test_dataset, ignore_keys=None, metric_key_prefix="test"):
            output = super().predict(test_dataset, ignore_keys, metric_key_prefix)
            return output._replace(predictions=output.predictions * 0)

    trainer = build(Scaled, tmp_path)
    assert not trainer.predict(RegressionDataset(4)).predictions.any()


def test_optimizer_cls_and_kwargs_builds_that_optimizer(tmp_path) -> None:
    torch.manual_seed(0)
    trainer = Trainer(TinyRegressor(), tiny_args(tmp_path), train_dataset=RegressionDataset(16),
                      optimizer_cls_and_kwargs=(torch.optim.Adagrad, {"lr": 0.03}))
    trainer.train()
    assert isinstance(trainer.optimizer, torch.optim.Adagrad)
    assert trainer.optimizer.defaults["lr"] == 0.03


def test_model_init_gives_a_fresh_seeded_model_at_every_train(tmp_path) -> None:
    made = []

    def model_init():
        made.append(TinyRegressor())
        return made[-1]

    trainer = Trainer(model_init=model_init, args=tiny_args(tmp_path),
                      train_dataset=RegressionDataset(16))
    first = trainer.train().training_loss
    second = trainer.train().training_loss
    assert len(made) == 3 and trainer.model is made[-1]
    assert first == second  # seeded before each model is made: the same run twice


def test_model_and_model_init_together_warn_and_model_init_wins(tmp_path, caplog) -> None:
    given = TinyRegressor()
    trainer = Trainer(given, tiny_args(tmp_path), train_dataset=RegressionDataset(16),
                      model_init=lambda: TinyRegressor())
    assert "model_init" in caplog.text
    trainer.train()
    assert trainer.model is not given


def test_log_metrics_save_metrics_and_metrics_format_as_hf(tmp_path, capsys) -> None:
    trainer = build(Trainer, tmp_path)
    metrics = trainer.train().metrics
    capsys.readouterr()
    trainer.log_metrics("train", metrics)
    printed = capsys.readouterr().out
    assert printed.startswith("***** train metrics *****")
    assert "train_runtime" in printed and "0:00:" in printed
    trainer.save_metrics("train", metrics)
    trainer.save_metrics("eval", {"eval_loss": 0.5})
    assert json.loads((tmp_path / "train_results.json").read_text())["train_loss"] == \
        pytest.approx(metrics["train_loss"])
    combined = json.loads((tmp_path / "all_results.json").read_text())
    assert combined["eval_loss"] == 0.5 and "train_loss" in combined
    assert trainer.metrics_format({"total_flos": 2**31, "x": 0.123456})["total_flos"] == "2GF"
    assert trainer.is_world_process_zero() and trainer.is_local_process_zero()
    assert trainer.get_num_trainable_parameters() == sum(
        p.numel() for p in trainer.model.parameters())


def test_save_model_override_is_called_into_every_checkpoint(tmp_path) -> None:
    class WithCard(Trainer):
        def save_model(self, output_dir=None, _internal_call=False):
            super().save_model(output_dir, _internal_call)
            (Path(output_dir or self.args.output_dir) / "README.md").write_text("model card")

    trainer = build(WithCard, tmp_path, save_strategy="epoch")
    trainer.train()
    for step in (4, 8):
        checkpoint = tmp_path / f"checkpoint-{step}"
        assert (checkpoint / "README.md").read_text() == "model card"
        manifest = json.loads((checkpoint / "manifest.json").read_text())
        assert "README.md" in manifest["files"] and "model.safetensors" in manifest["files"]
    resumed = build(WithCard, tmp_path, save_strategy="epoch")
    resumed.train(resume_from_checkpoint=True)  # the manifest with the extra file verifies
    assert resumed.state.global_step == 8


def test_hf_helpers_for_optimizer_groups_batch_size_and_contexts(tmp_path) -> None:
    trainer = build(Trainer, tmp_path, weight_decay=0.1, gradient_accumulation_steps=2)
    trainer.create_optimizer()
    weight = trainer.model.net[0].weight
    assert trainer.get_optimizer_group(weight)["weight_decay"] == 0.1
    assert trainer.get_optimizer_group() is trainer.optimizer.param_groups
    assert trainer.get_total_train_batch_size() == 8
    assert trainer.floating_point_ops({"x": torch.ones(2, 4)}) == 0
    with trainer.compute_loss_context_manager(), trainer.autocast_smart_context_manager():
        pass
