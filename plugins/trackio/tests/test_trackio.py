"""The Trackio plugin against real trackio in local mode, read back from its SQLite store.

Metrics are read with plain ``sqlite3`` from ``<TRACKIO_DIR>/<project>.db`` (one row per
``trackio.log`` call) and cross-checked with ``SQLiteStorage.get_logs``; the config, alerts and
artifacts through trackio's ``SQLiteStorage`` and ``Api``; artifact bytes from its blob store.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from hooktrain import TrainerCallback
from hooktrain.plugin import rewrite_key, save_model
from hooktrain.testing import FailAtStep, TinyRegressor, find_plugin, run_training

pytestmark = pytest.mark.timeout(120)


# ---- reading back ----------------------------------------------------------------------------


def db_path(project: str) -> Path:
    return Path(os.environ["TRACKIO_DIR"]) / f"{project}.db"


def rows(project: str, run_id: str) -> list[tuple[int, dict]]:
    """(step, metrics) of every row the run has, in the order they were written."""
    with sqlite3.connect(db_path(project)) as con:
        found = con.execute("SELECT step, metrics FROM metrics WHERE run_id = ? ORDER BY id",
                            (run_id,)).fetchall()
    return [(step, json.loads(metrics)) for step, metrics in found]


def expected_rows(log_history: list[dict], after: int = -1) -> list[tuple[int, dict]]:
    expected = []
    for entry in log_history:
        values = {rewrite_key(k): float(v) for k, v in entry.items()
                  if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
        if entry["step"] > after and values:
            expected.append((entry["step"], values))
    return expected


def trackio_run(project: str, run_id: str):
    import trackio

    (found,) = [r for r in trackio.Api().runs(project) if r.id == run_id]
    return found


def artifact_files(project: str, name: str, spec: str) -> dict[str, bytes]:
    from trackio import cas
    from trackio.sqlite_storage import SQLiteStorage

    manifest = SQLiteStorage.get_artifact_manifest(project, name, spec)["manifest"]
    return {e["path"]: cas.blob_path(project, e["digest"]).read_bytes() for e in manifest}


# ---- what is logged --------------------------------------------------------------------------


def test_config_and_every_metric_row_match_the_log_history(project: str) -> None:
    from trackio.sqlite_storage import SQLiteStorage

    model = TinyRegressor()
    model.config = {"hidden": 8, "activation": "relu"}
    run = run_training(output_dir="out", report_to=["trackio"], model=model, learning_rate=0.02,
                       eval_strategy="steps", eval_steps=4, logging_steps=2,
                       plugin_settings={"trackio": {"project": project, "group": "grid"}})
    history = run.trainer.state.log_history
    identity = run.plugin("TrackioPlugin").identity
    assert identity["project"] == project and identity["name"] == "out"  # args.run_name

    got = rows(project, identity["id"])
    assert got == expected_rows(history)  # exact: JSON round-trips float64
    assert {"train/loss", "train/grad_norm", "eval/loss", "train/train_loss",
            "train/train_runtime", "train/total_flos"} <= {k for _, m in got for k in m}
    logs = SQLiteStorage.get_logs(project=project, run="out", run_id=identity["id"])
    assert [(log["step"], log.get("train/loss")) for log in logs] == \
        [(s, m.get("train/loss")) for s, m in got]

    config = trackio_run(project, identity["id"]).config
    assert config["learning_rate"] == 0.02 and config["output_dir"] == "out"
    assert config["model_config/activation"] == "relu" and config["_Group"] == "grid"
    assert SQLiteStorage.get_alerts(project, run_id=identity["id"]) == []


def test_the_default_project_is_hfs(tmp_path: Path) -> None:
    run = run_training(output_dir="out", report_to=["trackio"], run_name="default-project")
    identity = run.plugin("TrackioPlugin").identity
    assert identity["project"] == "huggingface" and identity["name"] == "default-project"
    assert rows("huggingface", identity["id"]) == expected_rows(run.trainer.state.log_history)


def test_evaluate_before_and_after_train_log_into_the_run(project: str) -> None:
    from hooktrain import Trainer
    from hooktrain.testing import RegressionDataset, tiny_args

    trainer = Trainer(TinyRegressor(), tiny_args("out", report_to=["trackio"], plugin_settings={
        "trackio": {"project": project}}), train_dataset=RegressionDataset(16),
        eval_dataset=RegressionDataset(8, seed=1))
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()  # reopens the run (same id) and leaves it open ...
    __import__("trackio").finish()  # ... until trackio's exit handler, or this
    identity = find_plugin(trainer, "TrackioPlugin").identity
    got = rows(project, identity["id"])
    assert got[:1] == expected_rows([{**before, "step": 0}])
    assert got[1:] == expected_rows(trainer.state.log_history)  # train() starts a new history
    assert got[-1][0] == 8 and got[-1][1]["eval/loss"] == after["eval_loss"]
    # the training arguments reach the config although evaluate() opened the run first
    assert trackio_run(project, identity["id"]).config["output_dir"] == "out"
    trainer.train()  # train() again, not resuming: a new run with the same name
    again = find_plugin(trainer, "TrackioPlugin").identity
    assert again["name"] == "out" and again["id"] != identity["id"]
    assert rows(project, again["id"]) == expected_rows(trainer.state.log_history)
    assert rows(project, identity["id"]) == got


# ---- end state, resume ------------------------------------------------------------------------


@pytest.mark.parametrize("error,level,title", [
    (RuntimeError, "error", "Training failed"),
    (KeyboardInterrupt, "warn", "Training interrupted")])
def test_a_failing_training_is_recorded_as_an_alert(
        project: str, error: type[BaseException], level: str, title: str) -> None:
    import trackio
    from trackio.sqlite_storage import SQLiteStorage

    with pytest.raises(error, match="boom"):
        run_training(output_dir="out", report_to=["trackio"], plugins=[FailAtStep(5, error)],
                     plugin_settings={"trackio": {"project": project}})
    (run_id,) = [r.id for r in trackio.Api().runs(project)]
    (alert,) = SQLiteStorage.get_alerts(project, run_id=run_id)
    assert (alert["level"], alert["title"], alert["text"], alert["step"]) == \
        (level, title, f"{error.__name__}: boom", 4)
    assert max(step for step, _ in rows(project, run_id)) == 4


def test_a_resumed_run_is_one_run_with_each_step_once(tmp_path: Path, project: str) -> None:
    kwargs = dict(output_dir="out", report_to=["trackio"], save_strategy="steps", save_steps=4,
                  eval_strategy="steps", eval_steps=2,
                  plugin_settings={"trackio": {"project": project}})
    with pytest.raises(RuntimeError, match="boom"):
        run_training(plugins=[FailAtStep(7)], **kwargs)
    import trackio

    (run_id,) = [r.id for r in trackio.Api().runs(project)]
    assert max(step for step, _ in rows(project, run_id)) == 6
    stored = json.loads((tmp_path / "out" / "checkpoint-4" / "trainer_state.json").read_text())
    assert stored["stateful_callbacks"]["TrackioPlugin#0"] == \
        {"project": project, "name": "out", "id": run_id}

    run = run_training(resume_from_checkpoint=True, **kwargs)
    assert [r.id for r in trackio.Api().runs(project)] == [run_id]
    assert run.plugin("TrackioPlugin").identity["id"] == run_id
    # the interrupted run's rows after step 4 are gone: the resumed run logged them again
    assert rows(project, run_id) == expected_rows(run.trainer.state.log_history)
    assert trackio_run(project, run_id).config["save_steps"] == 4


# ---- artifacts -------------------------------------------------------------------------------


def test_log_model_end_stores_the_final_model(tmp_path: Path, project: str) -> None:
    model = TinyRegressor()
    model.config = {"hidden": 8}
    run = run_training(output_dir="out", report_to=["trackio"], model=model,
                       plugin_settings={"trackio": {"project": project, "log_model": True}})
    run_id = run.plugin("TrackioPlugin").identity["id"]
    expected = save_model(run.trainer.model, tmp_path / "expected")
    stored = artifact_files(project, f"model-{run_id}", "last")
    assert stored == {n: (expected / n).read_bytes() for n in ("model.safetensors", "config.json")}


def test_log_model_checkpoint_stores_every_checkpoint(tmp_path: Path, project: str) -> None:
    from trackio.sqlite_storage import SQLiteStorage

    run = run_training(output_dir="out", report_to=["trackio"], save_strategy="steps",
                       save_steps=4, save_total_limit=1,
                       plugin_settings={"trackio": {"project": project, "log_model": "checkpoint"}})
    run_id = run.plugin("TrackioPlugin").identity["id"]
    assert not (tmp_path / "out" / "checkpoint-4").exists(), "rotated away, kept in trackio"
    assert "model.safetensors" in artifact_files(project, f"checkpoint-{run_id}", "step-4")
    checkpoint = tmp_path / "out" / "checkpoint-8"
    assert artifact_files(project, f"checkpoint-{run_id}", "step-8") == \
        {p.name: p.read_bytes() for p in checkpoint.iterdir()}
    outputs = SQLiteStorage.get_run_artifacts(project, "out", run_id)["output"]
    assert [(a["name"], a["version"]) for a in outputs] == \
        [(f"checkpoint-{run_id}", 0), (f"checkpoint-{run_id}", 1)]


# ---- settings, TRACKIO_DIR --------------------------------------------------------------------


def test_settings_and_environment(monkeypatch) -> None:
    from hooktrain.plugin import ConfigError
    from hooktrain_trackio import TrackioPlugin, TrackioSettings

    monkeypatch.setenv("TRACKIO_SPACE_ID", "someone/space")
    plugin = TrackioPlugin()  # built by hand: the environment applies
    assert plugin.config.dir == os.environ["TRACKIO_DIR"]
    assert plugin.config.space_id == "someone/space"
    assert (plugin.config.project, plugin.config.log_model) == ("huggingface", False)
    assert TrackioSettings(log_model="CHECKPOINT").log_model == "checkpoint"
    with pytest.raises(ConfigError, match=r"log_model must be true, false or one of 'end', "
                                          r"'checkpoint', got 'all'"):
        run_training(output_dir="out", report_to=["trackio"],
                     plugin_settings={"trackio": {"log_model": "all"}})


def test_a_dir_other_than_the_imported_trackios_switches_the_plugin_off(tmp_path: Path) -> None:
    import trackio  # imported with the session's TRACKIO_DIR

    run = run_training(output_dir="out", report_to=["trackio"],
                       plugin_settings={"trackio": {"dir": str(tmp_path / "elsewhere")}})
    assert run.output.global_step == 8
    faults = run.faults
    assert [(f.plugin.split()[0], f.hook) for f in faults] == [("trackio", "on_train_begin")]
    assert "set TRACKIO_DIR before importing" in faults[0].error
    assert not (tmp_path / "elsewhere").exists() and str(trackio.TRACKIO_DIR) in faults[0].error


def test_the_dir_setting_reaches_trackio_at_its_first_import(tmp_path: Path) -> None:
    """In a fresh interpreter with no TRACKIO_DIR, ``dir`` from the settings is where trackio
    writes: the plugin exports it before its lazy ``import trackio``."""
    script = textwrap.dedent("""
        import sys
        from types import SimpleNamespace
        from hooktrain_trackio import TrackioPlugin, TrackioSettings
        assert "trackio" not in sys.modules
        plugin = TrackioPlugin(TrackioSettings(dir=sys.argv[1], project="fresh"))
        plugin.on_log(args=SimpleNamespace(run_name="r"), state=SimpleNamespace(global_step=3),
                      model=None, logs={"loss": 0.5})
        plugin.end_run()
        import trackio
        print("TRACKIO_DIR", trackio.TRACKIO_DIR)
    """)  # no torch: the plugin's hooks called directly keep this interpreter quick to start
    env = {k: v for k, v in os.environ.items() if k != "TRACKIO_DIR"}
    target = tmp_path / "from-settings"
    done = subprocess.run([sys.executable, "-c", script, str(target)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"TRACKIO_DIR {target}" in done.stdout
    with sqlite3.connect(target / "fresh.db") as con:
        ((step, metrics),) = con.execute("SELECT step, metrics FROM metrics").fetchall()
    assert (step, json.loads(metrics)) == (3, {"train/loss": 0.5})


# ---- network bounds, faults -------------------------------------------------------------------


def test_a_hub_that_never_answers_costs_hub_timeout_not_a_hang(project: str, monkeypatch,
                                                               caplog) -> None:
    """With a stored Hugging Face token trackio looks the user up with no timeout; a Hub that
    accepts the connection and never answers must not hang the run."""
    import huggingface_hub
    from huggingface_hub import constants

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections (the kernel's backlog), never answers
    try:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_TOKEN", f"hf_{uuid.uuid4().hex}")
        monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint",
                            f"http://127.0.0.1:{silent.getsockname()[1]}")
        caplog.set_level(logging.WARNING, logger="hooktrain")
        started = time.monotonic()
        run = run_training(output_dir="out", report_to=["trackio"],
                           plugin_settings={"trackio": {"project": project, "hub_timeout": 1}})
        assert time.monotonic() - started < 30
        assert constants.HF_HUB_OFFLINE is False, "the offline switch is put back"
    finally:
        silent.close()
    assert run.faults == []
    assert sum("did not answer within 1 s" in r.getMessage() for r in caplog.records
               if r.name.startswith("hooktrain")) == 1
    identity = run.plugin("TrackioPlugin").identity
    assert rows(project, identity["id"]) == expected_rows(run.trainer.state.log_history)
    assert trackio_run(project, identity["id"]).config["_Username"] is None


def test_a_store_that_fails_mid_run_is_isolated(project: str, caplog) -> None:
    class BreakStore(TrainerCallback):
        """After the step-4 log reached the database, a directory where it was."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 5:
                time.sleep(1.2)  # trackio writes every 0.5 s on its own thread
                db = db_path(project)
                for leftover in db.parent.glob(db.name + "*"):
                    leftover.unlink()
                db.mkdir()

    caplog.set_level(logging.ERROR, logger="hooktrain")
    with pytest.warns(UserWarning, match="trackio failed to flush metric logs"):
        run = run_training(output_dir="out", report_to=["trackio"], plugins=[BreakStore()],
                           plugin_settings={"trackio": {"project": project}})
    assert run.output.global_step == 8
    faults = run.faults
    assert [(f.plugin.split()[0], f.hook) for f in faults] == [("trackio", "on_train_end")]
    assert sum("trackio" in r.getMessage() for r in caplog.records
               if r.name.startswith("hooktrain")) == 1


