"""Misconfiguration fails at Trainer(...) / TrainingArguments(...), before any step."""

from __future__ import annotations

import math
import warnings

import pytest

from hooktrain import Trainer, TrainerCallback, TrainingArguments
from hooktrain.errors import ConfigError
from hooktrain.testing import RegressionDataset, TinyRegressor, tiny_args


class CountSteps(TrainerCallback):
    steps = 0

    def on_step_end(self, args, state, control, **kwargs):
        CountSteps.steps += 1


@pytest.mark.parametrize("field, value, words", [
    ("learning_rate", -1e-3, "learning_rate"), ("learning_rate", math.nan, "learning_rate"),
    ("learning_rate", math.inf, "learning_rate"), ("warmup_ratio", 1.5, "warmup_ratio"),
    ("weight_decay", -0.1, "weight_decay"), ("num_train_epochs", 0, "num_train_epochs"),
    ("dataloader_num_workers", -1, "dataloader_num_workers"),
])
def test_impossible_values_are_one_error_naming_the_field(field, value, words) -> None:
    with pytest.raises(ConfigError, match=words):
        TrainingArguments("out", **{field: value})


def test_no_epochs_is_fine_when_max_steps_is_set() -> None:
    assert TrainingArguments("out", num_train_epochs=0, max_steps=3).max_steps == 3


def test_output_dir_that_is_a_file_or_under_one(tmp_path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    for output_dir, words in ((afile, "is a file"), (afile / "sub" / "dir", "under a file")):
        with pytest.raises(ConfigError, match=words):
            Trainer(TinyRegressor(), tiny_args(output_dir), train_dataset=RegressionDataset())


def test_output_dir_that_refuses_new_files() -> None:
    # /proc refuses new files even to root, who may write anywhere else
    with pytest.raises(ConfigError, match="not writable"):
        Trainer(TinyRegressor(), tiny_args("/proc/hooktrain-out"), train_dataset=RegressionDataset())


def test_evaluation_without_an_eval_dataset_fails_at_construction(tmp_path) -> None:
    with pytest.raises(ConfigError, match="eval_dataset"):
        Trainer(TinyRegressor(), tiny_args(tmp_path, eval_strategy="steps", eval_steps=2),
                train_dataset=RegressionDataset())
    with pytest.raises(ConfigError, match="load_best_model_at_end"):
        Trainer(TinyRegressor(), tiny_args(tmp_path, load_best_model_at_end=True),
                train_dataset=RegressionDataset())


def test_a_checkpoint_folder_hooktrain_did_not_write_is_never_replaced_silently(tmp_path) -> None:
    foreign = tmp_path / "checkpoint-4"
    foreign.mkdir()
    (foreign / "pytorch_model.bin").write_bytes(b"someone else's")
    with pytest.raises(ConfigError, match="checkpoint-4.*overwrite_output_dir"):
        Trainer(TinyRegressor(), tiny_args(tmp_path, save_strategy="steps", save_steps=4),
                train_dataset=RegressionDataset())
    with warnings.catch_warnings():  # a transformers 4.x field: warned once per process
        warnings.simplefilter("ignore", FutureWarning)
        args = tiny_args(tmp_path, save_strategy="steps", save_steps=4, overwrite_output_dir=True)
    Trainer(TinyRegressor(), args, train_dataset=RegressionDataset()).train()
    assert (foreign / "manifest.json").is_file()  # allowed: replaced by hooktrain's


def test_a_missing_best_metric_is_an_error_after_that_steps_checkpoint_is_saved(tmp_path) -> None:
    args = tiny_args(tmp_path, eval_strategy="steps", eval_steps=2, save_strategy="steps",
                     save_steps=2, metric_for_best_model="accuracy")
    trainer = Trainer(TinyRegressor(), args, train_dataset=RegressionDataset(),
                      eval_dataset=RegressionDataset(8))
    with pytest.raises(ConfigError, match="accuracy"):
        trainer.train()
    assert (tmp_path / "checkpoint-2" / "manifest.json").is_file()
