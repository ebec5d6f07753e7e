"""The ClearML plugin against real clearml in offline mode, read back from the offline session."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import socket
import threading
import time
from pathlib import Path

import pytest
from clearmlfiles import expected_scalars, offline_folder, read_session, zip_members

from hooktrain import TrainerCallback
from hooktrain.integration import SUMMARY_KEYS
from hooktrain.testing import RegressionDataset, TinyRegressor, logged_series, run_training

pytestmark = [
    pytest.mark.timeout(120),
    # clearml's bundled pyhocon parses its configuration with pyparsing's old names
    pytest.mark.filterwarnings("ignore::DeprecationWarning:clearml.utilities.pyhocon"),
    pytest.mark.filterwarnings("ignore:'parseAll' argument is deprecated:DeprecationWarning"),
]


class Boom(TrainerCallback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise RuntimeError("boom")


def plugin_of(run):
    """The ClearML plugin of a ``run_training`` result or of a ``Trainer``."""
    from hooktrain_clearml import ClearMLPlugin

    trainer = getattr(run, "trainer", run)
    (plugin,) = [p for p in trainer.callbacks if isinstance(p, ClearMLPlugin)]
    return plugin


def session_of(run):
    return read_session(plugin_of(run).task_id)


# ---- what is logged --------------------------------------------------------------------------


def test_hyperparameters_scalars_summary_and_status(tmp_path: Path) -> None:
    model = TinyRegressor()
    model.config = {"hidden": 8, "activation": "relu"}
    run = run_training(output_dir="out", report_to=["clearml"], model=model, learning_rate=0.02,
                       eval_strategy="steps", eval_steps=4, logging_steps=2)
    history = run.trainer.state.log_history
    session = session_of(run)

    assert session.folder.parent == tmp_path / "clearml-cache" / "offline"
    assert session.task["project_name"] == "HuggingFace Transformers"  # HF's defaults
    assert session.task["name"] == "Trainer"
    args = session.hyperparams["TrainingArguments"]
    assert args["learning_rate"] == "0.02" and args["output_dir"] == "out"
    assert args.keys() == run.trainer.args.to_sanitized_dict().keys()
    assert session.hyperparams["ModelConfig"] == {"hidden": "8", "activation": "relu"}
    # every value at every step, exactly (clearml keeps float64), once, in order, nothing else
    expected = logged_series(history)
    assert {name: session.scalar_events(name) for name in session.scalars()} == expected
    assert {"train/loss", "train/grad_norm", "train/learning_rate", "eval/loss",
            "train/train_loss"} <= set(expected)
    assert session.summary == {key: history[-1][key] for key in SUMMARY_KEYS}
    assert session.task["status"] == "completed"
    assert session.artifacts == {}
    members = zip_members(plugin_of(run).task_id)  # what an import uploads
    assert json.loads(members["task.json"])["status"] == "completed"
    assert b"train_runtime" in members["metrics.jsonl"]


def test_the_task_id_is_kept_in_every_checkpoint(tmp_path: Path) -> None:
    run = run_training(output_dir="out", report_to=["clearml"], save_strategy="steps",
                       save_steps=4)
    task_id = plugin_of(run).task_id
    assert task_id.startswith("offline-")
    for step in (4, 8):
        stored = json.loads((tmp_path / "out" / f"checkpoint-{step}" / "trainer_state.json")
                            .read_text())
        assert stored["stateful_callbacks"]["ClearMLPlugin#0"] == {"task_id": task_id}


def test_evaluate_and_predict_outside_train_log_to_the_same_task(tmp_path: Path) -> None:
    from clearml import Task

    run = run_training(output_dir="out", report_to=["clearml"], eval_strategy="no")
    task_id = plugin_of(run).task_id
    metrics = run.trainer.evaluate()
    assert Task.current_task() is None, "closed again after evaluate()"
    prediction = run.trainer.predict(RegressionDataset(4, seed=2))
    session = read_session(task_id)
    assert session.scalars()["eval/loss"] == {8: metrics["eval_loss"]}
    assert session.scalars()["test/loss"] == {8: prediction.metrics["test_loss"]}
    assert session.task["status"] == "completed"
    assert [p.name for p in session.folder.parent.iterdir() if p.is_dir()] == [task_id]


def test_train_twice_on_one_trainer_makes_two_tasks(tmp_path: Path) -> None:
    run = run_training(output_dir="out", report_to=["clearml"])
    first = plugin_of(run).task_id
    expected_first = expected_scalars(run.trainer.state.log_history)
    run.trainer.train()
    second = plugin_of(run).task_id
    assert second != first
    assert read_session(first).scalars() == expected_first
    assert read_session(second).scalars() == expected_scalars(run.trainer.state.log_history)
    assert read_session(second).task["status"] == "completed"


def test_evaluate_before_train_opens_the_task_train_continues(tmp_path: Path) -> None:
    from hooktrain import Trainer
    from hooktrain.testing import tiny_args

    trainer = Trainer(model=TinyRegressor(), args=tiny_args("out", report_to=["clearml"]),
                      train_dataset=RegressionDataset(16),
                      eval_dataset=RegressionDataset(8, seed=1))
    before = trainer.evaluate()
    trainer.train()
    session = session_of(trainer)
    assert session.scalars()["eval/loss"] == {0: before["eval_loss"]}
    assert session.scalars()["train/loss"] == expected_scalars(
        trainer.state.log_history)["train/loss"]
    assert session.hyperparams["TrainingArguments"]["num_train_epochs"] == "2"


# ---- artifacts -------------------------------------------------------------------------------


def test_log_model_uploads_every_checkpoint(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CLEARML_LOG_MODEL", "TRUE")  # HF's spelling
    run = run_training(output_dir="out", report_to=["clearml"], save_strategy="steps",
                       save_steps=4)
    session = session_of(run)
    assert set(session.artifacts) == {"checkpoint-4", "checkpoint-8"}
    for step in (4, 8):
        checkpoint = tmp_path / "out" / f"checkpoint-{step}"
        artifact = session.artifacts[f"checkpoint-{step}"]
        assert artifact["type"] == "archive"
        assert dict(artifact["display_data"])["global_step"] == str(step)
        assert Path(artifact["uri"]).is_relative_to(session.folder / "data")
        files = {p.relative_to(checkpoint).as_posix(): p.read_bytes()
                 for p in checkpoint.rglob("*") if p.is_file()}
        assert "model.safetensors" in files
        assert session.artifact_files(f"checkpoint-{step}") == files
    members = zip_members(plugin_of(run).task_id)
    assert sum(name.endswith("checkpoint-8.zip") for name in members) == 1


def test_no_artifacts_unless_asked(tmp_path: Path, caplog) -> None:
    run = run_training(output_dir="out", report_to=["clearml"], save_strategy="steps",
                       save_steps=4)
    assert session_of(run).artifacts == {}
    caplog.set_level(logging.WARNING, logger="hooktrain")
    run = run_training(output_dir="out2", report_to=["clearml"],
                       plugin_settings={"clearml": {"log_model": True}})
    assert session_of(run).artifacts == {}
    assert any("save_strategy 'no'" in r.getMessage() for r in caplog.records if r.name.startswith("hooktrain"))


# ---- status, resume, a running task ----------------------------------------------------------


def test_a_failed_training_marks_the_task_failed(tmp_path: Path) -> None:
    from clearml import Task

    with pytest.raises(RuntimeError, match="boom"):
        run_training(output_dir="out", report_to=["clearml"], plugins=[Boom(at=5)])
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
from hooktrain.distributed import TrainingTerminated
from hooktrain.testing import run_training

class Term(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 5:
            os.kill(os.getpid(), signal.SIGTERM)

handler = signal.getsignal(signal.SIGTERM)
try:
    run_training(output_dir="out", report_to=["clearml"], plugins=[Term()])
except TrainingTerminated:
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
        run_training(output_dir="out", report_to=["clearml"], plugins=[Boom(at=7)], **schedule)
    (folder,) = [p for p in (tmp_path / "clearml-cache" / "offline").iterdir() if p.is_dir()]
    assert read_session(folder.name).task["status"] == "failed"
    assert max(read_session(folder.name).scalars()["eval/loss"]) == 6

    run = run_training(output_dir="out", report_to=["clearml"], resume_from_checkpoint=True,
                       **schedule)
    assert plugin_of(run).task_id == folder.name
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
    old = plugin_of(run).task_id
    shutil.rmtree(offline_folder(old))
    caplog.set_level(logging.WARNING, logger="hooktrain")
    run = run_training(output_dir="out", report_to=["clearml"], resume_from_checkpoint=True,
                       save_strategy="steps", save_steps=4)
    assert plugin_of(run).task_id != old
    assert any(f"not continuing task {old}" in r.getMessage() for r in caplog.records if r.name.startswith("hooktrain"))
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
        assert plugin_of(run).task_id == task.id
        with pytest.raises(RuntimeError, match="boom"):
            run_training(output_dir="out2", report_to=["clearml"], plugins=[Boom(at=3)])
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


# ---- settings and environment ----------------------------------------------------------------


def test_project_and_task_name_from_the_environment_and_settings(tmp_path: Path,
                                                                monkeypatch) -> None:
    monkeypatch.setenv("CLEARML_PROJECT", "from-env")
    monkeypatch.setenv("CLEARML_TASK", "env-task")
    task = session_of(run_training(output_dir="out", report_to=["clearml"])).task
    assert (task["project_name"], task["name"]) == ("from-env", "env-task")

    run = run_training(output_dir="out2", report_to=["clearml"],
                       plugin_settings={"clearml": {"project": "from-table",
                                                    "task_name": "table-task"}})
    task = session_of(run).task
    assert (task["project_name"], task["name"]) == ("from-table", "table-task")

    monkeypatch.delenv("CLEARML_TASK")
    task = session_of(run_training(output_dir="out3", report_to=["clearml"],
                                   run_name="my-run")).task
    assert task["name"] == "my-run"


def test_settings_win_over_the_environment(monkeypatch) -> None:
    from hooktrain.errors import ConfigError
    from hooktrain_clearml import ClearMLPlugin

    monkeypatch.setenv("CLEARML_LOG_MODEL", "1")
    run = run_training(output_dir="out", report_to=["clearml"], save_strategy="steps",
                       save_steps=8, plugin_settings={"clearml": {"log_model": False}})
    assert plugin_of(run).config.log_model is False
    assert session_of(run).artifacts == {}
    assert ClearMLPlugin().config.log_model is True, "built by hand, the environment applies"
    for value, meaning in (("yes", True), ("ON", True), ("0", False), ("false", False)):
        monkeypatch.setenv("CLEARML_LOG_MODEL", value)
        assert ClearMLPlugin().config.log_model is meaning, value
    monkeypatch.setenv("CLEARML_LOG_MODEL", "sometimes")
    with pytest.raises(ConfigError, match="CLEARML_LOG_MODEL"):
        ClearMLPlugin()


def test_no_credentials_means_offline_said_once(monkeypatch, caplog) -> None:
    import hooktrain_clearml

    monkeypatch.delenv("CLEARML_OFFLINE_MODE")
    monkeypatch.setattr(hooktrain_clearml, "_said_offline", False)
    caplog.set_level(logging.WARNING, logger="hooktrain")
    first = run_training(output_dir="out", report_to=["clearml"])
    monkeypatch.delenv("CLEARML_OFFLINE_MODE", raising=False)  # set_offline(True) may set it
    second = run_training(output_dir="out2", report_to=["clearml"])
    said = [r.getMessage() for r in caplog.records if r.name.startswith("hooktrain") if "no ClearML credentials" in r.getMessage()]
    assert len(said) == 1 and "--import-offline-session" in said[0]
    for run in (first, second):
        assert plugin_of(run).config.offline is None
        assert session_of(run).scalars()["train/loss"]


def test_installed_entry_point_and_report_to_all() -> None:
    from importlib.metadata import entry_points

    from hooktrain_clearml import ClearMLPlugin

    (ep,) = [e for e in entry_points(group="hooktrain.plugins") if e.name == "clearml"]
    assert ep.load() is ClearMLPlugin and ep.dist.name == "hooktrain-clearml"
    run = run_training(output_dir="out", report_to="all")
    assert session_of(run).scalars()["train/loss"]


# ---- faults ----------------------------------------------------------------------------------


def test_a_failing_backend_mid_run_is_isolated(tmp_path: Path, caplog, monkeypatch) -> None:
    class BreakStorage(TrainerCallback):
        """After the step-4 upload, a file where the session's data directory was."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 5:
                (folder,) = [p for p in (tmp_path / "clearml-cache" / "offline").iterdir()]
                shutil.rmtree(folder / "data")
                (folder / "data").write_text("not a directory")

    # clearml leaves the archive it zipped for a failed upload in the temporary directory
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    caplog.set_level(logging.ERROR, logger="hooktrain")
    run = run_training(output_dir="out", report_to=["clearml"], plugins=[BreakStorage()],
                       save_strategy="steps", save_steps=4,
                       plugin_settings={"clearml": {"log_model": True}})
    assert run.output.global_step == 8
    faults = run.trainer.callback_handler.faults
    assert [(f.plugin.split()[0], f.hook) for f in faults] == [("clearml", "on_save")]
    assert sum("clearml" in r.getMessage() for r in caplog.records if r.name.startswith("hooktrain")) == 1
    session = session_of(run)
    assert session.task["status"] == "failed"
    assert "stopped logging after NotADirectoryError" in session.task["status_message"]
    assert max(session.scalars()["train/loss"]) == 8  # logged before the step-8 save
    assert "train/train_loss" not in session.scalars(), "nothing after the fault"


