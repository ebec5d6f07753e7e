"""Checkpoint uploads to neptune by ``log_checkpoints``: every one ("same"), only the latest
("last") and each new best ("best"), read back from the offline run's uploaded files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from neptunefiles import offline_runs
from neptunetraining import train

from hooktrain import hookimpl

pytestmark = pytest.mark.timeout(120)


# ---- checkpoints -----------------------------------------------------------------------------


class CopyCheckpoints:
    """Keeps a copy of every checkpoint as on_save sees it (rotation deletes the originals)."""

    def __init__(self, into: Path) -> None:
        self.into = into

    @hookimpl
    def on_save(self, checkpoint_dir: Path) -> None:
        shutil.copytree(checkpoint_dir, self.into / Path(checkpoint_dir).name)


def expected_files(directory: Path, target: str) -> dict[str, tuple[str, bytes]]:
    return {f"{target}/{directory.name}/{p.stem}": (p.suffix[1:], p.read_bytes())
            for p in directory.iterdir() if p.is_file()}


def test_log_checkpoints_same_uploads_every_checkpoint(tmp_path: Path) -> None:
    train(settings={"log_checkpoints": "same"}, plugins=[CopyCheckpoints(tmp_path / "copies")],
          save_strategy="steps", save_steps=4, save_total_limit=1)
    assert not (tmp_path / "out" / "checkpoint-4").exists(), "rotated away after its upload"
    (got,) = offline_runs(tmp_path)
    expected = {}
    for step in (4, 8):
        expected |= expected_files(tmp_path / "copies" / f"checkpoint-{step}",
                                   "finetuning/checkpoints")
    assert got.files == expected
    assert "finetuning/checkpoints/checkpoint-8/model" in got.files  # model.safetensors
    assert got.files["finetuning/checkpoints/checkpoint-8/model"][0] == "safetensors"


def test_log_checkpoints_last_keeps_only_the_latest(tmp_path: Path) -> None:
    train(settings={"log_checkpoints": "last"}, save_strategy="steps", save_steps=4)
    (got,) = offline_runs(tmp_path)
    assert got.files == expected_files(tmp_path / "out" / "checkpoint-8",
                                       "finetuning/checkpoints/last")
    deleted = {"/".join(op["path"]) for op in got.ops if op["type"] == "DeleteAttribute"}
    assert deleted == {p for p in expected_files(tmp_path / "out" / "checkpoint-4",
                                                 "finetuning/checkpoints/last")}


def test_log_checkpoints_best_uploads_each_new_best(tmp_path: Path, caplog) -> None:
    run = train(settings={"log_checkpoints": "best"}, save_strategy="steps", save_steps=2,
                eval_strategy="steps", eval_steps=2, metric_for_best_model="loss",
                learning_rate=0.05)
    state = run.trainer.state
    best, improving = float("inf"), []
    for entry in state.log_history:
        if "eval_loss" in entry and entry["eval_loss"] < best:
            best = entry["eval_loss"]
            improving.append(entry["step"])
    (got,) = offline_runs(tmp_path)
    uploaded = [op["path"][3] for op in got.ops
                if op["type"] == "UploadFile" and op["path"][-1] == "model"]
    assert uploaded == [f"checkpoint-{s}" for s in improving]
    assert state.best_global_step == improving[-1]
    assert got.files == expected_files(Path(state.best_model_checkpoint),
                                       "finetuning/checkpoints/best")

    train(output_dir="out2", settings={"log_checkpoints": "best"}, save_strategy="steps",
          save_steps=4)
    assert any("needs metric_for_best_model" in r.getMessage()
               for r in caplog.records if r.name.startswith("hooktrain"))
    assert not offline_runs(tmp_path)[1].files
