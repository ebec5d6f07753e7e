"""``hooktrain replay`` into W&B: the offline run files of a replayed run hold the config, rows
and summary a live run with the plugin on wrote, read back from wandb's transaction log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_wandb import expected_rows, logged_rows
from wandbfiles import read_run

from hooktrain.plugin import SUMMARY_KEYS
from hooktrain.testing import TIMING_KEYS, replay_command, run_to_replay

pytestmark = pytest.mark.timeout(180)


def _train(directory: Path, monkeypatch: pytest.MonkeyPatch, report_to: str) -> Any:
    directory.mkdir()
    monkeypatch.chdir(directory)
    return run_to_replay(report_to)


def _replayed_run_id() -> str:
    return json.loads(Path("run/replay_state.json").read_text())["plugins"]["wandb"]["run_id"]


def test_replay_records_what_the_live_run_recorded(tmp_path: Path, wandb_dir: Path,
                                                   monkeypatch) -> None:
    live_trainer = _train(tmp_path / "live", monkeypatch, "wandb")
    (live,) = read_run(wandb_dir, live_trainer.callback_handler.manager.get_plugin("wandb").run_id)
    trainer = _train(tmp_path / "later", monkeypatch, "none")
    assert replay_command("run", "--report-to", "wandb") == 0
    (replayed,) = read_run(wandb_dir, _replayed_run_id())

    assert replayed.exit_code == 0 and replayed.run_id != live.run_id
    config = {k: v for k, v in replayed.config.items() if k != "_wandb"}
    assert config == {k: v for k, v in live.config.items() if k != "_wandb"}
    rows = logged_rows([replayed])
    assert rows == expected_rows(trainer.state.log_history)
    live_rows = logged_rows([live])
    assert rows.keys() == live_rows.keys()
    for step, row in live_rows.items():
        assert row.keys() == rows[step].keys(), step
        for key, value in row.items():
            if not key.endswith(TIMING_KEYS):
                assert rows[step][key] == value, (step, key)
    final = trainer.state.log_history[-1]
    for key in SUMMARY_KEYS - {"train_runtime", "train_samples_per_second",
                               "train_steps_per_second"}:
        assert replayed.summary[key] == final[key] == live.summary[key], key


def test_the_final_model_is_an_artifact_and_a_second_replay_is_refused(
        tmp_path: Path, wandb_dir: Path, monkeypatch, capsys) -> None:
    _train(tmp_path / "run_dir", monkeypatch, "none")
    assert replay_command("run", "--report-to", "wandb", "--plugins.wandb.log_model",
                 "end") == 0
    run_id = _replayed_run_id()
    (segment,) = read_run(wandb_dir, run_id)
    (artifact,) = segment.artifacts
    assert "final_model" in [alias for alias in artifact.aliases]
    assert {entry.path for entry in artifact.manifest.contents} >= {"model.safetensors"}

    assert replay_command("run", "--report-to", "wandb") == 2
    error = capsys.readouterr().err
    assert f"wandb already holds this run (run {run_id}" in error and "--new-run" in error
    assert len(read_run(wandb_dir, run_id)) == 1  # no second segment