class SilentServer:
    """Accepts connections on 127.0.0.1 and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.clients: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with self.sock:
            while True:
                try:
                    self.clients.append(self.sock.accept()[0])
                except OSError:
                    return

    def close(self) -> None:
        self.sock.close()
        for client in self.clients:
            client.close()


@pytest.mark.parametrize("server", ["refused", "silent"])
def test_an_unreachable_server_switches_the_plugin_off_in_seconds(monkeypatch, server) -> None:
    from clearml import Task

    if server == "silent":
        silent = SilentServer()
        port = silent.port
    else:
        with socket.create_server(("127.0.0.1", 0)) as closed:
            port = closed.getsockname()[1]
    monkeypatch.delenv("CLEARML_OFFLINE_MODE")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # requests must not take a proxy there
    monkeypatch.setenv("CLEARML_API_HOST", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("CLEARML_API_ACCESS_KEY", "key")
    monkeypatch.setenv("CLEARML_API_SECRET_KEY", "secret")
    try:
        start = time.monotonic()
        run = run_training(output_dir="out", report_to=["clearml"],
                           plugin_settings={"clearml": {"server_timeout": 1}})
        elapsed = time.monotonic() - start
    finally:
        if server == "silent":
            silent.close()
        Task.set_offline(True)
    assert run.output.global_step == 8
    (fault,) = run.trainer.callback_handler.faults
    assert (fault.plugin.split()[0], fault.hook) == ("clearml", "on_train_begin")
    assert f"127.0.0.1:{port} did not answer within 1 s" in fault.error
    assert elapsed < 20
    assert plugin_of(run).task is None and Task.current_task() is None


def test_online_without_credentials_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("CLEARML_OFFLINE_MODE", "0")
    run = run_training(output_dir="out", report_to=["clearml"])
    assert run.output.global_step == 8
    (fault,) = run.trainer.callback_handler.faults
    assert fault.hook == "on_train_begin" and "no ClearML credentials" in fault.error


def test_a_stub_task_from_clearml_is_a_clear_error(monkeypatch) -> None:
    """clearml hands a process it takes for a task's child a stub that logs nothing."""
    monkeypatch.setenv("CLEARML_PROC_MASTER_ID", "1:")
    run = run_training(output_dir="out", report_to=["clearml"], save_strategy="steps",
                       save_steps=4)
    assert run.output.global_step == 8, "checkpoints (with the plugin's state) still save"
    (fault,) = run.trainer.callback_handler.faults
    assert fault.hook == "on_train_begin" and "CLEARML_PROC_MASTER_ID" in fault.error
    assert plugin_of(run).state_dict() == {"task_id": None}
