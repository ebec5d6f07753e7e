"""What a model may return and how its loss is found: HF's output conventions, a plain module
with ``compute_loss_func`` (and HF's ``num_items_in_batch`` contract), clear errors otherwise."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from trainers import mae, make_trainer, weights

from hooktrain import Trainer
from hooktrain.errors import ConfigError
from hooktrain.testing import RegressionDataset, tiny_args


@dataclasses.dataclass
class Output:
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


class _Base(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(4, 1)

    def parts(self, x, labels):
        logits = self.linear(x).squeeze(-1)
        loss = None if labels is None else nn.functional.mse_loss(logits, labels)
        return loss, logits


class DictModel(_Base):
    def forward(self, x, labels=None):
        loss, logits = self.parts(x, labels)
        return {"logits": logits} if loss is None else {"loss": loss, "logits": logits}


class DataclassModel(_Base):
    def forward(self, x, labels=None):
        return Output(*self.parts(x, labels))


class NamespaceModel(_Base):
    def forward(self, x, labels=None):
        loss, logits = self.parts(x, labels)
        return SimpleNamespace(loss=loss, logits=logits)


class TupleModel(_Base):
    def forward(self, x, labels=None):
        loss, logits = self.parts(x, labels)
        return (logits,) if loss is None else (loss, logits)


@pytest.mark.parametrize("model_cls", [DictModel, DataclassModel, NamespaceModel, TupleModel])
def test_model_output_conventions_train_and_evaluate(tmp_path, model_cls):
    model = model_cls()
    before = weights(model)
    trainer = make_trainer(tmp_path / "out", model=model, logging_steps=2, compute_metrics=mae)
    output = trainer.train()
    assert output.global_step == 8
    assert math.isfinite(output.training_loss)
    assert not torch.equal(before["linear.weight"], model.linear.weight.detach())
    metrics = trainer.evaluate()
    assert math.isfinite(metrics["eval_loss"]) and "eval_mae" in metrics
    prediction = trainer.predict(RegressionDataset(5, seed=4))
    assert prediction.predictions.shape == (5,)


class PlainNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(4, 1)

    def forward(self, x):
        return self.linear(x).squeeze(-1)


def test_plain_module_with_compute_loss_func_and_tuple_dataset(tmp_path):
    data = RegressionDataset(16, seed=0)
    train_set = torch.utils.data.TensorDataset(data.x, data.y)
    eval_data = RegressionDataset(10, seed=1)
    eval_set = torch.utils.data.TensorDataset(eval_data.x, eval_data.y)
    calls = []

    def loss_func(outputs, labels, num_items_in_batch=None):
        calls.append((outputs.shape, labels.shape))
        return nn.functional.mse_loss(outputs, labels)

    model = PlainNet()
    before = weights(model)
    trainer = Trainer(model=model, args=tiny_args(tmp_path / "out", logging_steps=2),
                      train_dataset=train_set, eval_dataset=eval_set,
                      compute_loss_func=loss_func, compute_metrics=mae)
    output = trainer.train()
    assert output.global_step == 8 and math.isfinite(output.training_loss)
    assert calls and calls[0] == (torch.Size([4]), torch.Size([4]))
    assert not torch.equal(before["linear.weight"], model.linear.weight.detach())
    metrics = trainer.evaluate()
    with torch.no_grad():
        expected = nn.functional.mse_loss(model(eval_data.x), eval_data.y).item()
    assert metrics["eval_loss"] == pytest.approx(expected, rel=1e-5)
    assert "eval_mae" in metrics
    prediction = trainer.predict(eval_set)
    assert prediction.predictions.shape == (10,)
    np.testing.assert_allclose(prediction.label_ids, eval_data.y.numpy())


def test_compute_loss_func_with_dict_dataset(tmp_path):
    def loss_func(outputs, labels, num_items_in_batch=None):
        return nn.functional.mse_loss(outputs, labels)

    trainer = make_trainer(
        tmp_path / "out", model=PlainNet(), trainer_kwargs={"compute_loss_func": loss_func},
    )
    assert trainer.train().global_step == 8
    assert "eval_loss" in trainer.evaluate()


class NoLossTensor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, x, labels=None):
        return self.linear(x).squeeze(-1)


class NoLossDict(NoLossTensor):
    def forward(self, x, labels=None):
        return {"logits": self.linear(x).squeeze(-1)}


@pytest.mark.parametrize("model_cls", [NoLossTensor, NoLossDict])
def test_model_without_loss_is_a_clear_config_error(tmp_path, model_cls):
    trainer = make_trainer(tmp_path / "out", model=model_cls())
    with pytest.raises(ConfigError) as info:
        trainer.train()
    message = str(info.value)
    assert "loss" in message
    assert "compute_loss_func" in message


def test_trainer_needs_a_model(tmp_path):
    with pytest.raises(ConfigError, match="model"):
        Trainer()
    with pytest.raises(ConfigError, match="model"):
        Trainer(model=None, args=tiny_args(tmp_path))


def test_train_needs_a_train_dataset(tmp_path):
    trainer = make_trainer(tmp_path / "out", train_size=0)
    with pytest.raises(ConfigError, match="train_dataset"):
        trainer.train()
