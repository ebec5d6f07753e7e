"""Checkpoint layout, safe loading, corrupt checkpoints, rotation and on_save (issue 4, DESIGN §7).

Every run here is tiny (16 samples, batch 4: 4 optimizer steps per epoch, 2 epochs by default).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from hooktrain import TrainerCallback, hookimpl
from hooktrain.errors import CheckpointError
from hooktrain.state import TrainerState
from hooktrain.testing import RegressionDataset, TinyRegressor, tiny_args
from hooktrain.trainer import Trainer

FILES = {
    "model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json",
    "training_args.json", "hooktrain_state.json", "manifest.json",
}
TORCH_FILES = ("optimizer.pt", "scheduler.pt", "rng_state.pth")


def make_trainer(output_dir: Path, *, callbacks: list[Any] = (), compute_metrics: Any = None,
                 **overrides: Any) -> Trainer:
    torch.manual_seed(0)
    model = TinyRegressor()
    values = {"save_strategy": "steps", "save_steps": 2}
    values.update(overrides)
    return Trainer(
        model=model, args=tiny_args(output_dir, **values),
        train_dataset=RegressionDataset(16, seed=0), eval_dataset=RegressionDataset(8, seed=1),
        callbacks=list(callbacks), compute_metrics=compute_metrics,
    )


def train(output_dir: Path, resume: Any = None, **kwargs: Any) -> Trainer:
    trainer = make_trainer(output_dir, **kwargs)
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def checkpoint_names(output_dir: Path) -> list[str]:
    return sorted((p.name for p in output_dir.iterdir() if p.name.startswith("checkpoint-")),
                  key=lambda n: int(n.split("-")[1]))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hooktrain_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "hooktrain" and r.levelno == logging.WARNING]


def weights_of(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Trainer]:
    """One finished run with a checkpoint every 2 steps (2, 4, 6, 8) and evaluation."""
    out = tmp_path_factory.mktemp("finished") / "run"
    trainer = train(out, eval_strategy="steps", eval_steps=2)
    return out, trainer


def copy_run(finished_run: tuple[Path, Trainer], tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished_run[0], out)
    return out


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
    out, _ = finished_run
    data = json.loads((out / "checkpoint-8" / "hooktrain_state.json").read_text())
    assert isinstance(data, dict) and data
    for value in data.values():
        assert isinstance(value, (int, float))


# ---- corrupt checkpoints given explicitly: CheckpointError naming the file --------------------


def test_truncated_weights_are_an_error_naming_the_file(finished_run, tmp_path):
    out = copy_run(finished_run, tmp_path)
    target = out / "checkpoint-4" / "model.safetensors"
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        train(out, resume=str(out / "checkpoint-4"))


def test_flipped_byte_in_optimizer_is_a_sha_mismatch_naming_the_file(finished_run, tmp_path):
    out = copy_run(finished_run, tmp_path)
    target = out / "checkpoint-4" / "optimizer.pt"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))  # same size: only the hash can tell
    with pytest.raises(CheckpointError, match=r"optimizer\.pt") as info:
        train(out, resume=str(out / "checkpoint-4"))
    assert "sha256" in str(info.value) or "corrupt" in str(info.value)


def test_hf_style_folder_without_manifest_is_an_error_naming_the_manifest(finished_run, tmp_path):
    out = copy_run(finished_run, tmp_path)
    (out / "checkpoint-4" / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match=r"manifest\.json"):
        train(out, resume=str(out / "checkpoint-4"))


def test_manifest_with_wrong_format_is_an_error_naming_the_manifest(finished_run, tmp_path):
    out = copy_run(finished_run, tmp_path)
    manifest = out / "checkpoint-4" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["format"] = "someone-else/7"
    manifest.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"manifest\.json"):
        train(out, resume=str(out / "checkpoint-4"))


def test_missing_checkpoint_path_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint-99"):
        train(tmp_path / "run", resume=str(tmp_path / "run" / "checkpoint-99"))


def test_corrupt_explicit_checkpoint_leaves_the_model_untouched(finished_run, tmp_path):
    out = copy_run(finished_run, tmp_path)
    target = out / "checkpoint-4" / "optimizer.pt"
    target.write_bytes(target.read_bytes()[:-10])
    trainer = make_trainer(out)
    before = weights_of(trainer)
    with pytest.raises(CheckpointError, match=r"optimizer\.pt"):
        trainer.train(resume_from_checkpoint=str(out / "checkpoint-4"))
    after = weights_of(trainer)
    assert all(torch.equal(before[k], after[k]) for k in before)


# ---- resume_from_checkpoint=True: skip incomplete, start fresh when nothing ---------------------


def _resume_true_uses(out: Path, caplog: pytest.LogCaptureFixture) -> tuple[Trainer, list[str]]:
    loaded: list[str] = []

    class Spy(TrainerCallback):
        def on_load_checkpoint(self, args, state, control, checkpoint_dir=None, **kwargs):
            loaded.append(Path(checkpoint_dir).name)

    # max_steps=10: the loaded checkpoint's step is then visible from the steps trained after it
    trainer = make_trainer(out, callbacks=[Spy()], max_steps=10)
    with caplog.at_level(logging.WARNING, logger="hooktrain"):
        trainer.train(resume_from_checkpoint=True)
    return trainer, loaded


@pytest.mark.parametrize("damage", ["delete_manifest", "truncate_weights", "truncate_optimizer",
                                    "delete_file"])
def test_resume_true_skips_an_incomplete_newest_checkpoint(finished_run, tmp_path, caplog, damage):
    out = copy_run(finished_run, tmp_path)
    newest = out / "checkpoint-8"
    if damage == "delete_manifest":
        (newest / "manifest.json").unlink()
    elif damage == "truncate_weights":
        target = newest / "model.safetensors"
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "truncate_optimizer":
        target = newest / "optimizer.pt"
        target.write_bytes(target.read_bytes()[:-1])
    else:
        (newest / "scheduler.pt").unlink()
    trainer, loaded = _resume_true_uses(out, caplog)
    assert loaded == ["checkpoint-6"]
    skipped = [r for r in hooktrain_warnings(caplog) if "checkpoint-8" in r.getMessage()]
    assert len(skipped) == 1, [r.getMessage() for r in hooktrain_warnings(caplog)]
    assert trainer.state.global_step == 10


def test_resume_true_skips_a_corrupt_newest_checkpoint(finished_run, tmp_path, caplog):
    """A same-size bit flip passes the size check; under resume_from_checkpoint=True every file
    is also hashed, so the corrupt checkpoint is skipped with a warning naming the file and the
    previous intact one is used (an explicit path raises instead: see the tests above)."""
    out = copy_run(finished_run, tmp_path)
    target = out / "checkpoint-8" / "optimizer.pt"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    _, loaded = _resume_true_uses(out, caplog)
    assert loaded == ["checkpoint-6"]
    messages = [r.getMessage() for r in hooktrain_warnings(caplog)]
    assert any("checkpoint-8" in m and "optimizer.pt" in m and "corrupt" in m for m in messages)


def test_resume_true_skips_several_incomplete_checkpoints(finished_run, tmp_path, caplog):
    out = copy_run(finished_run, tmp_path)
    (out / "checkpoint-8" / "manifest.json").unlink()
    (out / "checkpoint-6" / "manifest.json").unlink()
    _, loaded = _resume_true_uses(out, caplog)
    assert loaded == ["checkpoint-4"]
    messages = [r.getMessage() for r in hooktrain_warnings(caplog)]
    assert any("checkpoint-8" in m for m in messages)
    assert any("checkpoint-6" in m for m in messages)


def test_resume_true_ignores_a_leftover_temporary_directory(finished_run, tmp_path, caplog):
    out = copy_run(finished_run, tmp_path)
    shutil.copytree(out / "checkpoint-8", out / ".tmp-checkpoint-10-12345")
    (out / ".tmp-checkpoint-10-12345" / "manifest.json").unlink()
    _, loaded = _resume_true_uses(out, caplog)
    assert loaded == ["checkpoint-8"]


def test_resume_true_with_no_checkpoint_starts_from_scratch_with_one_warning(tmp_path, caplog):
    out = tmp_path / "run"
    reference = train(tmp_path / "reference")
    with caplog.at_level(logging.WARNING, logger="hooktrain"):
        trainer = train(out, resume=True)
    warnings = hooktrain_warnings(caplog)
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert trainer.state.global_step == reference.state.global_step == 8
    ref, got = weights_of(reference), weights_of(trainer)
    assert all(torch.equal(ref[k], got[k]) for k in ref)


def test_resume_true_with_missing_output_dir_starts_from_scratch(tmp_path, caplog):
    out = tmp_path / "does" / "not" / "exist"
    with caplog.at_level(logging.WARNING, logger="hooktrain"):
        trainer = train(out, resume=True, save_strategy="no")
    assert trainer.state.global_step == 8
    assert len(hooktrain_warnings(caplog)) == 1


# ---- rotation --------------------------------------------------------------------------------


def test_rotation_keeps_the_newest(tmp_path):
    out = tmp_path / "run"
    seen: list[list[str]] = []

    class Watch(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            seen.append(checkpoint_names(out))

    train(out, save_steps=1, save_total_limit=3, callbacks=[Watch()])
    assert checkpoint_names(out) == ["checkpoint-6", "checkpoint-7", "checkpoint-8"]
    assert seen[0] == ["checkpoint-1"]
    assert all(len(names) <= 3 for names in seen)


def _scores(*values: float):
    """compute_metrics that returns the given scores, one per evaluation."""
    calls = iter(values)

    def compute_metrics(prediction: Any) -> dict[str, float]:
        return {"score": next(calls)}

    return compute_metrics


def test_rotation_never_deletes_the_best_checkpoint_hf_limit_2(tmp_path):
    out = tmp_path / "run"
    seen: list[list[str]] = []

    class Watch(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            seen.append(checkpoint_names(out))

    trainer = train(
        out, eval_strategy="steps", eval_steps=2, save_steps=2, save_total_limit=2,
        load_best_model_at_end=True, metric_for_best_model="score", greater_is_better=True,
        compute_metrics=_scores(5.0, 1.0, 2.0, 3.0), callbacks=[Watch()],
    )
    assert trainer.state.best_global_step == 2
    assert trainer.state.best_model_checkpoint == str(out / "checkpoint-2")
    # HF: with the best model kept, a limit of 2 leaves [best, newest]
    assert checkpoint_names(out) == ["checkpoint-2", "checkpoint-8"]
    assert all("checkpoint-2" in names for names in seen), seen
    # and the best model is what training ends with
    best = load_file(str(out / "checkpoint-2" / "model.safetensors"))
    final = trainer.model.state_dict()
    assert all(torch.equal(best[k], final[k]) for k in best)


def test_rotation_limit_1_with_best_keeps_best_and_newest(tmp_path):
    out = tmp_path / "run"
    train(
        out, eval_strategy="steps", eval_steps=2, save_steps=2, save_total_limit=1,
        load_best_model_at_end=True, metric_for_best_model="score", greater_is_better=True,
        compute_metrics=_scores(1.0, 9.0, 2.0, 3.0),
    )
    assert checkpoint_names(out) == ["checkpoint-4", "checkpoint-8"]


def test_rotation_when_the_best_is_the_newest(tmp_path):
    out = tmp_path / "run"
    train(
        out, eval_strategy="steps", eval_steps=2, save_steps=2, save_total_limit=2,
        load_best_model_at_end=True, metric_for_best_model="score", greater_is_better=True,
        compute_metrics=_scores(1.0, 2.0, 3.0, 4.0),
    )
    assert checkpoint_names(out) == ["checkpoint-6", "checkpoint-8"]


def test_rotation_never_deletes_the_checkpoint_being_resumed_from(finished_run, tmp_path):
    out = copy_run(finished_run, tmp_path)
    for name in ("checkpoint-6", "checkpoint-8"):
        shutil.rmtree(out / name)
    seen: list[list[str]] = []

    class Watch(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            seen.append(checkpoint_names(out))

    # resume from the *older* of two checkpoints, with a limit of 2
    train(out, resume=str(out / "checkpoint-2"), save_total_limit=2, callbacks=[Watch()])
    assert seen, "no checkpoint saved after resuming"
    assert all("checkpoint-2" in names for names in seen), seen
    assert all(len(names) <= 3 for names in seen), seen
    assert "checkpoint-2" in checkpoint_names(out)
    assert "checkpoint-8" in checkpoint_names(out)


def test_rotation_with_resume_true_keeps_the_resumed_checkpoint(finished_run, tmp_path):
    out = copy_run(finished_run, tmp_path)
    (out / "checkpoint-8" / "manifest.json").unlink()  # incomplete: resume takes checkpoint-6
    seen: list[list[str]] = []

    class Watch(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            seen.append(checkpoint_names(out))

    train(out, resume=True, save_total_limit=1, max_steps=12, callbacks=[Watch()])
    assert seen
    assert all("checkpoint-6" in names for names in seen), seen


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

    train(out, save_steps=3, callbacks=[Uploader()])
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

    train(out, save_steps=4, callbacks=[Watch()])
    assert [d.resolve() for d in dirs] == [(out / "checkpoint-4").resolve(),
                                           (out / "checkpoint-8").resolve()]
