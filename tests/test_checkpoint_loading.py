"""Loading checkpoints (issue 4; docs/architecture.md, "Checkpoints and resume"): a corrupt
checkpoint given explicitly is a CheckpointError naming the file; resume_from_checkpoint=True
skips incomplete checkpoints and starts fresh when there is none.

Every run here is tiny (16 samples, batch 4: 4 optimizer steps per epoch, 2 epochs by default).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from checkpoint_runs import checkpointing_trainer, copy_run, train

from hooktrain import TrainerCallback
from hooktrain.errors import CheckpointError, ConfigError
from hooktrain.trainer import Trainer


def hooktrain_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "hooktrain" and r.levelno == logging.WARNING]


def weights_of(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


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
    # in output_dir, such a folder stops Trainer(...) (it could be replaced by a save) ...
    with pytest.raises(ConfigError, match=r"checkpoint-4.*manifest\.json.*overwrite_output_dir"):
        train(out, resume=str(out / "checkpoint-4"))
    # ... and when allowed, resuming from it is the checkpoint error naming the manifest
    with pytest.raises(CheckpointError, match=r"manifest\.json"):
        train(out, resume=str(out / "checkpoint-4"), overwrite_output_dir=True)


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
    trainer = checkpointing_trainer(out)
    before = weights_of(trainer)
    with pytest.raises(CheckpointError, match=r"optimizer\.pt"):
        trainer.train(resume_from_checkpoint=str(out / "checkpoint-4"))
    after = weights_of(trainer)
    assert all(torch.equal(before[k], after[k]) for k in before)


# ---- resume_from_checkpoint=True: skip incomplete, start fresh when nothing ---------------------


def _resume_true_uses(out: Path, caplog: pytest.LogCaptureFixture,
                      **arguments: Any) -> tuple[Trainer, list[str]]:
    loaded: list[str] = []

    class Spy(TrainerCallback):
        def on_load_checkpoint(self, args, state, control, checkpoint_dir=None, **kwargs):
            loaded.append(Path(checkpoint_dir).name)

    # max_steps=10: the loaded checkpoint's step is then visible from the steps trained after it
    trainer = checkpointing_trainer(out, plugins=[Spy()], max_steps=10, **arguments)
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
    # a folder without a manifest is not hooktrain's: replacing it must be allowed explicitly
    trainer, loaded = _resume_true_uses(out, caplog,
                                        overwrite_output_dir=damage == "delete_manifest")
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
    _, loaded = _resume_true_uses(out, caplog, overwrite_output_dir=True)
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
