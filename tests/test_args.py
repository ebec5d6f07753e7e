"""TrainingArguments: HF's defaults, validation with helpful errors, and serialisation."""

from __future__ import annotations

import json

import pytest

from hooktrain import TrainingArguments
from hooktrain.errors import ConfigError

HF_DEFAULTS = {
    "output_dir": "trainer_output",
    "num_train_epochs": 3.0,
    "max_steps": -1,
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "learning_rate": 5e-5,
    "weight_decay": 0.0,
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "adam_epsilon": 1e-8,
    "max_grad_norm": 1.0,
    "lr_scheduler_type": "linear",
    "warmup_steps": 0,
    "logging_strategy": "steps",
    "logging_steps": 500,
    "logging_first_step": False,
    "eval_strategy": "no",
    "eval_steps": None,
    "eval_delay": 0,
    "eval_on_start": False,
    "save_strategy": "steps",
    "save_steps": 500,
    "save_total_limit": None,
    "load_best_model_at_end": False,
    "metric_for_best_model": None,
    "greater_is_better": None,
    "ignore_data_skip": False,
    "seed": 42,
    "data_seed": None,
    "dataloader_num_workers": 0,
    "dataloader_drop_last": False,
    "dataloader_pin_memory": True,
    "remove_unused_columns": True,
    "label_names": None,
    "use_cpu": False,
    "bf16": False,
    "fp16": False,
}


@pytest.mark.parametrize("name, expected", sorted(HF_DEFAULTS.items()))
def test_defaults_match_hf(name, expected):
    args = TrainingArguments()
    value = getattr(args, name)
    assert value == expected, f"{name}: {value!r} != HF default {expected!r}"
    if isinstance(expected, float):
        assert isinstance(value, (int, float))


def test_hooktrain_own_defaults():
    args = TrainingArguments()
    assert args.report_to == "all"  # docs/architecture.md, "Selecting plugins"
    assert args.disable_plugins == []
    assert args.plugin_errors == "warn"
    assert args.lr_scheduler_kwargs == {}


def test_unknown_argument_names_nearest_field():
    with pytest.raises(ConfigError) as info:
        TrainingArguments(learning_rat=1)
    message = str(info.value)
    assert "learning_rat" in message
    assert "'learning_rate'" in message


def test_unknown_argument_is_a_value_error_too():
    # ConfigError subclasses ValueError so generic handlers still catch it.
    with pytest.raises(ValueError):
        TrainingArguments(num_train_epoch=2)


@pytest.mark.parametrize(
    "field, bad, accepted",
    [
        ("eval_strategy", "step", ["no", "steps", "epoch"]),
        ("logging_strategy", "epochs", ["no", "steps", "epoch"]),
        ("save_strategy", "always", ["no", "steps", "epoch", "best"]),
        ("lr_scheduler_type", "cosin", ["linear", "cosine", "constant", "constant_with_warmup"]),
        ("plugin_errors", "ignore", ["warn", "raise"]),
    ],
)
def test_invalid_choice_lists_accepted_values(field, bad, accepted):
    with pytest.raises(ConfigError) as info:
        TrainingArguments(**{field: bad})
    message = str(info.value)
    assert field in message
    assert repr(bad) in message
    for value in accepted:
        assert repr(value) in message, f"{value!r} missing from: {message}"


def test_fractional_steps_kept_as_ratios():
    args = TrainingArguments(
        logging_steps=0.1, save_steps=0.25, eval_strategy="steps", eval_steps=0.5,
        warmup_steps=0.05,
    )
    assert args.logging_steps == 0.1 and isinstance(args.logging_steps, float)
    assert args.save_steps == 0.25 and isinstance(args.save_steps, float)
    assert args.eval_steps == 0.5 and isinstance(args.eval_steps, float)
    assert args.warmup_steps == 0.05


def test_integral_float_steps_become_ints():
    args = TrainingArguments(logging_steps=10.0, save_steps=20.0)
    assert args.logging_steps == 10 and isinstance(args.logging_steps, int)
    assert args.save_steps == 20 and isinstance(args.save_steps, int)


@pytest.mark.parametrize("field", ["logging_steps", "save_steps", "eval_steps"])
def test_non_integral_steps_above_one_rejected(field):
    with pytest.raises(ConfigError, match=field):
        TrainingArguments(eval_strategy="steps", **{field: 2.5})


def test_negative_steps_rejected():
    with pytest.raises(ConfigError, match="logging_steps"):
        TrainingArguments(logging_steps=-1)


def test_eval_steps_default_to_logging_steps():
    args = TrainingArguments(eval_strategy="steps", logging_steps=7)
    assert args.eval_steps == 7
    args = TrainingArguments(eval_strategy="steps", logging_steps=0.2)
    assert args.eval_steps == 0.2
    # Only under the "steps" strategy.
    assert TrainingArguments(eval_strategy="epoch", logging_steps=7).eval_steps is None


def test_explicit_eval_steps_kept():
    args = TrainingArguments(eval_strategy="steps", logging_steps=7, eval_steps=3)
    assert args.eval_steps == 3


def test_load_best_model_defaults_metric_to_loss():
    args = TrainingArguments(load_best_model_at_end=True, eval_strategy="steps",
                             save_strategy="steps", eval_steps=10, save_steps=10)
    assert args.metric_for_best_model == "loss"
    assert args.greater_is_better is False


@pytest.mark.parametrize(
    "metric, greater",
    [("accuracy", True), ("eval_accuracy", True), ("f1", True), ("loss", False),
     ("eval_loss", False), ("val_nll_loss", False)],
)
def test_greater_is_better_follows_metric_name(metric, greater):
    args = TrainingArguments(load_best_model_at_end=True, eval_strategy="epoch",
                             save_strategy="epoch", metric_for_best_model=metric)
    assert args.greater_is_better is greater


