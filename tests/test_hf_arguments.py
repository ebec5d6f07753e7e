"""transformers' TrainingArguments fields in hooktrain, and EvalPrediction as HF's.

The same runs compared with the real transformers Trainer are in ``tests_hf/``; these tests need
no transformers.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hooktrain import Trainer, TrainerCallback, TrainingArguments
from hooktrain.errors import ConfigError
from hooktrain.hf_args import FIELD_STATUS, UNSUPPORTED, HFArguments, markdown_table
from hooktrain.loss import smoothed_loss
from hooktrain.outputs import EvalPrediction
from hooktrain.testing import RegressionDataset, TinyRegressor, tiny_args

DOCS = Path(__file__).parents[1] / "docs" / "hf-training-arguments.md"


def test_eval_prediction_unpacks_as_two_items_unless_inputs_or_losses_are_given() -> None:
    logits, labels = EvalPrediction(np.ones(2), np.zeros(2))
    assert logits.sum() == 2 and labels.sum() == 0
    with_inputs = EvalPrediction(np.ones(2), np.zeros(2), inputs=np.arange(2))
    assert len(with_inputs) == 3 and with_inputs[2].tolist() == [0, 1]
    assert len(EvalPrediction(1, 2, losses=3)) == 3
    assert len(EvalPrediction(1, 2, 3, 4)) == 4
    prediction = EvalPrediction("p", "l")
    assert (prediction.predictions, prediction.label_ids, prediction[0]) == ("p", "l", "p")
    assert prediction.inputs is None and prediction.losses is None
    with pytest.raises(IndexError):
        prediction[2]


def test_compute_metrics_written_for_hf_runs_in_evaluation(tmp_path) -> None:
    def compute_metrics(eval_pred):
        predictions, labels = eval_pred  # the most common line in HF's examples
        return {"mae": float(np.abs(predictions - labels).mean())}

    trainer = Trainer(TinyRegressor(), tiny_args(tmp_path), train_dataset=RegressionDataset(16),
                      eval_dataset=RegressionDataset(8, seed=1), compute_metrics=compute_metrics)
    assert trainer.evaluate()["eval_mae"] > 0


def test_every_hf_field_has_a_status_and_the_docs_table_is_current() -> None:
    hf_fields = {name for name in HFArguments.__dataclass_fields__}
    assert hf_fields == set(FIELD_STATUS)
    assert DOCS.read_text() == markdown_table(TrainingArguments), (
        "docs/hf-training-arguments.md is stale: python -m hooktrain.hf_args > "
        "docs/hf-training-arguments.md")


def test_defaults_of_unsupported_fields_are_accepted_and_other_values_name_the_field() -> None:
    TrainingArguments("out", push_to_hub=False, deepspeed=None, include_for_metrics=[])
    for name, value in (("deepspeed", "ds.json"),
                        ("use_liger_kernel", True), ("save_only_model", True),
                        ("include_for_metrics", ["inputs"])):
        assert FIELD_STATUS[name][0] == UNSUPPORTED
        with pytest.raises(ConfigError, match=name):
            TrainingArguments("out", **{name: value})


def test_push_to_hub_says_how_to_upload_after_training() -> None:
    with pytest.raises(ConfigError, match="upload_folder"):
        TrainingArguments("out", push_to_hub=True)


def test_fields_that_configure_absent_machinery_are_accepted() -> None:
    args = TrainingArguments("out", do_train=True, do_eval=True, skip_memory_metrics=False,
                             accelerator_config={"split_batches": True}, hub_model_id="me/x",
                             local_rank=0, ddp_static_graph=True, log_level="info")
    assert args.do_train and args.hub_model_id == "me/x"


def test_transformers_4_fields_warn_once_and_the_renamed_ones_apply() -> None:
    with pytest.warns(FutureWarning, match="evaluation_strategy"):
        args = TrainingArguments("out", evaluation_strategy="steps", eval_steps=3,
                                 overwrite_output_dir=True, no_cuda=True)
    assert args.eval_strategy == "steps" and args.use_cpu
    with pytest.raises(ConfigError, match="group_by_length"):
        TrainingArguments("out", group_by_length=True)


def test_an_optimizer_that_needs_a_missing_package_is_one_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="bitsandbytes"):
        TrainingArguments("out", optim="adamw_8bit")
    with pytest.raises(ConfigError, match="Accepted values"):
        TrainingArguments("out", optim="adamw_nonexistent")


@pytest.mark.parametrize("optim, cls", [("sgd", torch.optim.SGD), ("adagrad", torch.optim.Adagrad),
                                        ("rmsprop", torch.optim.RMSprop),
                                        ("adamw_torch", torch.optim.AdamW)])
def test_torch_optimizers_with_optim_args(tmp_path, optim, cls) -> None:
    extra = {"sgd": "momentum=0.9,nesterov=true", "rmsprop": "alpha=0.9,centered=true",
             "adagrad": "lr_decay=0.01"}.get(optim)
    trainer = Trainer(TinyRegressor(), tiny_args(tmp_path, optim=optim, optim_args=extra),
                      train_dataset=RegressionDataset(8))
    trainer.train()
    assert type(trainer.optimizer) is cls
    if optim == "sgd":
        assert trainer.optimizer.defaults["momentum"] == 0.9
        assert trainer.optimizer.defaults["nesterov"] is True


def test_label_smoothing_matches_the_formula() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 7)
    labels = torch.randint(0, 7, (3, 5))
    labels[0, :2] = -100
    epsilon = 0.1
    loss = smoothed_loss({"logits": logits}, labels, epsilon)
    keep = labels != -100
    log_probs = torch.log_softmax(logits, -1)[keep]
    nll = -log_probs.gather(-1, labels[keep].unsqueeze(-1)).mean()
    uniform = -log_probs.mean()
    assert loss.item() == pytest.approx(((1 - epsilon) * nll + epsilon * uniform).item(),
                                        rel=1e-6)


class NanAtStep(torch.nn.Module):
    """TinyRegressor whose loss is NaN on its third forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.inner, self.calls = TinyRegressor(), 0

    def forward(self, x, labels=None):
        out = self.inner(x, labels)
        self.calls += 1
        if labels is not None and self.calls == 3:
            out["loss"] = out["loss"] * float("nan")
        return out