def test_installed_entry_point_and_report_to_all(project: str) -> None:
    from importlib.metadata import entry_points

    from hooktrain_trackio import TrackioPlugin

    (ep,) = [e for e in entry_points(group="hooktrain.plugins") if e.name == "trackio"]
    assert ep.load() is TrackioPlugin and ep.dist.name == "hooktrain-trackio"
    run = run_training(output_dir="out", report_to="all",
                       plugin_settings={"trackio": {"project": project}})
    identity = run.plugin(TrackioPlugin).identity
    assert rows(project, identity["id"]) == expected_rows(run.trainer.state.log_history)


def test_a_failing_hook_ends_the_run_with_an_alert(tmp_path: Path, project: str) -> None:
    """A hook of the plugin that raises records why before hooktrain switches the plugin off."""
    import shutil

    import trackio
    from trackio.sqlite_storage import SQLiteStorage

    class RemoveCheckpoint(TrainerCallback):
        """Runs before the plugin's on_save: the checkpoint it would store is gone."""

        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 4:
                shutil.rmtree(tmp_path / "out" / "checkpoint-4")

    run = run_training(output_dir="out", report_to=["trackio"], plugins=[RemoveCheckpoint()],
                       save_strategy="steps", save_steps=4,
                       plugin_settings={"trackio": {"project": project,
                                                    "log_model": "checkpoint"}})
    assert run.output.global_step == 8
    assert [(f.plugin.split()[0], f.hook) for f in run.faults] == [("trackio", "on_save")]
    (run_id,) = [r.id for r in trackio.Api().runs(project)]
    (alert,) = SQLiteStorage.get_alerts(project, run_id=run_id)
    assert (alert["level"], alert["title"]) == ("error", "Logging stopped")
    assert alert["text"].startswith("hooktrain-trackio stopped logging after ")
    assert max(step for step, _ in rows(project, run_id)) == 4
    assert trackio.context_vars.current_run.get() is None
