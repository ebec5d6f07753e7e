"""ClearML settings and environment (project and task name, ``log_model``, no credentials meaning
offline, the entry point), and faults: a failing backend, an unreachable server, online without
credentials, a stub task."""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest
from clearmlfiles import session_of

from hooktrain import TrainerCallback
from hooktrain.testing import run_training

pytestmark = [
    pytest.mark.timeout(120),
    # clearml's bundled pyhocon parses its configuration with pyparsing's old names
    pytest.mark.filterwarnings("ignore::DeprecationWarning:clearml.utilities.pyhocon"),
    pytest.mark.filterwarnings("ignore:'parseAll' argument is deprecated:DeprecationWarning"),
]

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
    from hooktrain.plugin import ConfigError
    from hooktrain_clearml import ClearMLPlugin

    monkeypatch.setenv("CLEARML_LOG_MODEL", "1")
    run = run_training(output_dir="out", report_to=["clearml"], save_strategy="steps",
                       save_steps=8, plugin_settings={"clearml": {"log_model": False}})
    assert run.plugin(ClearMLPlugin).config.log_model is False
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
    said = [r.getMessage() for r in caplog.records if r.name.startswith("hooktrain")
            if "no ClearML credentials" in r.getMessage()]
    assert len(said) == 1 and "--import-offline-session" in said[0]
    for run in (first, second):
        assert run.plugin("ClearMLPlugin").config.offline is None
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
    faults = run.faults
    assert [(f.plugin.split()[0], f.hook) for f in faults] == [("clearml", "on_save")]
    assert sum("clearml" in r.getMessage() for r in caplog.records
               if r.name.startswith("hooktrain")) == 1
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
    (fault,) = run.faults
    assert (fault.plugin.split()[0], fault.hook) == ("clearml", "on_train_begin")
    assert f"127.0.0.1:{port} did not answer within 1 s" in fault.error
    assert elapsed < 20
    assert run.plugin("ClearMLPlugin").task is None and Task.current_task() is None


def test_online_without_credentials_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("CLEARML_OFFLINE_MODE", "0")
    run = run_training(output_dir="out", report_to=["clearml"])
    assert run.output.global_step == 8
    (fault,) = run.faults
    assert fault.hook == "on_train_begin" and "no ClearML credentials" in fault.error


def test_a_stub_task_from_clearml_is_a_clear_error(monkeypatch) -> None:
    """clearml hands a process it takes for a task's child a stub that logs nothing."""
    monkeypatch.setenv("CLEARML_PROC_MASTER_ID", "1:")
    run = run_training(output_dir="out", report_to=["clearml"], save_strategy="steps",
                       save_steps=4)
    assert run.output.global_step == 8, "checkpoints (with the plugin's state) still save"
    (fault,) = run.faults
    assert fault.hook == "on_train_begin" and "CLEARML_PROC_MASTER_ID" in fault.error
    assert run.plugin("ClearMLPlugin").state_dict() == {"task_id": None}
