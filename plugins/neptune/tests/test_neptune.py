"""The neptune plugin against the real neptune 1.x client, read back from what neptune stores.

Offline (the default without credentials), neptune writes an operation log per run
(``.neptune/offline/run__*/data-*.log``, JSON lines) and copies uploaded content into the run's
``upload_path``: the tests replay that log. Every ``fetch()`` raises offline, so the fetch API is
checked in debug mode (in memory; it numbers series values by position, not by step).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import hooktrain
from hooktrain import TrainerCallback, hookimpl
from hooktrain.testing import TinyRegressor, logged_series, run_training

pytestmark = pytest.mark.timeout(120)

#: neptune's monitoring off: no stdout capture, hardware thread, source upload or git lookup.
FAST = {"capture_stdout": False, "capture_stderr": False, "capture_hardware_metrics": False,
        "capture_traceback": False, "source_files": [], "git_ref": False}


def train(settings: dict[str, Any] | None = None, **kwargs: Any):
    kwargs.setdefault("output_dir", "out")
    kwargs.setdefault("report_to", ["neptune"])
    table = {"init_run": FAST, **(settings or {})}
    return run_training(plugin_settings={"neptune": table}, **kwargs)


def plugin_of(run: Any) -> Any:
    from hooktrain_neptune import NeptunePlugin

    (plugin,) = [p for p in run.trainer.callbacks if isinstance(p, NeptunePlugin)]
    return plugin


# ---- reading back ----------------------------------------------------------------------------


@dataclass
class OfflineRun:
    """One offline run's operation log, replayed: the fields, series and files it ends with."""

    directory: Path
    ops: list[dict[str, Any]]
    fields: dict[str, Any] = field(default_factory=dict)
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # path -> (ext, bytes)


def offline_runs(root: Path) -> list[OfflineRun]:
    """Every offline run under ``root/.neptune``, oldest first."""
    found = []
    for directory in (root / ".neptune" / "offline").glob("run__*"):
        meta = json.loads((directory / "metadata.json").read_text())
        assert meta["mode"] == "offline" and meta["containerType"] == "run"
        logs = sorted(directory.glob("data-*.log"), key=lambda p: int(p.stem.split("-")[1]))
        ops = [json.loads(line)["obj"] for log in logs
               for line in log.read_text().splitlines() if line.strip()]
        run = OfflineRun(directory, ops)
        for op in ops:
            path, kind = "/".join(op["path"]), op["type"]
            if kind.startswith("Assign"):
                run.fields[path] = op["value"]
            elif kind == "LogFloats":
                points = [(v["step"], v["value"]) for v in op["values"]]
                run.series.setdefault(path, []).extend(points)
            elif kind == "UploadFile":
                source = (Path(op["file_path"]) if op["file_path"]
                          else directory / "upload_path" / op["tmp_file_name"])
                run.files[path] = (op["ext"], source.read_bytes())
            elif kind == "DeleteAttribute":
                for store in (run.fields, run.series, run.files):
                    for key in [k for k in store if k == path or k.startswith(path + "/")]:
                        del store[key]
        found.append((meta["createdAt"], run))
    return [run for _, run in sorted(found, key=lambda item: item[0])]


def expected_series(history: list[dict], base: str = "finetuning", after: int = -1) -> dict:
    """log_history as neptune series: one value per step (a train and an eval log at one step
    both carry the same epoch, which neptune's increasing steps keep once)."""
    expected = {}
    for name, points in logged_series(history).items():
        kept: list[tuple[int, float]] = []
        for step, value in points:
            if kept and step <= kept[-1][0]:
                assert (step, value) == kept[-1], name
                continue
            if step > after:
                kept.append((step, value))
        if kept:
            expected[f"{base}/{name}" if base else name] = kept
    return expected


def metric_series(run: OfflineRun, base: str = "finetuning") -> dict:
    return {k: v for k, v in run.series.items() if not k.startswith(("sys/", "monitoring/"))
            and (not base or k.startswith(base + "/"))}