def test_logging_nan_inf_filter_keeps_the_logged_loss_finite(tmp_path) -> None:
    trainer = Trainer(NanAtStep(), tiny_args(tmp_path, max_grad_norm=0, learning_rate=0.0),
                      train_dataset=RegressionDataset(16))
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert all(math.isfinite(loss) for loss in losses)
    unfiltered = Trainer(NanAtStep(), tiny_args(tmp_path, logging_nan_inf_filter=False,
                                                max_grad_norm=0, learning_rate=0.0),
                         train_dataset=RegressionDataset(16))
    unfiltered.train()
    assert math.isnan(unfiltered.state.log_history[1]["loss"])


def test_sequential_sampling_reads_the_data_in_order(tmp_path) -> None:
    seen = []

    class Recording(Trainer):
        def training_step(self, model, inputs, num_items_in_batch=None):
            seen.append(inputs["labels"].clone())
            return super().training_step(model, inputs, num_items_in_batch)

    dataset = RegressionDataset(8)
    Recording(TinyRegressor(), tiny_args(tmp_path, train_sampling_strategy="sequential",
                                         num_train_epochs=1), train_dataset=dataset).train()
    assert torch.equal(torch.cat(seen), dataset.y)


def test_reduce_lr_on_plateau_steps_on_evaluations(tmp_path) -> None:
    args = tiny_args(tmp_path, lr_scheduler_type="reduce_lr_on_plateau", eval_strategy="steps",
                     eval_steps=1, lr_scheduler_kwargs={"patience": 0, "factor": 0.5},
                     learning_rate=0.0, num_train_epochs=1)
    trainer = Trainer(TinyRegressor(), args, train_dataset=RegressionDataset(16),
                      eval_dataset=RegressionDataset(8, seed=1))
    trainer.train()
    assert isinstance(trainer.lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert trainer.args.metric_for_best_model == "loss"
    with pytest.raises(ConfigError, match="eval_strategy"):
        TrainingArguments("out", lr_scheduler_type="reduce_lr_on_plateau")


def test_a_scheduler_kwarg_that_does_not_belong_is_one_error(tmp_path) -> None:
    trainer = Trainer(TinyRegressor(), tiny_args(tmp_path, lr_scheduler_type="linear",
                                                 lr_scheduler_kwargs={"num_cycles": 2}),
                      train_dataset=RegressionDataset(8))
    with pytest.raises(ConfigError, match="num_cycles"):
        trainer.train()
    trainer = Trainer(TinyRegressor(), tiny_args(tmp_path, lr_scheduler_type="cosine_with_min_lr"),
                      train_dataset=RegressionDataset(8))
    with pytest.raises(ConfigError, match="min_lr"):
        trainer.train()


def test_prediction_loss_only_skips_predictions_and_metrics(tmp_path) -> None:
    called = []
    trainer = Trainer(TinyRegressor(), tiny_args(tmp_path, prediction_loss_only=True),
                      eval_dataset=RegressionDataset(8), compute_metrics=called.append)
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics and not called


def test_torch_compile_trains_through_the_compiled_module(tmp_path) -> None:
    modules = []

    class Recording(Trainer):
        def training_step(self, model, inputs, num_items_in_batch=None):
            modules.append(model)
            return super().training_step(model, inputs, num_items_in_batch)

    trainer = Recording(TinyRegressor(), tiny_args(tmp_path, torch_compile_backend="eager",
                                                   num_train_epochs=1),
                        train_dataset=RegressionDataset(8))
    assert trainer.args.torch_compile
    trainer.train()
    assert hasattr(modules[0], "_orig_mod") and modules[0]._orig_mod is trainer.model


def test_gradient_checkpointing_on_a_model_without_it_is_one_error(tmp_path) -> None:
    trainer = Trainer(TinyRegressor(), tiny_args(tmp_path, gradient_checkpointing=True),
                      train_dataset=RegressionDataset(8))
    with pytest.raises(ConfigError, match="gradient_checkpointing_enable"):
        trainer.train()


def test_gradient_checkpointing_calls_the_models_method(tmp_path) -> None:
    class Checkpointable(TinyRegressor):
        enabled_with = None

        def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None):
            self.enabled_with = gradient_checkpointing_kwargs

    model = Checkpointable()
    Trainer(model, tiny_args(tmp_path, gradient_checkpointing=True,
                             gradient_checkpointing_kwargs={"use_reentrant": False}),
            train_dataset=RegressionDataset(8)).train()
    assert model.enabled_with == {"use_reentrant": False}


