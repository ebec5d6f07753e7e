"""``TrainerState`` and ``TrainerControl`` behave as HF's (docs/migrating-from-transformers.md):
JSON round trips, values saved as plain numbers, exportable control state, HF's defaults."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import torch

from hooktrain import ExportableState, TrainerControl, TrainerState

# ---- TrainerState / TrainerControl -------------------------------------------------------


def test_trainer_state_json_round_trip(tmp_path):
    state = TrainerState(
        epoch=1.5, global_step=6, max_steps=8, logging_steps=2, eval_steps=3, save_steps=3,
        train_batch_size=4, num_train_epochs=2, total_flos=123.0,
        log_history=[{"loss": 0.5, "step": 2}, {"eval_loss": 0.25, "epoch": 1.0, "step": 3}],
        best_metric=0.25, best_global_step=3, best_model_checkpoint="out/checkpoint-3",
        trial_params={"lr": 0.1}, stateful_callbacks={"TrainerControl": TrainerControl().state()},
    )
    path = tmp_path / "trainer_state.json"
    state.save_to_json(path)
    text = path.read_text()
    assert text.endswith("\n")
    assert json.loads(text) == json.loads(json.dumps(dataclasses.asdict(state)))
    assert list(json.loads(text)) == sorted(json.loads(text))
    assert TrainerState.load_from_json(path) == state


def test_trainer_state_saves_numpy_and_tensor_values_as_numbers(tmp_path):
    state = TrainerState(log_history=[{
        "loss": np.float32(0.5), "grad_norm": torch.tensor(2.5), "count": np.int64(3),
        "lr": np.float64(0.125), "step": 1,
    }])
    path = tmp_path / "trainer_state.json"
    state.save_to_json(path)
    (entry,) = json.loads(path.read_text())["log_history"]
    assert entry == {"loss": 0.5, "grad_norm": 2.5, "count": 3, "lr": 0.125, "step": 1}
    assert type(entry["count"]) is int
    assert type(entry["loss"]) is float
    assert type(entry["grad_norm"]) is float


def test_trainer_state_saves_arrays_and_tensors_as_lists(tmp_path):
    """Non-scalar values are data too: ``_plain`` means to write them with ``tolist()``."""
    state = TrainerState(log_history=[{
        "per_class": np.array([0.5, 0.25]), "weights": torch.tensor([1.0, 2.0]), "step": 1,
    }])
    path = tmp_path / "trainer_state.json"
    state.save_to_json(path)
    (entry,) = json.loads(path.read_text())["log_history"]
    assert entry == {"per_class": [0.5, 0.25], "weights": [1.0, 2.0], "step": 1}


def test_trainer_state_load_ignores_unknown_keys(tmp_path):
    path = tmp_path / "trainer_state.json"
    data = dataclasses.asdict(TrainerState(global_step=7))
    data["a_field_from_a_newer_version"] = {"x": 1}
    path.write_text(json.dumps(data))
    loaded = TrainerState.load_from_json(path)
    assert loaded.global_step == 7
    assert not hasattr(loaded, "a_field_from_a_newer_version")


def test_trainer_control_is_exportable_state():
    control = TrainerControl(should_save=True, should_training_stop=True)
    assert isinstance(control, ExportableState)
    state = control.state()
    assert state == {
        "args": {"should_training_stop": True, "should_epoch_stop": False, "should_save": True,
                 "should_evaluate": False, "should_log": False},
        "attributes": {},
    }
    assert TrainerControl.from_state(state) == control


def test_trainer_control_defaults_are_false():
    control = TrainerControl()
    assert not any(dataclasses.asdict(control).values())


def test_trainer_state_defaults_match_hf():
    state = TrainerState()
    assert (state.epoch, state.global_step, state.max_steps) == (0, 0, 0)
    assert (state.logging_steps, state.eval_steps, state.save_steps) == (500, 500, 500)
    assert state.log_history == [] and state.stateful_callbacks == {}
    assert state.best_metric is None and state.is_world_process_zero
