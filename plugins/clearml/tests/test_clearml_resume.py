"""The ClearML task across a run's ends: failed on an exception or on SIGTERM, continued by a
resumed run (or a new one when its offline session is gone), a running task of the user's reused
and left open."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
from clearmlfiles import (
    expected_scalars,
    offline_folder,
    read_session,
    session_of,
    zip_members,
)

from hooktrain.testing import FailAtStep, logged_series, run_training

pytestmark = [
    pytest.mark.timeout(120),
    # clearml's bundled pyhocon parses its configuration with pyparsing's old names
    pytest.mark.filterwarnings("ignore::DeprecationWarning:clearml.utilities.pyhocon"),
    pytest.mark.filterwarnings("ignore:'parseAll' argument is deprecated:DeprecationWarning"),
]


# ---- status, resume, a running task ----------------------------------------------------------


def test_a_failed_training_marks_the_task_failed(tmp_path: Path) -> None:
    from clearml import Task

    with pytest.raises(RuntimeError, match="boom"):
        run_training(output_dir="out", report_to=["clearml"], plugins=[FailAtStep(5)])
    assert Task.current_task() is None
    (folder,) = [p for p in (tmp_path / "clearml-cache" / "offline").iterdir() if p.is_dir()]
    session = read_session(folder.name)
    assert session.task["status"] == "failed"
    assert session.task["status_message"] == "RuntimeError: boom"
    assert max(session.scalars()["train/loss"]) == 4
    assert json.loads(zip_members(folder.name)["task.json"])["status"] == "failed"


SIGTERM_RUN = """
import os, signal, sys
from hooktrain import TrainerCallback
from hooktrain.testing import run_training

class Term(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 5:
            os.kill(os.getpid(), signal.SIGTERM)

handler = signal.getsignal(signal.SIGTERM)
try:
    run_training(output_dir="out", report_to=["clearml"], plugins=[Term()])
except Exception as exc:  # hooktrain's TrainingTerminated, which no public module exports
    if type(exc).__name__ != "TrainingTerminated":
        raise
    from clearml import Task
    assert Task.current_task() is None
    assert signal.getsignal(signal.SIGTERM) == handler, "clearml's and hooktrain's hooks undone"
    sys.exit(0)
sys.exit(3)
"""


def test_sigterm_ends_the_task_failed(tmp_path: Path) -> None:
    """In a process of its own: after a signal, clearml closes every later task of the process
    without flushing it (its exit hook keeps the signal), which would spoil the other tests."""
    import subprocess
    import sys

    # clearml marks its tasks' child processes (CLEARML_PROC_MASTER_ID): this one is not one
    env = {k: v for k, v in os.environ.items() if not k.endswith("_PROC_MASTER_ID")}
    done = subprocess.run([sys.executable, "-c", SIGTERM_RUN], capture_output=True, text=True,
                          env=env, timeout=100)
    assert done.returncode == 0, done.stderr[-3000:]
    (folder,) = [p for p in (tmp_path / "clearml-cache" / "offline").iterdir() if p.is_dir()]
    session = read_session(folder.name)
    assert session.task["status"] == "failed"
    assert "TrainingTerminated: received SIGTERM" in session.task["status_message"]
    assert max(session.scalars()["train/loss"]) == 4


def test_a_resumed_run_continues_the_same_task(tmp_path: Path) -> None:
    schedule = {"save_strategy": "steps", "save_steps": 4, "eval_strategy": "steps",
                "eval_steps": 2}
    with pytest.raises(RuntimeError, match="boom"):
        run_training(output_dir="out", report_to=["clearml"], plugins=[FailAtStep(7)], **schedule)
    (folder,) = [p for p in (tmp_path / "clearml-cache" / "offline").iterdir() if p.is_dir()]
    assert read_session(folder.name).task["status"] == "failed"
    assert max(read_session(folder.name).scalars()["eval/loss"]) == 6

    run = run_training(output_dir="out", report_to=["clearml"], resume_from_checkpoint=True,
                       **schedule)
    assert run.plugin("ClearMLPlugin").task_id == folder.name
    assert [p for p in folder.parent.iterdir() if p.is_dir()] == [folder], "one task"
    session = read_session(folder.name)
    # steps 5-6 were reported twice; the resumed run's values win, as on the server
    assert session.scalars() == expected_scalars(run.trainer.state.log_history)
    assert [s for s, _ in session.scalar_events("eval/loss")] == [2, 4, 6, 6, 8]
    assert session.task["status"] == "completed"
    assert session.hyperparams["TrainingArguments"]["save_steps"] == "4"


def test_resuming_without_the_offline_session_starts_a_new_task(tmp_path: Path, caplog) -> None:
    run = run_training(output_dir="out", report_to=["clearml"], save_strategy="steps",
                       save_steps=4, num_train_epochs=1)
    old = run.plugin("ClearMLPlugin").task_id
    shutil.rmtree(offline_folder(old))
    caplog.set_level(logging.WARNING, logger="hooktrain")
    run = run_training(output_dir="out", report_to=["clearml"], resume_from_checkpoint=True,
                       save_strategy="steps", save_steps=4)
    assert run.plugin("ClearMLPlugin").task_id != old
    assert any(f"not continuing task {old}" in r.getMessage()
               for r in caplog.records if r.name.startswith("hooktrain"))
    assert session_of(run).scalars()["train/loss"].keys() == {6, 8}


def test_a_running_task_is_reused_and_left_open(tmp_path: Path) -> None:
    from clearml import Task

    Task.set_offline(True)
    task = Task.init(project_name="mine", task_name="by hand", reuse_last_task_id=False,
                     auto_connect_arg_parser=False, auto_connect_frameworks={
                         "detect_repository": False, "pytorch": False, "tensorboard": False})
    try:
        run = run_training(output_dir="out", report_to=["clearml"])
        assert Task.current_task() is task, "the owner's task stays open"
        assert run.plugin("ClearMLPlugin").task_id == task.id
        with pytest.raises(RuntimeError, match="boom"):
            run_training(output_dir="out2", report_to=["clearml"], plugins=[FailAtStep(3)])
        assert Task.current_task() is task, "open after an exception too: its owner decides"
        task.get_logger().report_scalar("mine", "after", 1.0, iteration=9)
    finally:
        task.close()
    session = read_session(task.id)
    assert session.task["name"] == "by hand"
    assert session.task.get("status") is None, "the plugin sets no status on a task it reuses"
    assert session.hyperparams["TrainingArguments"]["output_dir"] == "out2"
    first = logged_series(run.trainer.state.log_history)
    assert {name: session.scalar_events(name)[:len(points)]
            for name, points in first.items()} == first
    assert [step for step, _ in session.scalar_events("train/loss")] == [2, 4, 6, 8, 2]
    assert session.scalars(("mine",)) == {"mine/after": {9: 1.0}}