def test_an_hf_style_callback_sees_the_new_fields_in_args(tmp_path) -> None:
    seen = {}

    class Reader(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            seen["smoothing"] = args.label_smoothing_factor

    Trainer(TinyRegressor(), tiny_args(tmp_path), train_dataset=RegressionDataset(8),
            callbacks=[Reader()]).train()
    assert seen == {"smoothing": 0.0}


class GlueStyle(torch.utils.data.Dataset):
    """GLUE-style samples: the target under ``label`` (float: a regression task like STS-B)."""

    def __init__(self, n: int = 16) -> None:
        self.inner = RegressionDataset(n)

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> dict:
        sample = self.inner[index]
        return {"x": sample["x"], "label": float(sample["labels"])}


def test_a_dataset_with_label_trains_as_with_labels(tmp_path) -> None:
    torch.manual_seed(0)
    glue = Trainer(TinyRegressor(), tiny_args(tmp_path / "a"), train_dataset=GlueStyle())
    glue.train()
    torch.manual_seed(0)
    plain = Trainer(TinyRegressor(), tiny_args(tmp_path / "b"), train_dataset=RegressionDataset())
    plain.train()
    losses = [[e["loss"] for e in run.state.log_history if "loss" in e] for run in (glue, plain)]
    assert losses[0] and losses[0] == pytest.approx(losses[1], rel=1e-5)
