"""The same runs through hooktrain and through the real ``transformers`` Trainer (``tox run -e hf``).

Code written for HF must run on hooktrain with only the import changed, and train the same:
the same events in the same order with the same ``global_step``, the same ``log_history``
values, and the same weights, including HF's gradient-accumulation loss normalisation for a
causal language model (``num_items_in_batch`` given to ``forward``, labels counted shifted).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from torch import nn
from torch.utils.data import Dataset

import hooktrain

LIBRARIES = {"hooktrain": hooktrain, "transformers": transformers}
TIMINGS = ("runtime", "per_second", "total_flos")


class Regression(Dataset):
    def __init__(self, n: int, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=generator)
        self.y = self.x.sum(1, keepdim=True)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[index], "labels": self.y[index]}


class Regressor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(4, 1)

    def forward(self, x, labels=None):
        prediction = self.linear(x)
        return {"loss": nn.functional.mse_loss(prediction, labels), "logits": prediction}


class Sequences(Dataset):
    """Token sequences of 8 whose tails are padding (label -100)."""

    def __init__(self, n: int = 16) -> None:
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 32, (n, 8), generator=generator)
        lengths = torch.randint(2, 9, (n,), generator=generator)
        self.labels = self.ids.clone()
        self.labels[torch.arange(8) >= lengths[:, None]] = -100

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.labels[index]}


def tiny_llama() -> transformers.LlamaForCausalLM:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=16,
    )
    return transformers.LlamaForCausalLM(config)


def recorder(base: type) -> object:
    """A callback on ``base`` (either library's TrainerCallback) noting every event HF defines."""
    events: list[tuple[str, int]] = []

    def noting(name: str):
        def hook(self, args, state, control, **kwargs):
            events.append((name, state.global_step))
        return hook

    names = [name for name in vars(transformers.TrainerCallback) if name.startswith("on_")]
    callback = type("Recorder", (base,), {name: noting(name) for name in names})()
    callback.events = events
    return callback


def train(library: str, tmp_path, model, train_dataset, eval_dataset=None, callbacks=(),
          compute_metrics=None, **arguments):
    lib = LIBRARIES[library]
    arguments = {"output_dir": str(tmp_path / library), "report_to": "none",
                 "disable_tqdm": True, "logging_steps": 1, **arguments}
    if lib is transformers:
        arguments["use_cpu"] = True
    callback = recorder(lib.TrainerCallback)
    trainer = lib.Trainer(model=model, args=lib.TrainingArguments(**arguments),
                          train_dataset=train_dataset, eval_dataset=eval_dataset,
                          callbacks=[callback, *(make(lib) for make in callbacks)],
                          compute_metrics=compute_metrics)
    trainer.train()
    return trainer, callback.events


def assert_same_logs(ours: list[dict], theirs: list[dict]) -> None:
    assert [sorted(entry) for entry in ours] == [sorted(entry) for entry in theirs]
    for mine, hf in zip(ours, theirs, strict=True):
        for key, value in hf.items():
            if not key.endswith(TIMINGS):
                assert mine[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    torch.testing.assert_close(a.state_dict(), b.state_dict(), rtol=0, atol=1e-6)


def assert_same_runs(runs: dict) -> tuple:
    """``{library: (trainer, events)}`` from :func:`train`: the same events, logs and weights."""
    (ours, our_events), (theirs, their_events) = runs["hooktrain"], runs["transformers"]
    assert our_events == their_events
    assert_same_logs(ours.state.log_history, theirs.state.log_history)
    assert_same_weights(ours.model, theirs.model)
    return ours, theirs


def mean_absolute_error(prediction) -> dict[str, float]:
    return {"mae": float(np.abs(prediction.predictions - prediction.label_ids).mean())}


def early_stopping(lib):
    return lib.EarlyStoppingCallback(early_stopping_patience=2)


SCENARIOS = {
    "accumulation, shuffled epochs": dict(
        per_device_train_batch_size=4, gradient_accumulation_steps=2, num_train_epochs=2,
        eval_strategy="epoch", save_strategy="epoch", learning_rate=0.01),
    "steps across epochs": dict(
        max_steps=7, per_device_train_batch_size=4, eval_strategy="steps", eval_steps=3,
        save_steps=2, logging_steps=2, logging_first_step=True),
    "epoch logging": dict(
        num_train_epochs=3, per_device_train_batch_size=8, logging_strategy="epoch",
        eval_strategy="epoch", save_strategy="no"),
    "best model at end": dict(
        num_train_epochs=4, per_device_train_batch_size=4, eval_strategy="epoch",
        save_strategy="epoch", load_best_model_at_end=True, metric_for_best_model="mae",
        greater_is_better=False, save_total_limit=2, logging_steps=3),
    "early stopping": dict(
        num_train_epochs=10, per_device_train_batch_size=4, eval_strategy="steps", eval_steps=2,
        save_steps=2, load_best_model_at_end=True, learning_rate=0.5, logging_steps=2,
        callbacks=[early_stopping]),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_events_logs_and_weights_match_the_transformers_trainer(tmp_path, scenario):
    runs = {
        library: train(library, tmp_path, Regressor(), Regression(20), Regression(8, seed=1),
                       compute_metrics=mean_absolute_error, **SCENARIOS[scenario])
        for library in LIBRARIES
    }
    (ours, our_events), (theirs, their_events) = runs["hooktrain"], runs["transformers"]
    assert our_events == their_events
    assert our_events[-1][0] == "on_train_end" and ("on_save" in dict(our_events)) == (
        SCENARIOS[scenario].get("save_strategy") != "no")
    assert_same_logs(ours.state.log_history, theirs.state.log_history)
    assert_same_weights(ours.model, theirs.model)
    assert (ours.state.best_metric, Path(ours.state.best_model_checkpoint or "-").name) == (
        theirs.state.best_metric, Path(theirs.state.best_model_checkpoint or "-").name)
    assert_same_logs([ours.evaluate()], [theirs.evaluate()])
    kept = [sorted(p.name for p in Path(trainer.args.output_dir).glob("checkpoint-*"))
            for trainer in (ours, theirs)]
    assert kept[0] == kept[1]  # rotation keeps the same checkpoints, the best one included
    if scenario == "early stopping":
        assert ours.state.global_step < ours.state.max_steps


def test_a_causal_lm_under_gradient_accumulation_trains_as_in_transformers(tmp_path):
    arguments = {"num_train_epochs": 1, "learning_rate": 0.1, "optim": "sgd",
                 "max_grad_norm": 0.0, "lr_scheduler_type": "constant", "seed": 0,
                 "save_strategy": "no"}
    trained = {}
    for library in LIBRARIES:
        for batch, accumulation in ((2, 2), (4, 1)):
            trained[library, accumulation] = train(
                library, tmp_path / f"ga{accumulation}", tiny_llama(), Sequences(),
                per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
                **arguments,
            )[0]
    ours = trained["hooktrain", 2]
    assert ours.model_accepts_loss_kwargs and ours.model_loss_shifts_labels
    assert_same_logs(ours.state.log_history, trained["transformers", 2].state.log_history)
    assert_same_weights(ours.model, trained["transformers", 2].model)
    # the normalisation HF fixed in 4.46: two micro-batches of 2 train as one batch of 4
    assert_same_weights(ours.model, trained["hooktrain", 1].model)


def test_the_saved_model_loads_with_from_pretrained(tmp_path):
    """``trainer.save_model()`` writes what ``from_pretrained`` reads: the config as transformers
    writes it (``None`` and lists stay JSON) and the weights, tied embeddings included."""
    model = tiny_llama()
    trainer = hooktrain.Trainer(model, hooktrain.TrainingArguments(
        output_dir=str(tmp_path), max_steps=1, report_to="none", disable_tqdm=True),
        train_dataset=Sequences())
    trainer.train()
    trainer.save_model(str(tmp_path / "final"))
    loaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "final")
    loading = {"_name_or_path", "dtype", "transformers_version"}  # set by from_pretrained

    def architecture(config):
        return {k: v for k, v in config.to_dict().items() if k not in loading}

    assert architecture(loaded.config) == architecture(model.config)
    assert_same_weights(loaded, model)


def test_auto_wrap_shards_the_models_no_split_modules(tmp_path):
    """``fsdp="full_shard auto_wrap"``: the units are transformers' decoder layers."""
    from hooktrain.fsdp import plan_from, units

    plan = plan_from(hooktrain.TrainingArguments(output_dir=str(tmp_path),
                                                 fsdp="full_shard auto_wrap"))
    model = tiny_llama()
    assert set(model._no_split_modules) == {"LlamaDecoderLayer"}
    assert [type(m).__name__ for m in units(model, plan)] == ["LlamaDecoderLayer"]
