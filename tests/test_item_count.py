"""``num_items_in_batch``, HF's label count per accumulation group: who gets it (a
``compute_loss_func``, overrides by signature, models taking loss kwargs), what it counts, and
when the loss is divided by the accumulation steps instead."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from hooktrain import Trainer
from hooktrain.testing import RegressionDataset, TinyRegressor, tiny_args

# ---- num_items_in_batch: HF's contract for compute_loss_func ---------------------------------


class Tokens(torch.utils.data.Dataset):
    """Sequences of 6 positions of which the last 0-5 are padding (label -100)."""

    def __init__(self, n: int, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 6, 4, generator=generator)
        self.labels = torch.randint(0, 3, (n, 6), generator=generator)
        lengths = torch.randint(1, 7, (n,), generator=generator)
        self.labels[torch.arange(6) >= lengths[:, None]] = -100

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[index], "labels": self.labels[index]}


class Tagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(4, 3)

    def forward(self, x):
        return self.linear(x)


def token_loss(outputs, labels, num_items_in_batch=None):
    """The loss HF's documentation asks for: summed, divided by the group's label count."""
    total = nn.functional.cross_entropy(outputs.flatten(0, 1), labels.flatten(),
                                        ignore_index=-100, reduction="sum")
    return total / (labels.ne(-100).sum() if num_items_in_batch is None else num_items_in_batch)


def train_tagger(tmp_path, loss_func, batch_size: int, accumulation: int, train_size: int = 10,
                 model_cls=Tagger):
    model = model_cls()
    args = tiny_args(tmp_path, per_device_train_batch_size=batch_size, optim="sgd",
                     gradient_accumulation_steps=accumulation, max_grad_norm=None,
                     learning_rate=0.5, logging_steps=1)
    trainer = Trainer(model=model, args=args, train_dataset=Tokens(train_size),
                      eval_dataset=Tokens(4, seed=1), compute_loss_func=loss_func)
    trainer.train()
    return trainer, model


def test_compute_loss_func_gets_the_label_count_of_the_whole_accumulation_group(tmp_path):
    calls = []

    def recording_loss(outputs, labels, num_items_in_batch=None):
        calls.append((labels.ne(-100).sum(), num_items_in_batch))
        return token_loss(outputs, labels, num_items_in_batch)

    # 10 sequences in batches of 2: 5 micro-batches an epoch, groups of 2, 2 and a short 1
    train_tagger(tmp_path, recording_loss, batch_size=2, accumulation=2)
    assert len(calls) == 10
    for start, size in [(0, 2), (2, 2), (4, 1), (5, 2), (7, 2), (9, 1)]:
        group = calls[start:start + size]
        expected = sum(int(own) for own, _ in group)
        for _, received in group:
            assert isinstance(received, torch.Tensor), "a tensor: counting never syncs the host"
            assert int(received) == expected


def test_normalising_by_the_group_count_equals_one_bigger_batch(tmp_path):
    """HF's gradient-accumulation fix: a token mean over the group, not a mean of batch means."""
    accumulated, small = train_tagger(tmp_path / "ga", token_loss, batch_size=2, accumulation=2,
                                      train_size=8)
    plain, big = train_tagger(tmp_path / "plain", token_loss, batch_size=4, accumulation=1,
                              train_size=8)
    torch.testing.assert_close(small.state_dict(), big.state_dict(), rtol=1e-5, atol=1e-6)
    losses = [[e["loss"] for e in trainer.state.log_history if "loss" in e]
              for trainer in (accumulated, plain)]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    assert not torch.equal(small.linear.weight, Tagger().linear.weight), "the runs trained"


def test_evaluation_passes_each_batch_its_own_count_as_hf_5_does(tmp_path):
    seen = []

    def loss_func(outputs, labels, num_items_in_batch=None):
        seen.append((int(labels.ne(-100).sum()), num_items_in_batch))
        return token_loss(outputs, labels, num_items_in_batch)

    trainer = Trainer(model=Tagger(), args=tiny_args(tmp_path), eval_dataset=Tokens(8),
                      compute_loss_func=loss_func)
    assert math.isfinite(trainer.evaluate()["eval_loss"])
    assert len(seen) == 2
    assert all(isinstance(count, torch.Tensor) and int(count) == own for own, count in seen)