def test_explicit_greater_is_better_kept():
    args = TrainingArguments(load_best_model_at_end=True, eval_strategy="epoch",
                             save_strategy="epoch", metric_for_best_model="loss",
                             greater_is_better=True)
    assert args.greater_is_better is True


def test_metric_without_load_best_still_sets_greater_is_better():
    args = TrainingArguments(metric_for_best_model="accuracy")
    assert args.greater_is_better is True


def test_load_best_model_rejects_mismatched_strategies():
    with pytest.raises(ConfigError) as info:
        TrainingArguments(load_best_model_at_end=True, eval_strategy="epoch",
                          save_strategy="steps")
    message = str(info.value)
    assert "save_strategy" in message and "eval_strategy" in message


def test_load_best_model_rejects_eval_no_with_save_steps():
    with pytest.raises(ConfigError):
        TrainingArguments(load_best_model_at_end=True)  # eval "no" vs save "steps"


def test_load_best_model_save_steps_must_be_multiple_of_eval_steps():
    with pytest.raises(ConfigError, match="multiple"):
        TrainingArguments(load_best_model_at_end=True, eval_strategy="steps",
                          save_strategy="steps", eval_steps=3, save_steps=4)
    ok = TrainingArguments(load_best_model_at_end=True, eval_strategy="steps",
                           save_strategy="steps", eval_steps=3, save_steps=6)
    assert ok.save_steps == 6


def test_load_best_model_rejects_mixing_ratio_and_absolute_steps():
    with pytest.raises(ConfigError):
        TrainingArguments(load_best_model_at_end=True, eval_strategy="steps",
                          save_strategy="steps", eval_steps=0.1, save_steps=10)


def test_load_best_model_ratio_steps_must_be_multiples():
    # HF (training_args.py): two ratios are compared after scaling by 1e6, so 0.3/0.1 passes
    # (despite float noise) and 0.25/0.1 is rejected.
    ok = TrainingArguments(load_best_model_at_end=True, eval_strategy="steps",
                           save_strategy="steps", eval_steps=0.1, save_steps=0.3)
    assert ok.save_steps == 0.3
    with pytest.raises(ConfigError):
        TrainingArguments(load_best_model_at_end=True, eval_strategy="steps",
                          save_strategy="steps", eval_steps=0.1, save_steps=0.25)


def test_save_strategy_best_needs_metric():
    with pytest.raises(ConfigError, match="metric_for_best_model"):
        TrainingArguments(save_strategy="best", eval_strategy="epoch")
    args = TrainingArguments(save_strategy="best", eval_strategy="epoch",
                             metric_for_best_model="accuracy")
    assert args.greater_is_better is True


def test_save_strategy_best_with_load_best_does_not_need_matching_strategies():
    args = TrainingArguments(save_strategy="best", eval_strategy="steps", eval_steps=5,
                             load_best_model_at_end=True, metric_for_best_model="loss")
    assert args.greater_is_better is False


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, "none"),
        ("none", "none"),
        ("all", "all"),
        ("a,b", ["a", "b"]),
        (" a , b ", ["a", "b"]),
        ("wandb", ["wandb"]),
        (["wandb", "mlflow"], ["wandb", "mlflow"]),
        (["none"], "none"),
        (["all"], "all"),
    ],
)
def test_report_to_normalised(value, expected):
    assert TrainingArguments(report_to=value).report_to == expected


def test_disable_plugins_from_comma_string():
    assert TrainingArguments(disable_plugins="codecarbon, wandb").disable_plugins == [
        "codecarbon", "wandb"]


def test_bad_batch_sizes_rejected():
    with pytest.raises(ConfigError, match="per_device_train_batch_size"):
        TrainingArguments(per_device_train_batch_size=0)
    with pytest.raises(ConfigError, match="gradient_accumulation_steps"):
        TrainingArguments(gradient_accumulation_steps=0)


def test_fp16_and_bf16_together_rejected():
    with pytest.raises(ConfigError):
        TrainingArguments(fp16=True, bf16=True)


def test_zero_logging_steps_rejected_under_steps_strategy():
    with pytest.raises(ConfigError, match="logging_steps"):
        TrainingArguments(logging_steps=0)


def test_output_dir_accepts_pathlike(tmp_path):
    args = TrainingArguments(output_dir=tmp_path / "run")
    assert args.output_dir == str(tmp_path / "run")
    json.dumps(args.to_dict())


def test_to_dict_and_json_string_are_json():
    args = TrainingArguments(
        output_dir="out", report_to=["a", "b"], logging_steps=0.1,
        lr_scheduler_kwargs={"num_cycles": 0.5}, disable_plugins=["x"],
    )
    as_dict = args.to_dict()
    assert isinstance(as_dict, dict)
    assert set(as_dict) == set(TrainingArguments.field_names())
    assert json.loads(json.dumps(as_dict)) == as_dict
    parsed = json.loads(args.to_json_string())
    assert parsed == as_dict
    assert parsed["report_to"] == ["a", "b"]
    assert parsed["logging_steps"] == 0.1
    # A dict round trip rebuilds equal arguments.
    assert TrainingArguments(**parsed).to_dict() == as_dict


def test_to_sanitized_dict_has_only_scalars():
    sanitized = TrainingArguments(report_to=["a"], label_names=["y"]).to_sanitized_dict()
    for key, value in sanitized.items():
        assert isinstance(value, (bool, int, float, str)), key
