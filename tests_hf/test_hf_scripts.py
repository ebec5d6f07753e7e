"""HF scripts run unchanged: arguments, schedules, optimizers, label smoothing, callbacks.

Each test runs the same code through ``hooktrain`` and through ``transformers`` (``tox run -e
hf``) and compares what a user would see: learning rates step by step, losses, weights, events.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import transformers
from test_transformers_parity import (
    LIBRARIES,
    Regression,
    Regressor,
    Sequences,
    assert_same_logs,
    assert_same_runs,
    assert_same_weights,
    recorder,
    tiny_llama,
    train,
)
from torch import nn
from torch.utils.data import Dataset
from transformers.optimization import get_scheduler
from transformers.trainer_pt_utils import LabelSmoother

import hooktrain
from hooktrain.loss import smoothed_loss
from hooktrain.schedules import create_scheduler


def hf_fields() -> dict[str, object]:
    defaults = {}
    for field in dataclasses.fields(transformers.TrainingArguments):
        if not field.init:
            continue
        if field.default is not dataclasses.MISSING:
            defaults[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            defaults[field.name] = field.default_factory()
    return defaults


def test_every_transformers_field_is_accepted_with_its_default() -> None:
    defaults = hf_fields()
    args = hooktrain.TrainingArguments(**defaults)
    assert args.output_dir == "trainer_output" and args.report_to == "none"
    assert set(defaults) <= set(hooktrain.TrainingArguments.field_names())


SCHEDULES = {
    "linear": {}, "cosine": {"num_cycles": 0.7}, "cosine_with_restarts": {"num_cycles": 3},
    "polynomial": {"lr_end": 1e-4, "power": 2.0}, "constant": {}, "constant_with_warmup": {},
    "inverse_sqrt": {}, "cosine_with_min_lr": {"min_lr": 1e-4},
    "cosine_warmup_with_min_lr": {"min_lr_rate": 0.1},
    "warmup_stable_decay": {"num_decay_steps": 6, "decay_type": "1-sqrt"},
}


@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("warmup", [0, 4])
def test_each_schedule_gives_transformers_learning_rates_step_by_step(kind, warmup) -> None:
    total = 20
    args = hooktrain.TrainingArguments("out", learning_rate=0.1, lr_scheduler_type=kind,
                                       lr_scheduler_kwargs=SCHEDULES[kind], warmup_steps=warmup)
    ours_opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    theirs_opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    ours = create_scheduler(ours_opt, args, total)
    theirs = get_scheduler(kind, theirs_opt, num_warmup_steps=warmup, num_training_steps=total,
                           scheduler_specific_kwargs=dict(SCHEDULES[kind]))
    for step in range(total + 2):
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-9), step
        ours_opt.step(), theirs_opt.step()
        ours.step(), theirs.step()


@pytest.mark.parametrize("shift", [False, True])
def test_label_smoothing_is_transformers_label_smoother(shift) -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    labels = torch.randint(0, 11, (2, 6))
    labels[1, 3:] = -100
    theirs = LabelSmoother(epsilon=0.2)({"logits": logits}, labels, shift_labels=shift)
    ours = smoothed_loss({"logits": logits}, labels, 0.2, shift_labels=shift)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)


class Classes(Dataset):
    """GLUE-style classification: the target under ``label`` (an int)."""

    def __init__(self, n: int = 24) -> None:
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=generator)
        self.y = (self.x.sum(1) > 0).long() + (self.x[:, 0] > 1).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict:
        return {"x": self.x[index], "label": int(self.y[index])}


class Classifier(nn.Module):
    config = SimpleNamespace(problem_type="single_label_classification")  # HF reads it

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(4, 3)

    def forward(self, x, labels=None):
        logits = self.linear(x)
        if labels is None:
            return {"logits": logits}
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}


def accuracy(eval_pred) -> dict[str, float]:
    logits, labels = eval_pred  # HF's documented unpacking
    return {"accuracy": float((logits.argmax(-1) == labels).mean())}


RUNS = {
    "label smoothing": dict(label_smoothing_factor=0.1),
    "sgd with momentum": dict(optim="sgd", optim_args="momentum=0.9,nesterov=true"),
    "adagrad": dict(optim="adagrad"),
    "rmsprop": dict(optim="rmsprop", optim_args="alpha=0.9"),
    "adafactor": dict(optim="adafactor"),
    "cosine with restarts": dict(lr_scheduler_type="cosine_with_restarts", warmup_steps=0.2,
                                 lr_scheduler_kwargs={"num_cycles": 2}),
    "plateau": dict(lr_scheduler_type="reduce_lr_on_plateau",
                    lr_scheduler_kwargs={"patience": 0, "factor": 0.5}),
    "sequential, nan filter off": dict(train_sampling_strategy="sequential",
                                       logging_nan_inf_filter=False),
}


@pytest.mark.parametrize("run", RUNS)
def test_glue_style_classification_trains_as_in_transformers(tmp_path, run) -> None:
    arguments = dict(num_train_epochs=2, per_device_train_batch_size=4, learning_rate=0.05,
                     eval_strategy="steps", eval_steps=3, save_strategy="no", logging_steps=2,
                     **RUNS[run])
    runs = {library: train(library, tmp_path, Classifier(), Classes(), Classes(8),
                           compute_metrics=accuracy, **arguments) for library in LIBRARIES}
    assert_same_runs(runs)


class Unseeded(Regressor):
    """Regressor without its own seeding: model_init's weights come from the Trainer's seed."""

    def __init__(self) -> None:
        nn.Module.__init__(self)
        self.linear = nn.Linear(4, 1)


def test_model_init_trains_as_in_transformers(tmp_path) -> None:
    trained = {}
    for name, lib in LIBRARIES.items():
        args = lib.TrainingArguments(str(tmp_path / name), report_to="none", disable_tqdm=True,
                                     use_cpu=True, num_train_epochs=2, logging_steps=2,
                                     save_strategy="no", per_device_train_batch_size=4)
        trainer = lib.Trainer(args=args, model_init=Unseeded, train_dataset=Regression(12))
        trainer.train()
        trained[name] = trainer
    assert_same_logs(trained["hooktrain"].state.log_history,
                     trained["transformers"].state.log_history)
    assert_same_weights(trained["hooktrain"].model, trained["transformers"].model)


def test_a_transformers_callback_runs_on_hooktrain_with_the_same_events(tmp_path) -> None:
    """A callback written for HF (subclassing transformers.TrainerCallback, stateful through
    transformers.ExportableState) needs no change, and hooktrain imports no transformers."""
    events = {}
    for name, lib in LIBRARIES.items():
        callback = recorder(transformers.TrainerCallback)  # HF's base, in both Trainers
        stopper = transformers.EarlyStoppingCallback(early_stopping_patience=1)
        args = lib.TrainingArguments(str(tmp_path / name), report_to="none", disable_tqdm=True,
                                     use_cpu=True, num_train_epochs=6, eval_strategy="steps",
                                     eval_steps=2, save_steps=2, learning_rate=2.0,
                                     load_best_model_at_end=True, logging_steps=2,
                                     per_device_train_batch_size=4)
        trainer = lib.Trainer(Regressor(), args, train_dataset=Regression(12),
                              eval_dataset=Regression(8, seed=1), callbacks=[callback, stopper])
        trainer.train()
        events[name] = callback.events
        assert stopper.early_stopping_patience_counter >= 1
    assert events["hooktrain"] == events["transformers"]
    checkpoint = sorted((tmp_path / "hooktrain").glob("checkpoint-*"))[-1]
    state = hooktrain.TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
    assert "EarlyStoppingCallback" in str(state.stateful_callbacks)


def test_gradient_checkpointing_on_a_transformers_model_changes_no_number(tmp_path) -> None:
    arguments = {"num_train_epochs": 1, "learning_rate": 0.1, "optim": "sgd", "seed": 0,
                 "per_device_train_batch_size": 4, "save_strategy": "no",
                 "lr_scheduler_type": "constant"}
    plain = train("hooktrain", tmp_path / "plain", tiny_llama(), Sequences(), **arguments)[0]
    checkpointed, _ = train("hooktrain", tmp_path / "gc", tiny_llama(), Sequences(),
                            gradient_checkpointing=True, **arguments)
    theirs, _ = train("transformers", tmp_path / "hf", tiny_llama(), Sequences(),
                      gradient_checkpointing=True, **arguments)
    assert checkpointed.model.model.gradient_checkpointing
    assert_same_logs(checkpointed.state.log_history, theirs.state.log_history)
    assert_same_weights(checkpointed.model, plain.model)
    assert_same_weights(checkpointed.model, theirs.model)


def test_importing_hooktrain_does_not_import_transformers() -> None:
    import subprocess
    import sys

    code = "import sys, hooktrain; hooktrain.Trainer; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_predictions_unpack_the_same(tmp_path) -> None:
    seen = {}
    for name, lib in LIBRARIES.items():
        def metrics(eval_pred, name=name):
            predictions, labels = eval_pred
            seen[name] = (predictions.shape, labels.shape, eval_pred.inputs)
            return {"n": float(np.size(labels))}

        args = lib.TrainingArguments(str(tmp_path / name), report_to="none", use_cpu=True)
        lib.Trainer(Regressor(), args, eval_dataset=Regression(6),
                    compute_metrics=metrics).evaluate()
    assert seen["hooktrain"] == seen["transformers"]


def test_neftune_noise_is_transformers_noise(tmp_path) -> None:
    """The hook adds what HF's adds (same formula, same RNG draws); the runs themselves differ
    only because HF's DataLoader draws its base seed from the global RNG and hooktrain's does
    not (so that a resumed run draws as the uninterrupted one)."""
    from transformers.integrations.neftune import neftune_post_forward_hook

    from hooktrain.preparation import neftune_noise as _neftune_noise

    embedding = nn.Embedding(32, 16)
    embedding.neftune_noise_alpha = 5.0
    output = embedding(torch.randint(0, 32, (2, 8)))
    torch.manual_seed(1)
    theirs = neftune_post_forward_hook(embedding, None, output)
    torch.manual_seed(1)
    ours = _neftune_noise(embedding, None, output)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)

    arguments = {"num_train_epochs": 1, "learning_rate": 0.1, "optim": "sgd", "seed": 0,
                 "per_device_train_batch_size": 4, "save_strategy": "no",
                 "lr_scheduler_type": "constant"}
    noisy, _ = train("hooktrain", tmp_path / "ours", tiny_llama(), Sequences(),
                     neftune_noise_alpha=5.0, **arguments)
    plain, _ = train("hooktrain", tmp_path / "plain", tiny_llama(), Sequences(), **arguments)
    assert noisy.state.log_history[0]["loss"] != plain.state.log_history[0]["loss"]
    assert not noisy.model.get_input_embeddings()._forward_hooks  # removed after training
    # evaluation adds no noise: the same loss twice
    assert noisy.evaluate(Sequences(4))["eval_loss"] == noisy.evaluate(Sequences(4))["eval_loss"]


def test_every_public_trainer_method_is_there_or_listed_as_not_supported() -> None:
    import inspect
    from pathlib import Path

    page = (Path(__file__).parents[1] / "docs" / "migrating-from-transformers.md").read_text()
    not_supported = page.split("## Not supported", 1)[1]
    missing = [name for name, _ in inspect.getmembers(transformers.Trainer)
               if not name.startswith("_") and not hasattr(hooktrain.Trainer, name)]
    unlisted = [name for name in missing if f"`{name}`" not in not_supported]
    assert not unlisted, f"add these to docs/migrating-from-transformers.md: {unlisted}"