def test_a_compute_loss_override_in_either_hf_signature_trains(tmp_path):
    """Subclasses written for HF before 4.46 (no ``num_items_in_batch``) and after both run."""
    seen = []

    class OldStyle(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False):
            seen.append("old")
            return super().compute_loss(model, inputs, return_outputs)

    class NewStyle(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            seen.append(num_items_in_batch)
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    for trainer_cls in (OldStyle, NewStyle):
        trainer = trainer_cls(model=TinyRegressor(), args=tiny_args(tmp_path / trainer_cls.__name__),
                              train_dataset=RegressionDataset(8))
        assert trainer.train().global_step == 4
    assert seen == ["old"] * 4 + [None] * 4


def test_a_training_step_override_in_either_hf_signature_trains(tmp_path):
    """HF's ``training_step(model, inputs, num_items_in_batch=None)``, and the older one without
    the count; ``current_gradient_accumulation_steps`` is the group's size, as in HF."""
    seen = []

    class OldStyle(Trainer):
        def training_step(self, model, inputs):
            seen.append(("old", self.current_gradient_accumulation_steps))
            return super().training_step(model, inputs)

    class NewStyle(Trainer):
        def training_step(self, model, inputs, num_items_in_batch=None):
            seen.append((num_items_in_batch, self.current_gradient_accumulation_steps))
            return super().training_step(model, inputs, num_items_in_batch)

    # 10 samples in batches of 4: 3 micro-batches an epoch, a group of 2 then a short one
    for trainer_cls in (OldStyle, NewStyle):
        trainer = trainer_cls(model=TinyRegressor(), args=tiny_args(tmp_path / trainer_cls.__name__,
                                                                gradient_accumulation_steps=2),
                              train_dataset=RegressionDataset(10))
        assert trainer.train().global_step == 4
    assert seen == [("old", 2), ("old", 2), ("old", 1)] * 2 + [(None, 2), (None, 2), (None, 1)] * 2


def test_an_hf_training_step_override_without_a_default_gets_the_count(tmp_path):
    """HF >= 4.46 always passes the third argument, so overrides may declare it required."""
    seen = []

    class Required(Trainer):
        def training_step(self, model, inputs, num_items_in_batch):
            seen.append(num_items_in_batch)
            return super().training_step(model, inputs, num_items_in_batch)

    trainer = Required(model=TinyRegressor(), args=tiny_args(tmp_path),
                       train_dataset=RegressionDataset(8))
    assert trainer.train().global_step == 4
    assert seen == [None] * 4


def test_a_compute_loss_func_returning_a_mean_is_not_divided_again(tmp_path):
    """HF's contract: with a count, the function normalises the group; a mean per micro-batch
    therefore adds up over the group (HF does the same; divide by num_items_in_batch instead)."""
    per_step = []

    def record(outputs, labels, num_items_in_batch=None):
        loss = nn.functional.cross_entropy(outputs.flatten(0, 1), labels.flatten(),
                                           ignore_index=-100)
        per_step.append(loss.item())
        return loss

    trainer, _ = train_tagger(tmp_path, record, batch_size=2, accumulation=2, train_size=8)
    first_step = trainer.state.log_history[0]
    assert first_step["step"] == 1
    assert first_step["loss"] == pytest.approx(per_step[0] + per_step[1], rel=1e-5)


class SelfLossTagger(Tagger):
    """Computes its own loss as transformers' models do: a sum over the group's label count."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: list = []
        self.losses: list[float] = []

    def forward(self, x, labels=None, **kwargs):
        logits = super().forward(x)
        count = kwargs.get("num_items_in_batch")
        loss = token_loss(logits, labels, count)
        self.counts.append(count)
        self.losses.append(loss.item())
        return {"loss": loss, "logits": logits}


class MeanLossTagger(SelfLossTagger):
    accepts_loss_kwargs = False  # transformers' way to say "my **kwargs are not loss kwargs"


def test_a_model_taking_loss_kwargs_gets_the_group_count_as_in_hf(tmp_path):
    accumulated, small = train_tagger(tmp_path / "ga", None, batch_size=2, accumulation=2,
                                      train_size=8, model_cls=SelfLossTagger)
    plain, big = train_tagger(tmp_path / "plain", None, batch_size=4, accumulation=1,
                              train_size=8, model_cls=SelfLossTagger)
    assert accumulated.model_accepts_loss_kwargs
    assert all(isinstance(count, torch.Tensor) for count in small.counts[:8])
    torch.testing.assert_close(small.state_dict(), big.state_dict(), rtol=1e-5, atol=1e-6)
    losses = [[e["loss"] for e in trainer.state.log_history if "loss" in e]
              for trainer in (accumulated, plain)]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    accumulated.evaluate()  # 4 sequences in one batch: that batch's own count (HF 5.x)
    assert int(small.counts[-1]) == int(Tokens(4, seed=1).labels.ne(-100).sum())


def test_a_model_declaring_no_loss_kwargs_is_divided_by_the_group_size(tmp_path):
    trainer, model = train_tagger(tmp_path, None, batch_size=2, accumulation=2, train_size=8,
                                  model_cls=MeanLossTagger)
    assert not trainer.model_accepts_loss_kwargs
    assert model.counts[:8] == [None] * 8
    # each micro-batch's loss is its own mean, so the group's is the mean of the two (HF)
    assert trainer.state.log_history[0]["loss"] == pytest.approx(
        (model.losses[0] + model.losses[1]) / 2, rel=1e-5)


# ---- edges found in review: legacy overrides, wrappers, other label names ------------------------


def test_a_legacy_compute_loss_override_is_divided_even_for_a_loss_kwargs_model(tmp_path):
    """An HF < 4.46 ``compute_loss`` never passes the count on, so its loss is a batch mean."""

    class Legacy(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False):
            return super().compute_loss(model, inputs, return_outputs)

    logged = []
    for trainer_cls, model_cls in ((Legacy, SelfLossTagger), (Trainer, MeanLossTagger)):
        model = model_cls()
        args = tiny_args(tmp_path / trainer_cls.__name__, per_device_train_batch_size=2,
                         gradient_accumulation_steps=2, logging_steps=1, optim="sgd")
        trainer = trainer_cls(model=model, args=args, train_dataset=Tokens(8))
        trainer.train()
        assert model.counts[:8] == [None] * 8
        logged.append([e["loss"] for e in trainer.state.log_history if "loss" in e])
    np.testing.assert_allclose(logged[0], logged[1], rtol=1e-6)


@pytest.mark.parametrize("wrap", [
    lambda model: torch.compile(model, backend="eager"),
    torch.nn.DataParallel,
], ids=["compiled", "data-parallel"])
def test_wrappers_are_looked_through_for_loss_kwargs(tmp_path, wrap):
    """``forward(*args, **kwargs)`` of a wrapper is not the model's: HF unwraps too."""
    trainer = Trainer(model=wrap(TinyRegressor()), args=tiny_args(tmp_path / "plain", max_steps=2),
                      train_dataset=RegressionDataset(8))
    assert not trainer.model_accepts_loss_kwargs
    assert trainer.train().global_step == 2  # no unexpected num_items_in_batch keyword
    wrapped = Trainer(model=wrap(SelfLossTagger()), args=tiny_args(tmp_path / "kwargs"))
    assert wrapped.model_accepts_loss_kwargs


class Targets(torch.utils.data.Dataset):
    def __init__(self) -> None:
        self.inner = RegressionDataset(8)

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.inner[index]
        return {"x": item["x"], "target": item["labels"]}


class TargetModel(nn.Module):
    """Takes ``**kwargs`` but names its labels ``target``: HF counts only ``labels``."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.counts: list = []

    def forward(self, x, target=None, **kwargs):
        self.counts.append(kwargs.get("num_items_in_batch"))
        prediction = self.linear(x).squeeze(-1)
        return {"loss": nn.functional.mse_loss(prediction, target), "logits": prediction}


def test_a_model_with_other_label_names_gets_no_count(tmp_path):
    model = TargetModel()
    args = tiny_args(tmp_path, label_names=["target"], per_device_train_batch_size=2,
                     gradient_accumulation_steps=2, logging_steps=1)
    trainer = Trainer(model=model, args=args, train_dataset=Targets())
    trainer.train()
    assert trainer.model_accepts_loss_kwargs and model.counts == [None] * 8  # 2 epochs of 4


def test_a_negative_max_grad_norm_does_not_clip_as_in_hf(tmp_path):
    trained = {}
    for bound in (-1.0, None):
        trainer = Trainer(model=TinyRegressor(), args=tiny_args(tmp_path / str(bound),
                                                                max_grad_norm=bound),
                          train_dataset=RegressionDataset(8))
        torch.manual_seed(0)
        trainer.model.load_state_dict(TinyRegressor().state_dict())
        trainer.train()
        trained[bound] = trainer.model.state_dict()
    torch.testing.assert_close(trained[-1.0], trained[None], rtol=0, atol=0)


def test_a_tensor_learning_rate_is_saved_in_checkpoints(tmp_path):
    model = TinyRegressor()
    optimizer = torch.optim.AdamW(model.parameters(), lr=torch.tensor(0.01))
    args = tiny_args(tmp_path, save_strategy="steps", save_steps=2, max_steps=2, logging_steps=1)
    trainer = Trainer(model=model, args=args, train_dataset=RegressionDataset(8),
                      optimizers=(optimizer, None))
    trainer.train()
    assert trainer.state.log_history[0]["learning_rate"] == pytest.approx(0.01)
    assert (tmp_path / "checkpoint-2" / "hooktrain_state.json").is_file()