class Boom(TrainerCallback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise RuntimeError("boom")


@pytest.fixture
def init_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every ``neptune.init_run`` call's keyword arguments, plus the run it made (``_run``)."""
    import neptune

    calls: list[dict[str, Any]] = []
    original = neptune.init_run

    def init_run(**kwargs):
        calls.append(dict(kwargs))
        calls[-1]["_run"] = run = original(**kwargs)
        return run

    monkeypatch.setattr(neptune, "init_run", init_run)
    return calls


@pytest.fixture
def stopped(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """For every run stopped in debug mode: its fields and series values just before stop()."""
    from neptune import Run
    from neptune.attributes.series.float_series import FloatSeries

    snapshots: list[dict[str, Any]] = []
    original = Run.stop

    def walk(node: dict, prefix: str = ""):
        for key, value in node.items():
            path = f"{prefix}/{key}" if prefix else key
            yield from walk(value, path) if isinstance(value, dict) else [(path, value)]

    def stop(self, *, seconds=None):
        if self._mode.value == "debug":  # the only mode with a fetch() and no server
            attributes = dict(walk(self.get_structure()))
            fields = {p: self[p].fetch() for p, a in attributes.items()
                      if hasattr(a, "fetch") and not isinstance(a, FloatSeries)
                      and not p.startswith("sys/")}
            snapshots.append({
                "fields": fields | {"sys/failed": self["sys/failed"].fetch()},
                "series": {p: list(a.fetch_values()["value"]) for p, a in attributes.items()
                           if isinstance(a, FloatSeries)},
                "seconds": seconds,
            })
        return original(self, seconds=seconds)

    monkeypatch.setattr(Run, "stop", stop)
    return snapshots


@pytest.fixture
def said_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget that this process already announced the offline fallback."""
    import hooktrain_neptune

    monkeypatch.setattr(hooktrain_neptune, "_said_offline", False)


def offline_messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("hooktrain") if "logging offline" in r.getMessage()]


# ---- what is logged --------------------------------------------------------------------------


def test_parameters_and_every_metric_at_every_step(tmp_path: Path, caplog, said_offline) -> None:
    caplog.set_level(logging.INFO, logger="hooktrain")
    model = TinyRegressor()
    model.config = {"hidden": 8, "activation": "relu"}
    run = train(model=model, learning_rate=0.02, eval_strategy="steps", eval_steps=4,
                logging_steps=2, run_name="tiny")
    history = run.trainer.state.log_history
    (got,) = offline_runs(tmp_path)

    fields = got.fields
    assert fields["finetuning/trainer_parameters/learning_rate"] == 0.02
    assert fields["finetuning/trainer_parameters/output_dir"] == "out"
    assert fields["finetuning/trainer_parameters/eval_steps"] == 4
    assert fields["finetuning/trainer_parameters/report_to"] == "['neptune']"
    assert fields["finetuning/model_parameters/activation"] == "relu"
    assert fields["finetuning/model_parameters/hidden"] == 8
    assert not [k for k in fields if "model_config" in k]
    assert fields["source_code/integrations/hooktrain"] == hooktrain.__version__
    assert fields["sys/name"] == "tiny" and fields["sys/failed"] is False

    series = metric_series(got)
    assert series == expected_series(history)  # every value at every step, float64 exact
    assert {"finetuning/train/loss", "finetuning/train/grad_norm", "finetuning/eval/loss",
            "finetuning/train/epoch"} <= set(series)
    assert [s for s, _ in series["finetuning/train/loss"]] == [2, 4, 6, 8]
    assert [s for s, _ in series["finetuning/train/epoch"]] == [2, 4, 6, 8]
    final = history[-1]  # the summary: one value at the last step
    for key in ("train_runtime", "train_samples_per_second", "train_loss", "total_flos"):
        assert series[f"finetuning/train/{key}"] == [(8, final[key])]
    assert not got.files, "checkpoints are uploaded only on request"

    plugin = plugin_of(run)
    assert plugin.run.get_state() == "stopped"
    assert plugin.state_dict() == {"mode": "offline", "sys_id": None, "custom_run_id": None}
    (message,) = offline_messages(caplog)
    assert "NEPTUNE_API_TOKEN or NEPTUNE_PROJECT" in message and "neptune sync" in message

    train(output_dir="out2")  # said once per process
    assert len(offline_messages(caplog)) == 1
    assert len(offline_runs(tmp_path)) == 2


def test_debug_mode_through_neptunes_fetch_api(tmp_path: Path, monkeypatch, stopped,
                                              caplog, said_offline) -> None:
    monkeypatch.setenv("NEPTUNE_MODE", "debug")
    run = train(learning_rate=0.03, eval_strategy="steps", eval_steps=4)

    (snapshot,) = stopped
    assert snapshot["fields"]["finetuning/trainer_parameters/learning_rate"] == 0.03
    assert snapshot["fields"]["sys/failed"] is False
    expected = expected_series(run.trainer.state.log_history)
    assert snapshot["series"] == {k: [v for _, v in points] for k, points in expected.items()}
    assert snapshot["seconds"] == 60.0
    assert plugin_of(run).mode == "debug" and plugin_of(run).sys_id is None
    assert not (tmp_path / ".neptune" / "offline").exists() and not offline_messages(caplog)


def test_a_run_of_your_own(tmp_path: Path) -> None:
    import neptune

    from hooktrain_neptune import NeptunePlugin, NeptuneSettings

    mine = neptune.init_run(mode="debug", **FAST)
    plugin = NeptunePlugin(NeptuneSettings(base_namespace=""), run=mine)
    run = run_training(output_dir="out", report_to="none", plugins=[plugin])

    assert mine.get_state() == "started", "the plugin leaves a run it did not start open"
    assert mine["trainer_parameters/output_dir"].fetch() == "out"
    expected = expected_series(run.trainer.state.log_history, base="")
    assert list(mine["train/loss"].fetch_values()["value"]) == [
        v for _, v in expected["train/loss"]]
    assert not mine.exists("finetuning")
    mine.stop()
    with pytest.raises(TypeError, match="neptune.Run"):
        NeptunePlugin(run=object())


def test_evaluate_outside_train_logs_into_new_offline_runs(tmp_path: Path, caplog) -> None:
    from hooktrain import Trainer
    from hooktrain.testing import RegressionDataset, tiny_args

    args = tiny_args("out", report_to=["neptune"], plugin_settings={"neptune": {"init_run": FAST}})
    trainer = Trainer(TinyRegressor(), args, train_dataset=RegressionDataset(16),
                      eval_dataset=RegressionDataset(8, seed=1))
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    runs = offline_runs(tmp_path)  # offline, a stopped run cannot be reopened: one run each
    assert [r.series.get("finetuning/eval/loss") for r in runs] == [
        [(0, before["eval_loss"])], None, [(8, after["eval_loss"])]]
    assert metric_series(runs[1]) == expected_series(trainer.state.log_history[:-1])
    assert [r.fields["sys/name"] for r in runs] == ["out"] * 3
    assert sum("cannot be reopened" in r.getMessage() for r in caplog.records if r.name.startswith("hooktrain")) == 2


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
    assert any("needs metric_for_best_model" in r.getMessage() for r in caplog.records if r.name.startswith("hooktrain"))
    assert not offline_runs(tmp_path)[1].files


# ---- status, resume --------------------------------------------------------------------------


def test_a_failing_training_marks_the_run_failed_then_stops_it(tmp_path: Path, init_calls) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        train(plugins=[Boom(at=5)])
    (got,) = offline_runs(tmp_path)
    assert got.fields["sys/failed"] is True
    assert got.fields["finetuning/error"] == "RuntimeError: boom"
    assert [s for s, _ in got.series["finetuning/train/loss"]] == [2, 4]
    (call,) = init_calls
    assert call["_run"].get_state() == "stopped"


def test_resumed_offline_training_keeps_its_identity(tmp_path: Path, monkeypatch, init_calls,
                                                     caplog) -> None:
    monkeypatch.setenv("NEPTUNE_CUSTOM_RUN_ID", "my-training")
    common = dict(save_strategy="steps", save_steps=4, eval_strategy="steps", eval_steps=2)
    with pytest.raises(RuntimeError, match="boom"):
        train(plugins=[Boom(at=7)], **common)
    stored = json.loads((tmp_path / "out" / "checkpoint-4" / "trainer_state.json").read_text())
    assert stored["stateful_callbacks"]["NeptunePlugin#0"] == {
        "mode": "offline", "sys_id": None, "custom_run_id": "my-training"}

    monkeypatch.delenv("NEPTUNE_CUSTOM_RUN_ID")  # the id comes from the checkpoint now
    run = train(resume_from_checkpoint=True, **common)
    assert [c["custom_run_id"] for c in init_calls] == ["my-training", "my-training"]
    assert all("with_id" not in c for c in init_calls), "an offline run cannot be reopened"
    assert sum("cannot be reopened" in r.getMessage() for r in caplog.records if r.name.startswith("hooktrain")) == 1

    first, second = offline_runs(tmp_path)  # offline, each process writes its own run
    history = run.trainer.state.log_history
    assert first.fields["sys/failed"] is True and second.fields["sys/failed"] is False
    assert metric_series(second) == expected_series(history, after=4)
    def until_4(series: dict) -> dict:
        return {k: kept for k, v in series.items() if (kept := [p for p in v if p[0] <= 4])}

    assert until_4(metric_series(first)) == until_4(expected_series(history))
    assert second.fields["finetuning/trainer_parameters/save_steps"] == 4


def test_resumed_online_training_reattaches_by_id(tmp_path: Path, monkeypatch, stopped,
                                                  caplog) -> None:
    """Online needs a server: neptune.init_run is pointed at debug mode, which has sys/id."""
    import neptune

    calls: list[dict[str, Any]] = []
    original = neptune.init_run

    def init_run(**kwargs):
        calls.append(dict(kwargs))
        for key in ("with_id", "project", "api_token"):  # debug mode knows no server
            kwargs.pop(key, None)
        return original(**{**kwargs, "mode": "debug"})

    monkeypatch.setattr(neptune, "init_run", init_run)
    monkeypatch.setenv("NEPTUNE_API_TOKEN", "token")
    monkeypatch.setenv("NEPTUNE_PROJECT", "team/project")
    common = dict(save_strategy="steps", save_steps=4)
    with pytest.raises(RuntimeError, match="boom"):
        train(plugins=[Boom(at=7)], **common)
    state = json.loads((tmp_path / "out" / "checkpoint-4" / "trainer_state.json").read_text())
    sys_id = state["stateful_callbacks"]["NeptunePlugin#0"]["sys_id"]
    assert sys_id and state["stateful_callbacks"]["NeptunePlugin#0"]["mode"] == "async"

    run = train(resume_from_checkpoint=True, **common)
    run.trainer.evaluate()
    assert [(c["mode"], c.get("with_id"), c["project"], c["api_token"]) for c in calls] == [
        ("async", None, "team/project", "token"),
        ("async", sys_id, "team/project", "token"),   # the resume: the same run
        ("async", sys_id, "team/project", "token"),   # evaluate() after train()
    ]
    assert "custom_run_id" not in calls[1]  # neptune refuses with_id and custom_run_id together
    assert [s["fields"]["sys/failed"] for s in stopped] == [True, False, False]
    resumed = expected_series(run.trainer.state.log_history, after=4)["finetuning/train/loss"]
    assert stopped[1]["series"]["finetuning/train/loss"] == [v for _, v in resumed]
    assert not offline_messages(caplog) and not (tmp_path / ".neptune" / "offline").exists()


# ---- settings --------------------------------------------------------------------------------


def test_settings_win_over_the_environment(tmp_path: Path, monkeypatch, caplog,
                                          said_offline) -> None:
    from hooktrain.errors import ConfigError

    from hooktrain_neptune import NeptunePlugin

    monkeypatch.setenv("NEPTUNE_MODE", "DEBUG")
    monkeypatch.setenv("NEPTUNE_PROJECT", "env/project")
    built = NeptunePlugin()  # built by hand: neptune's variables apply
    assert (built.config.mode, built.config.project) == ("debug", "env/project")

    run = train(settings={"mode": "offline", "base_namespace": "", "name": "chosen"})
    plugin = plugin_of(run)
    assert (plugin.config.mode, plugin.config.project) == ("offline", "env/project")
    (got,) = offline_runs(tmp_path)
    assert got.fields["sys/name"] == "chosen"
    assert "trainer_parameters/learning_rate" in got.fields and "train/loss" in got.series
    assert metric_series(got, base="") == expected_series(run.trainer.state.log_history, base="")

    # online asked for, a token but no project: offline, said once, naming what is missing
    monkeypatch.delenv("NEPTUNE_PROJECT")
    monkeypatch.setenv("NEPTUNE_MODE", "async")
    monkeypatch.setenv("NEPTUNE_API_TOKEN", "token")
    assert plugin_of(train(output_dir="out2")).mode == "offline"
    (message,) = offline_messages(caplog)
    assert "no NEPTUNE_PROJECT;" in message

    for key, value, error in (("mode", "read-only", r"mode.*async, sync, offline, debug"),
                              ("log_checkpoints", "sometimes", r"log_checkpoints.*same, last")):
        with pytest.raises(ConfigError, match=error):
            train(settings={key: value})
    with pytest.raises(ConfigError, match=r"init_run may not set mode, with_id: use the"):
        train(settings={"init_run": {"with_id": "X-1", "mode": "debug", "tags": ["a"]}})
    assert NeptunePlugin().config.log_checkpoints is None
    monkeypatch.setenv("NEPTUNE_MODE", "")
    assert plugin_of(train(output_dir="out3", settings={"log_checkpoints": "None"})
                     ).config.log_checkpoints is None


def test_network_bounds_are_set_unless_chosen(monkeypatch) -> None:
    from hooktrain_neptune import NeptunePlugin

    monkeypatch.delenv("NEPTUNE_REQUEST_TIMEOUT")
    monkeypatch.setenv("NEPTUNE_RETRIES_TIMEOUT", "7")
    NeptunePlugin()
    import os

    assert os.environ["NEPTUNE_REQUEST_TIMEOUT"] == "30"
    assert os.environ["NEPTUNE_RETRIES_TIMEOUT"] == "7"


def test_installed_entry_point_and_report_to_all(tmp_path: Path) -> None:
    """Also neptune's own defaults: stdout/stderr capture, hardware metrics, source files."""
    from importlib.metadata import entry_points

    from hooktrain_neptune import NeptunePlugin

    (ep,) = [e for e in entry_points(group="hooktrain.plugins") if e.name == "neptune"]
    assert ep.load() is NeptunePlugin and ep.dist.name == "hooktrain-neptune"
    run = run_training(output_dir="out", report_to="all")
    assert plugin_of(run).run.get_state() == "stopped"
    (got,) = offline_runs(tmp_path)
    assert metric_series(got) == expected_series(run.trainer.state.log_history)
    assert any(k.startswith("monitoring/") for k in got.fields)


# ---- faults ----------------------------------------------------------------------------------


def test_a_failing_backend_mid_run_is_isolated(tmp_path: Path, init_calls, caplog) -> None:
    class StopTheRun:
        """After the step-4 log the neptune run is gone: every later write raises."""

        @hookimpl
        def on_step_end(self, state) -> None:
            if state.global_step == 5:
                init_calls[0]["_run"].stop()

    caplog.set_level(logging.ERROR, logger="hooktrain")
    run = train(plugins=[StopTheRun()])
    assert run.output.global_step == 8
    faults = run.trainer.callback_handler.faults
    assert [(f.plugin.split()[0], f.hook) for f in faults] == [("neptune", "on_log")]
    assert "InactiveRunException" in faults[0].error
    assert sum("neptune" in r.getMessage() for r in caplog.records if r.name.startswith("hooktrain")) == 1
    (got,) = offline_runs(tmp_path)
    assert [s for s, _ in got.series["finetuning/train/loss"]] == [2, 4]
