"""Checkpoint layout, safe loading and on_save (issue 4; docs/architecture.md, "Checkpoints and
resume").

Every run here is tiny (16 samples, batch 4: 4 optimizer steps per epoch, 2 epochs by default).
Corrupt checkpoints and resume_from_checkpoint=True are in ``test_checkpoint_loading.py``,
rotation in ``test_checkpoint_rotation.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch
from checkpoint_runs import checkpoint_names, train
from safetensors.torch import load_file

from hooktrain import hookimpl
from hooktrain.trainer_state import TrainerState

FILES = {
    "model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json",
    "training_args.json", "hooktrain_state.json", "manifest.json",
}
TORCH_FILES = ("optimizer.pt", "scheduler.pt", "rng_state.pth")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- layout ----------------------------------------------------------------------------------


def test_layout_has_exactly_the_documented_files(finished_run):
    out, _ = finished_run
    assert checkpoint_names(out) == ["checkpoint-2", "checkpoint-4", "checkpoint-6", "checkpoint-8"]
    for name in checkpoint_names(out):
        assert {p.name for p in (out / name).iterdir()} == FILES, name


def test_no_temporary_or_deleting_directories_are_left(tmp_path):
    out = tmp_path / "run"
    train(out, save_steps=1, save_total_limit=2)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-7", "checkpoint-8"]
    hidden = [p.name for p in out.rglob("*") if p.name.startswith(".")]
    assert hidden == []


def test_manifest_lists_every_other_file_with_size_and_sha256(finished_run):
    out, _ = finished_run
    for name in checkpoint_names(out):
        path = out / name
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["format"] == "hooktrain-checkpoint/1"
        assert set(manifest["files"]) == FILES - {"manifest.json"}
        for file, entry in manifest["files"].items():
            assert entry["size"] == (path / file).stat().st_size, (name, file)
            assert entry["sha256"] == sha256(path / file), (name, file)


def test_weights_are_safetensors_and_match_the_model_at_that_step(finished_run):
    out, trainer = finished_run
    weights = load_file(str(out / "checkpoint-8" / "model.safetensors"))
    final = trainer.model.state_dict()
    assert set(weights) == set(final)
    for key, value in weights.items():
        assert torch.equal(value, final[key]), key


def test_every_torch_file_loads_with_weights_only(finished_run):
    out, trainer = finished_run
    path = out / "checkpoint-8"
    for name in TORCH_FILES:
        data = torch.load(path / name, weights_only=True)  # raises on any pickled object
        assert isinstance(data, dict), name
    optimizer = torch.load(path / "optimizer.pt", weights_only=True)
    assert set(optimizer) == {"state", "param_groups"}
    live = trainer.optimizer.state_dict()
    for index, tensors in live["state"].items():
        for key, value in tensors.items():
            assert torch.equal(optimizer["state"][index][key], value), (index, key)
    scheduler = torch.load(path / "scheduler.pt", weights_only=True)
    assert scheduler == trainer.lr_scheduler.state_dict()
    rng = torch.load(path / "rng_state.pth", weights_only=True)
    assert {"python", "numpy", "cpu"} <= set(rng)
    assert isinstance(rng["cpu"], torch.Tensor)


def test_trainer_state_json_is_hf_format(finished_run):
    out, trainer = finished_run
    text = (out / "checkpoint-6" / "trainer_state.json").read_text()
    data = json.loads(text)
    # HF's save_to_json: json.dumps(asdict(state), indent=2, sort_keys=True) + "\n"
    assert text == json.dumps(data, indent=2, sort_keys=True) + "\n"
    hf_fields = {
        "epoch", "global_step", "max_steps", "logging_steps", "eval_steps", "save_steps",
        "train_batch_size", "num_train_epochs", "num_input_tokens_seen", "total_flos",
        "log_history", "best_metric", "best_global_step", "best_model_checkpoint",
        "is_local_process_zero", "is_world_process_zero", "is_hyper_param_search", "trial_name",
        "trial_params", "stateful_callbacks",
    }
    assert hf_fields <= set(data)
    assert data["global_step"] == 6
    assert data["max_steps"] == 8
    assert data["epoch"] == 1.5
    assert data["save_steps"] == 2 and data["logging_steps"] == 2 and data["eval_steps"] == 2
    assert [e["step"] for e in data["log_history"]] == [2, 2, 4, 4, 6, 6]
    assert data["log_history"] == trainer.state.log_history[:6]
    assert "TrainerControl" in data["stateful_callbacks"]
    loaded = TrainerState.load_from_json(out / "checkpoint-6" / "trainer_state.json")
    assert loaded.global_step == 6
    assert dataclasses.asdict(loaded)["log_history"] == data["log_history"]


def test_training_args_are_json_not_pickle(finished_run):
    out, trainer = finished_run
    path = out / "checkpoint-8"
    assert not (path / "training_args.bin").exists()
    data = json.loads((path / "training_args.json").read_text())
    assert data["output_dir"] == str(out)
    assert data["save_steps"] == 2
    assert data["learning_rate"] == trainer.args.learning_rate
    assert data["per_device_train_batch_size"] == 4


def test_loop_state_holds_the_running_loss_sums(finished_run):
    out, trainer = finished_run
    data = json.loads((out / "checkpoint-8" / "hooktrain_state.json").read_text())
    assert isinstance(data, dict) and data
    for value in data.values():
        assert isinstance(value, (int, float))
    last_log = [e for e in trainer.state.log_history if "grad_norm" in e][-1]
    assert last_log["step"] == 8
    assert data["last_grad_norm"] == pytest.approx(last_log["grad_norm"])
    assert data["last_learning_rate"] == pytest.approx(last_log["learning_rate"])


# ---- on_save -----------------------------------------------------------------------------------


def test_on_save_sees_a_complete_checkpoint(tmp_path):
    """A pluggy-style uploader gets checkpoint_dir once every file is on disk and verified."""
    out = tmp_path / "run"
    observed: list[tuple[str, bool, set[str], bool, int]] = []

    class Uploader:  # pluggy style: hooktrain's checkpoint_dir argument
        @hookimpl
        def on_save(self, state, checkpoint_dir):
            path = Path(checkpoint_dir)
            names = {p.name for p in path.iterdir()} if path.is_dir() else set()
            manifest_ok = False
            if (path / "manifest.json").is_file():
                files = json.loads((path / "manifest.json").read_text())["files"]
                manifest_ok = all(
                    (path / f).stat().st_size == e["size"] and sha256(path / f) == e["sha256"]
                    for f, e in files.items()
                )
            observed.append((path.name, path.is_dir(), names, manifest_ok, state.global_step))

    train(out, save_steps=3, plugins=[Uploader()])
    assert [o[0] for o in observed] == ["checkpoint-3", "checkpoint-6", "checkpoint-8"]
    for name, exists, names, manifest_ok, step in observed:
        assert exists, name
        assert names == FILES, name
        assert manifest_ok, name
        assert name == f"checkpoint-{step}"


def test_on_save_checkpoint_dir_is_under_output_dir(tmp_path):
    out = tmp_path / "run"
    dirs: list[Path] = []

    class Watch:
        @hookimpl
        def on_save(self, checkpoint_dir):
            dirs.append(Path(checkpoint_dir))

    train(out, save_steps=4, plugins=[Watch()])
    assert [d.resolve() for d in dirs] == [(out / "checkpoint-4").resolve(),
                                           (out / "checkpoint-8").resolve()]
