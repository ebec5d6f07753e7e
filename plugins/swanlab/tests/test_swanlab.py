"""The SwanLab plugin against real swanlab in offline mode, read back with swanlab's own reader.

The run file ``run-<id>.swanlab`` is decoded with ``DataStoreReader``, the reader ``swanlab sync``
uses (internal API: the ``[test]`` extra pins swanlab==0.10.3); the config is read from
``files/config.yaml``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from hooktrain import TrainerCallback
from hooktrain.plugin import rewrite_key, save_model
from hooktrain.testing import FailAtStep, TinyRegressor, run_training

pytestmark = pytest.mark.timeout(120)


# ---- reading back ----------------------------------------------------------------------------


def read_run(run_dir: Path) -> dict:
    """Start and finish records, scalars as {key: {step: value}}, saved files and the config."""
    from swanlab.proto.swanlab.record.v1.record_pb2 import Record
    from swanlab.proto.swanlab.save.v1.save_pb2 import SaveType
    from swanlab.sdk.internal.core_python.store import DataStoreReader

    (record_file,) = run_dir.glob("run-*.swanlab")
    got: dict = {"scalars": {}, "saves": [], "start": None, "finish": None}
    reader = DataStoreReader()
    reader.open(record_file)
    try:
        for raw in reader:
            record = Record()
            record.ParseFromString(raw)
            kind = record.WhichOneof("record_type")
            if kind == "scalar":
                steps = got["scalars"].setdefault(record.scalar.key, {})
                assert record.scalar.step not in steps, "swanlab keeps one value per step"
                steps[record.scalar.step] = record.scalar.value.number
            elif kind == "save" and record.save.type == SaveType.SAVE_TYPE_CUSTOM:
                got["saves"].append(record.save.name)
            elif kind in ("start", "finish"):
                got[kind] = getattr(record, kind)
    finally:
        reader.close()
    config_file = run_dir / "files" / "config.yaml"
    config = yaml.safe_load(config_file.read_text()) if config_file.exists() else {}
    got["config"] = {key: entry["value"] for key, entry in config.items()}
    return got


def run_dirs(log_dir: Path) -> list[Path]:
    """The run directories in the order the runs started (their start records' timestamps)."""
    def started(run_dir: Path) -> tuple[int, int]:
        at = read_run(run_dir)["start"].started_at
        return at.seconds, at.nanos

    return sorted(log_dir.glob("run-*"), key=started)


def only_run(log_dir: Path) -> dict:
    (run_dir,) = run_dirs(log_dir)
    return read_run(run_dir)


def expected_scalars(log_history: list[dict], after: int = -1) -> dict[str, dict[int, float]]:
    """Every numeric value of ``log_history`` under HF's names, at its ``step`` (> ``after``)."""
    expected: dict[str, dict[int, float]] = {}
    for entry in log_history:
        if entry["step"] <= after:
            continue
        for key, value in entry.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                steps = expected.setdefault(rewrite_key(key), {})
                # swanlab keeps the first value logged for a key at a step: HF logs "epoch" in
                # the training, evaluation and final logs of one step, always the same value
                assert steps.setdefault(entry["step"], float(value)) == float(value), key
    return expected


def state(name: str) -> int:
    from swanlab.proto.swanlab.run.v1.run_pb2 import RunState

    return RunState.Value(name)


# ---- what is logged --------------------------------------------------------------------------


def test_config_metrics_and_finished_state_match_the_log_history(tmp_path: Path) -> None:
    model = TinyRegressor()
    model.config = {"hidden": 8, "activation": "relu"}
    run = run_training(output_dir="out", report_to=["swanlab"], model=model, learning_rate=0.02,
                       eval_strategy="steps", eval_steps=4, logging_steps=2)
    history = run.trainer.state.log_history
    got = only_run(tmp_path / "swanlog")  # swanlab's default log dir, in the working directory

    assert got["config"]["learning_rate"] == 0.02
    assert got["config"]["output_dir"] == "out"
    assert got["config"]["model_config/activation"] == "relu"
    assert got["scalars"] == expected_scalars(history)  # exact: swanlab stores float64
    assert {"train/loss", "train/grad_norm", "eval/loss", "train/train_loss",
            "train/train_runtime", "train/total_flos"} <= set(got["scalars"])
    assert got["start"].name == "out"                   # args.run_name, i.e. output_dir
    assert got["start"].project == tmp_path.name        # swanlab's (and HF's) default
    assert got["start"].id == run.plugin("SwanLabPlugin").run_id
    assert got["finish"].state == state("RUN_STATE_FINISHED")


def test_the_offline_fallback_is_chosen_without_a_key_and_said_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.delenv("SWANLAB_MODE")
    caplog.set_level(logging.INFO, logger="hooktrain")
    import swanlab

    run = run_training(output_dir="out", report_to=["swanlab"])
    run.trainer.evaluate()  # logs into the same run again: not a second notice
    swanlab.finish()
    notices = [r for r in caplog.records if r.name.startswith("hooktrain") if "no API key configured" in r.getMessage()]
    assert len(notices) == 1 and "offline" in notices[0].getMessage()
    assert [read_run(d)["start"].id for d in run_dirs(tmp_path / "swanlog")] == \
        [run.plugin("SwanLabPlugin").run_id] * 2


def test_an_api_key_selects_the_cloud_and_an_explicit_mode_wins(monkeypatch) -> None:
    from hooktrain_swanlab import SwanLabPlugin, SwanLabSettings

    monkeypatch.delenv("SWANLAB_MODE")
    assert SwanLabPlugin(SwanLabSettings())._mode() == "offline"
    monkeypatch.setenv("SWANLAB_API_KEY", "not-a-real-key")
    assert SwanLabPlugin(SwanLabSettings())._mode() == "online"
    assert SwanLabPlugin(SwanLabSettings(mode="offline"))._mode() == "offline"
    monkeypatch.delenv("SWANLAB_API_KEY")
    Path("swanlab.yaml").write_text("mode: disabled\n")  # swanlab's own configuration file
    assert SwanLabPlugin(SwanLabSettings())._mode() == "disabled"


def test_cloud_without_a_key_never_prompts_and_switches_the_plugin_off(monkeypatch) -> None:
    monkeypatch.setenv("SWANLAB_MODE", "cloud")
    monkeypatch.setenv("SWANLAB_INTERACTIVE", "true")  # the plugin turns prompts off itself
    run = run_training(output_dir="out", report_to=["swanlab"])
    assert run.output.global_step == 8
    faults = run.faults
    assert [(f.plugin.split()[0], f.hook) for f in faults] == [("swanlab", "on_train_begin")]
    assert "no API key" in faults[0].error


def test_evaluate_after_train_continues_the_same_run(tmp_path: Path) -> None:
    run = run_training(output_dir="out", report_to=["swanlab"])
    metrics = run.trainer.evaluate()  # reopens the run (same id) and leaves it open
    # a new Trainer finishes that leftover instead of adopting it as a run of the user's
    other = run_training(output_dir="out2", report_to=["swanlab"])
    first_id = run.plugin("SwanLabPlugin").run_id
    run.trainer.train()  # train() again, not resuming: a new run, not the first one continued
    first, again, second, third = (read_run(d) for d in run_dirs(tmp_path / "swanlog"))
    assert first["start"].id == again["start"].id == first_id
    assert second["start"].id == other.plugin("SwanLabPlugin").run_id != first_id
    third_id = run.plugin("SwanLabPlugin").run_id
    assert third["start"].id == third_id not in (first_id, second["start"].id)
    assert third["scalars"] == expected_scalars(run.trainer.state.log_history)
    assert again["scalars"] == {"eval/loss": {8: metrics["eval_loss"]},
                                "eval/runtime": {8: metrics["eval_runtime"]},
                                "eval/samples_per_second": {8: metrics["eval_samples_per_second"]},
                                "eval/steps_per_second": {8: metrics["eval_steps_per_second"]},
                                "train/epoch": {8: 2.0}}
    assert second["scalars"] == expected_scalars(other.trainer.state.log_history)
    assert {r["finish"].state for r in (first, again, second, third)} == \
        {state("RUN_STATE_FINISHED")}


def test_a_run_you_started_is_used_and_left_open(tmp_path: Path) -> None:
    import swanlab

    mine = swanlab.init(mode="offline", project="mine", log_dir=str(tmp_path / "mine"))
    run = run_training(output_dir="out", report_to=["swanlab"])
    assert mine.alive, "the plugin does not finish a run it did not start"
    mine.finish()
    got = only_run(tmp_path / "mine")
    assert got["scalars"] == expected_scalars(run.trainer.state.log_history)
    assert got["config"]["output_dir"] == "out"


# ---- end states, resume ---------------------------------------------------------------------


@pytest.mark.parametrize("error,end_state", [(RuntimeError, "RUN_STATE_CRASHED"),
                                              (KeyboardInterrupt, "RUN_STATE_ABORTED")])
def test_a_failing_training_finishes_the_run_as_crashed(
        tmp_path: Path, error: type[BaseException], end_state: str) -> None:
    with pytest.raises(error, match="boom"):
        run_training(output_dir="out", report_to=["swanlab"], plugins=[FailAtStep(5, error)])
    got = only_run(tmp_path / "swanlog")
    assert got["finish"].state == state(end_state)
    assert f"{error.__name__}: boom" in got["finish"].error
    assert max(got["scalars"]["train/loss"]) == 4


def test_a_resumed_run_continues_the_same_run_id(tmp_path: Path) -> None:
    from swanlab.proto.swanlab.run.v1.run_pb2 import ResumeMode

    kwargs = dict(output_dir="out", report_to=["swanlab"], save_strategy="steps", save_steps=4,
                  eval_strategy="steps", eval_steps=2)
    with pytest.raises(RuntimeError, match="boom"):
        run_training(plugins=[FailAtStep(7)], **kwargs)
    (interrupted,) = [read_run(d) for d in run_dirs(tmp_path / "swanlog")]
    run_id = interrupted["start"].id
    stored = json.loads((tmp_path / "out" / "checkpoint-4" / "trainer_state.json").read_text())
    assert stored["stateful_callbacks"]["SwanLabPlugin#0"] == {"run_id": run_id}

    run = run_training(resume_from_checkpoint=True, **kwargs)
    history = run.trainer.state.log_history
    first, resumed = (read_run(d) for d in run_dirs(tmp_path / "swanlog"))
    # one run id; offline, each attempt writes its own directory and `swanlab sync` of both
    # continues one cloud experiment (it syncs with resume="allow" on the recorded id)
    assert first["start"].id == resumed["start"].id == run_id == run.plugin("SwanLabPlugin").run_id
    assert resumed["start"].resume == ResumeMode.RESUME_MODE_ALLOW
    assert first["finish"].state == state("RUN_STATE_CRASHED")
    assert resumed["finish"].state == state("RUN_STATE_FINISHED")
    # the metrics continue after the checkpoint's step; before it they are the first attempt's
    assert resumed["scalars"] == expected_scalars(history, after=4)
    before = {k: {s: v for s, v in steps.items() if s <= 4} for k, steps in first["scalars"].items()}
    assert {k: v for k, v in before.items() if v} == \
        {k: {s: v for s, v in steps.items() if s <= 4}
         for k, steps in expected_scalars(history).items() if min(steps) <= 4}
    assert resumed["config"]["save_steps"] == 4


# ---- artifacts -------------------------------------------------------------------------------


def test_log_model_end_stores_the_final_model(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SWANLAB_LOG_MODEL", "end")  # HF's variable
    model = TinyRegressor()
    model.config = {"hidden": 8}
    run = run_training(output_dir="out", report_to=["swanlab"], model=model)
    expected = save_model(run.trainer.model, tmp_path / "expected")
    (run_dir,) = run_dirs(tmp_path / "swanlog")
    stored = run_dir / "files" / "model-last"
    assert sorted(p.name for p in stored.iterdir()) == ["config.json", "model.safetensors"]
    for name in ("config.json", "model.safetensors"):
        assert not (stored / name).is_symlink()
        assert (stored / name).read_bytes() == (expected / name).read_bytes()
    assert sorted(read_run(run_dir)["saves"]) == ["model-last/config.json",
                                                  "model-last/model.safetensors"]


def test_log_model_checkpoint_stores_every_checkpoint(tmp_path: Path) -> None:
    run_training(output_dir="out", report_to=["swanlab"], save_strategy="steps", save_steps=4,
                 save_total_limit=1, plugin_settings={"swanlab": {"log_model": "checkpoint"}})
    (run_dir,) = run_dirs(tmp_path / "swanlog")
    files = run_dir / "files"
    assert not (tmp_path / "out" / "checkpoint-4").exists(), "rotated away, yet kept in the run"
    assert (files / "checkpoint-4" / "model.safetensors").stat().st_size > 0
    checkpoint = tmp_path / "out" / "checkpoint-8"
    for path in checkpoint.iterdir():
        assert (files / "checkpoint-8" / path.name).read_bytes() == path.read_bytes(), path.name
    saves = read_run(run_dir)["saves"]
    assert "checkpoint-4/model.safetensors" in saves and "checkpoint-8/manifest.json" in saves
    assert not (files / "model-last").exists()


# ---- settings ---------------------------------------------------------------------------------


def test_settings_win_over_the_environment_and_the_environment_over_defaults(
        tmp_path: Path, monkeypatch) -> None:
    from hooktrain_swanlab import SwanLabPlugin

    # swanlab 0.10 itself fails on both values: a plain project name, a mode not in lower case
    monkeypatch.setenv("SWANLAB_PROJECT", "from-env")
    monkeypatch.setenv("SWANLAB_MODE", "Offline")
    monkeypatch.setenv("SWANLAB_LOG_DIR", str(tmp_path / "env-logs"))
    run_training(output_dir="out", report_to=["swanlab"], run_name="my-run")
    got = only_run(tmp_path / "env-logs")
    assert (got["start"].project, got["start"].name) == ("from-env", "my-run")

    run = run_training(output_dir="out2", report_to=["swanlab"], plugin_settings={"swanlab": {
        "project": "from-settings", "log_dir": "set-logs", "name": "named", "mode": "OFFLINE"}})
    got = only_run(tmp_path / "set-logs")
    assert (got["start"].project, got["start"].name) == ("from-settings", "named")
    assert run.plugin(SwanLabPlugin).config.mode == "offline"

    monkeypatch.setenv("SWANLAB_MODE", "disabled")
    run_training(output_dir="out3", report_to=["swanlab"])
    assert len(run_dirs(tmp_path / "env-logs")) == 1, "disabled: nothing written"
    assert SwanLabPlugin().config.project == "from-env", "built by hand, the environment applies"
    monkeypatch.setenv("SWANLAB_MODE", "cloud")
    assert SwanLabPlugin().config.mode == "online"


@pytest.mark.parametrize("key,value,message", [
    ("mode", "remote",
     r"mode must be one of 'cloud', 'online', 'offline', 'local', 'disabled', got 'remote'"),
    ("log_model", "all", r"log_model must be true, false or one of 'end', 'checkpoint', got 'all'"),
])
def test_bad_values_are_clear_errors(key: str, value: str, message: str) -> None:
    from hooktrain.plugin import ConfigError

    with pytest.raises(ConfigError, match=message):
        run_training(output_dir="out", report_to=["swanlab"], plugin_settings={"swanlab": {key: value}})


def test_installed_entry_point_and_report_to_all(tmp_path: Path) -> None:
    from importlib.metadata import entry_points

    from hooktrain_swanlab import SwanLabPlugin

    (ep,) = [e for e in entry_points(group="hooktrain.plugins") if e.name == "swanlab"]
    assert ep.load() is SwanLabPlugin and ep.dist.name == "hooktrain-swanlab"
    run = run_training(output_dir="out", report_to="all")
    assert any(isinstance(p, SwanLabPlugin) for p in run.trainer.callbacks)
    assert only_run(tmp_path / "swanlog")["scalars"]["train/loss"]


# ---- faults -----------------------------------------------------------------------------------


def test_a_run_closed_under_the_plugin_mid_run_is_isolated(tmp_path: Path, caplog) -> None:
    class CloseRun(TrainerCallback):
        """At step 5 the run is finished behind the plugin's back (as swanlab's own Ctrl+C
        handler or user code does): every later swanlab call raises."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 5:
                import swanlab

                swanlab.get_run().finish()

    caplog.set_level(logging.ERROR, logger="hooktrain")
    run = run_training(output_dir="out", report_to=["swanlab"], plugins=[CloseRun()])
    assert run.output.global_step == 8
    faults = run.faults
    assert [(f.plugin.split()[0], f.hook) for f in faults] == [("swanlab", "on_log")]
    assert "requires an active Run" in faults[0].error
    assert sum("swanlab" in r.getMessage() for r in caplog.records if r.name.startswith("hooktrain")) == 1
    got = only_run(tmp_path / "swanlog")
    assert max(got["scalars"]["train/loss"]) == 4
    assert got["finish"].state == state("RUN_STATE_FINISHED")


def test_a_failing_hook_finishes_the_run_as_crashed(tmp_path: Path) -> None:
    """A hook of the plugin that raises finishes its run before hooktrain switches it off."""
    import shutil

    class RemoveCheckpoint(TrainerCallback):
        """Runs before the plugin's on_save: the checkpoint it would copy is gone."""

        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 4:
                shutil.rmtree(tmp_path / "out" / "checkpoint-4")

    run = run_training(output_dir="out", report_to=["swanlab"], plugins=[RemoveCheckpoint()],
                       save_strategy="steps", save_steps=4,
                       plugin_settings={"swanlab": {"log_model": "checkpoint"}})
    assert run.output.global_step == 8
    assert [(f.plugin.split()[0], f.hook) for f in run.faults] == [("swanlab", "on_save")]
    got = only_run(tmp_path / "swanlog")
    assert got["finish"].state == state("RUN_STATE_CRASHED")
    assert "FileNotFoundError" in got["finish"].error
    assert max(got["scalars"]["train/loss"]) == 4


class StreamWrapper:
    """What comet_ml's console capture does to ``sys.stderr``: wrap it, write through."""

    def __init__(self, wrapped) -> None:
        self.__wrapped__ = wrapped

    def write(self, text: str) -> int:
        return self.__wrapped__.write(text)

    def __getattr__(self, name: str):
        return getattr(self.__wrapped__, name)


def test_a_console_wrapper_removed_mid_run_leaves_stderr_writable(tmp_path: Path, monkeypatch) -> None:
    """comet_ml unwraps stderr before swanlab's run finishes; swanlab then put the wrapper's
    ``write`` on the real stream, which recursed at every write (the report_to="all" demo)."""
    import sys

    real = sys.stderr
    monkeypatch.setattr(sys, "stderr", StreamWrapper(real))

    class UnwrapMidRun(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if isinstance(sys.stderr, StreamWrapper):
                sys.stderr = sys.stderr.__wrapped__

    run = run_training(output_dir="out", report_to=["swanlab"], plugins=[UnwrapMidRun()])
    assert not run.faults
    assert sys.stderr is real
    assert "write" not in getattr(real, "__dict__", {})
    print("stderr still writes", file=sys.stderr)  # a RecursionError before the fix
    assert only_run(tmp_path / "swanlog")["finish"].state == state("RUN_STATE_FINISHED")
