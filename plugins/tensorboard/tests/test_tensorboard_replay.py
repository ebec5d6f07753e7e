"""``hooktrain replay`` into TensorBoard: the event files of a replayed run hold what a live run
with the plugin on wrote, read back with tensorboardX's own protobufs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from eventfiles import read_log_dir

from hooktrain.testing import TIMING_KEYS, logged_series, replay_command, run_to_replay

pytestmark = pytest.mark.timeout(120)


def _train(directory: Path, monkeypatch: pytest.MonkeyPatch, report_to: str) -> list[dict]:
    directory.mkdir()
    monkeypatch.chdir(directory)
    return run_to_replay(report_to).state.log_history


def test_replay_writes_what_the_live_run_wrote(tmp_path: Path, monkeypatch, capsys) -> None:
    live_history = _train(tmp_path / "live", monkeypatch, "tensorboard")
    live = read_log_dir(tmp_path / "live" / "run" / "runs" / "run")
    history = _train(tmp_path / "later", monkeypatch, "none")
    assert not (tmp_path / "later" / "run" / "runs").exists()

    assert replay_command("run", "--report-to", "tensorboard") == 0
    assert "replayed 7 log entries (steps 2-8) into tensorboard" in capsys.readouterr().out
    replayed = read_log_dir(tmp_path / "later" / "run" / "runs" / "run")

    # exactly what the run logged, at its steps
    expected = logged_series(history)
    assert set(replayed.scalars) == set(expected)
    for tag, points in expected.items():
        assert replayed.scalars[tag] == [(s, pytest.approx(v, rel=1e-6)) for s, v in points]
    # and what the live run with the plugin on wrote: same tags, steps and (but for timings)
    # values, same hyperparameters and argument text, the session closed as a success
    assert set(replayed.scalars) == set(live.scalars)
    for tag, points in live.scalars.items():
        assert [s for s, _ in replayed.scalars[tag]] == [s for s, _ in points], tag
        if not tag.endswith(TIMING_KEYS):
            assert [v for _, v in replayed.scalars[tag]] == [v for _, v in points], tag
    assert replayed.hparams == live.hparams
    assert json.loads(replayed.texts["args/text_summary"]) == json.loads(live.texts["args/text_summary"])
    assert replayed.session_ended and live.session_ended
    assert logged_series(live_history).keys() == expected.keys()


def test_a_second_replay_is_refused_then_replaces_a_deleted_copy(
        tmp_path: Path, monkeypatch, capsys) -> None:
    _train(tmp_path / "run_dir", monkeypatch, "none")
    assert replay_command("run", "--report-to", "tensorboard") == 0
    first = read_log_dir(Path("run/runs/run"))

    assert replay_command("run", "--report-to", "tensorboard") == 2
    error = capsys.readouterr().err
    assert "tensorboard already holds this run" in error and "--new-run" in error
    assert replay_command("run", "--report-to", "tensorboard", "--new-run") == 2
    error = capsys.readouterr().err
    assert "keeps no run id" in error and str(first.files[0].resolve()) in error
    assert read_log_dir(Path("run/runs/run")).scalars == first.scalars  # nothing doubled

    first.files[0].unlink()  # the user deleted the first copy
    assert replay_command("run", "--report-to", "tensorboard", "--new-run") == 0
    assert read_log_dir(Path("run/runs/run")).scalars == first.scalars


def test_a_stopped_run_that_went_on_is_continued(tmp_path: Path, monkeypatch) -> None:
    _train(tmp_path / "run_dir", monkeypatch, "none")
    state_file = Path("run/trainer_state.json")
    full = json.loads(state_file.read_text())
    stopped = {**full, "log_history": full["log_history"][:3], "global_step": 4}
    state_file.write_text(json.dumps(stopped))  # as if stopped after step 4's checkpoint
    Path("run/checkpoint-8").rename("later-checkpoint-8")
    assert replay_command("run", "--report-to", "tensorboard") == 0
    state_file.write_text(json.dumps(full))
    Path("later-checkpoint-8").rename("run/checkpoint-8")
    time.sleep(1.1)  # tensorboardX names event files by the second: a later second, a new file
    assert replay_command("run", "--report-to", "tensorboard") == 0

    log = read_log_dir(Path("run/runs/run"))
    assert len(log.files) == 2  # TensorBoard shows the two files of one directory as one run
    for tag, points in logged_series(full["log_history"]).items():
        assert log.scalars[tag] == [(s, pytest.approx(v, rel=1e-6)) for s, v in points], tag
