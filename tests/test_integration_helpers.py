"""hooktrain.integration: the helpers every logging integration shares."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import numpy as np
import torch
from safetensors.torch import load_file

from hooktrain.integration import (
    NumericFilter,
    default_run_dir,
    model_config,
    rewrite_key,
    run_config,
    save_model,
)
from hooktrain.testing import TinyRegressor, tiny_args


def test_rewrite_key_follows_hf() -> None:
    assert rewrite_key("eval_loss") == "eval/loss"
    assert rewrite_key("eval_a_accuracy") == "eval/a_accuracy"
    assert rewrite_key("test_loss") == "test/loss"
    assert rewrite_key("loss") == "train/loss"
    assert rewrite_key("train_runtime") == "train/train_runtime"


def test_numeric_filter_keeps_numbers_and_warns_once_per_key(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="hooktrain")
    keep = NumericFilter("demo")
    logs = {"loss": 0.5, "step": 3, "np": np.float32(1.5), "note": "x", "flag": True}
    assert keep(logs) == {"loss": 0.5, "step": 3.0, "np": 1.5}
    assert keep(logs) == {"loss": 0.5, "step": 3.0, "np": 1.5}
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and all(w.startswith("demo:") for w in warnings)


def test_run_config_has_arguments_and_model_config(tmp_path) -> None:
    model = TinyRegressor()
    model.config = SimpleNamespace(to_dict=lambda: {"hidden": 8, "layers": [1, 2]})
    config = run_config(tiny_args(tmp_path, learning_rate=0.5), model)
    assert config["learning_rate"] == 0.5
    assert config["report_to"] == "none"
    assert config["model_config/hidden"] == 8 and config["model_config/layers"] == "[1, 2]"
    assert model_config(TinyRegressor()) == {}


def test_default_run_dir_is_under_the_output_dir(tmp_path) -> None:
    args = tiny_args(tmp_path / "out")
    assert default_run_dir(args) == tmp_path / "out" / "runs" / "out"
    args = tiny_args(tmp_path / "out", run_name="sweep/lr-0.1")
    assert default_run_dir(args) == tmp_path / "out" / "runs" / "lr-0.1"


def test_save_model_writes_safetensors_and_config(tmp_path) -> None:
    model = TinyRegressor()
    model.config = {"hidden": 8}
    directory = save_model(model, tmp_path / "final")
    weights = load_file(directory / "model.safetensors")
    for name, tensor in model.state_dict().items():
        assert torch.equal(weights[name], tensor)
    assert json.loads((directory / "config.json").read_text()) == {"hidden": 8}
