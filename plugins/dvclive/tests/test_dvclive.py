"""The DVCLive plugin against real dvclive (and dvc), read back from the files dvclive writes."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import pytest

from hooktrain import TrainerCallback
from hooktrain.plugin import rewrite_key, save_model
from hooktrain.testing import FailAtStep, TinyRegressor, run_training

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore:_NoneStep.value:DeprecationWarning"),  # inside dvc 3.67
]


# ---- reading back ----------------------------------------------------------------------------


def read_dir(directory: Path) -> dict:
    """params.yaml, metrics.json and every plots/metrics/**.tsv as {name: [(step, value)]}."""
    from dvclive.serialize import load_yaml

    root = directory / "plots" / "metrics"
    plots = {}
    for path in sorted(root.rglob("*.tsv")):
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        name = path.relative_to(root).with_suffix("").as_posix()
        plots[name] = [(int(row["step"]), float(row[path.stem])) for row in rows]
    return {
        "params": load_yaml(directory / "params.yaml"),
        "metrics": json.loads((directory / "metrics.json").read_text()),
        "plots": plots,
    }


def expected_plots(log_history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    expected: dict[str, list[tuple[int, float]]] = {}
    for entry in log_history:
        for key, value in entry.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                expected.setdefault(rewrite_key(key), []).append((entry["step"], float(value)))
    return expected


def assert_plots_match(plots: dict, log_history: list[dict]) -> None:
    expected = expected_plots(log_history)
    assert set(plots) == set(expected)
    for name, points in expected.items():
        assert [s for s, _ in plots[name]] == [s for s, _ in points], name
        assert [v for _, v in plots[name]] == pytest.approx([v for _, v in points], rel=1e-9), name


@pytest.fixture
def ends(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The directories of every ``Live`` whose ``end()`` was called, in order."""
    from dvclive import Live

    calls: list[str] = []
    original = Live.end

    def end(self):
        calls.append(str(self.dir))
        return original(self)

    monkeypatch.setattr(Live, "end", end)
    return calls


# ---- what is logged --------------------------------------------------------------------------


def test_params_metrics_and_summary_match_the_log_history(tmp_path: Path, ends) -> None:
    model = TinyRegressor()
    model.config = {"hidden": 8, "activation": "relu"}
    run = run_training(output_dir="out", report_to=["dvclive"], model=model, learning_rate=0.02,
                       eval_strategy="steps", eval_steps=4, logging_steps=2)
    history = run.trainer.state.log_history
    got = read_dir(tmp_path / "out" / "dvclive")

    assert got["params"]["learning_rate"] == 0.02
    assert got["params"]["output_dir"] == "out"
    assert got["params"]["model_config/activation"] == "relu"
    assert_plots_match(got["plots"], history)
    assert {"train/loss", "train/grad_norm", "eval/loss", "train/train_loss"} <= set(got["plots"])
    # metrics.json: the latest value of every metric (the summary values too) at the last step
    final = history[-1]
    assert got["metrics"]["step"] == 8
    assert got["metrics"]["train"]["train_runtime"] == pytest.approx(final["train_runtime"])
    assert got["metrics"]["train"]["train_loss"] == pytest.approx(final["train_loss"])
    assert got["metrics"]["eval"]["loss"] == pytest.approx(
        [e for e in history if "eval_loss" in e][-1]["eval_loss"])
    # dvc.yaml (in the working directory, dvclive's default) points at the files
    from dvclive.serialize import load_yaml

    dvcyaml = load_yaml(tmp_path / "dvc.yaml")
    assert dvcyaml["params"] == ["out/dvclive/params.yaml"]
    assert dvcyaml["metrics"] == ["out/dvclive/metrics.json"]
    assert dvcyaml["plots"] == [{"out/dvclive/plots/metrics": {"x": "step"}}]
    assert ends == ["out/dvclive"]
    assert not (tmp_path / "dvclive").exists(), "nothing in dvclive's ./dvclive default"


def test_evaluate_after_train_continues_at_the_last_step(tmp_path: Path) -> None:
    run = run_training(output_dir="out", report_to=["dvclive"])
    metrics = run.trainer.evaluate()
    got = read_dir(tmp_path / "out" / "dvclive")
    assert got["plots"]["eval/loss"] == [(8, pytest.approx(metrics["eval_loss"]))]
    assert got["metrics"]["eval"]["loss"] == pytest.approx(metrics["eval_loss"])
    assert_plots_match(got["plots"], run.trainer.state.log_history)


def test_dvc_reads_params_and_metrics_in_a_repository(dvc_repo: Path) -> None:
    import dvc.api

    run = run_training(output_dir="out", report_to=["dvclive"], learning_rate=0.03)
    assert dvc.api.params_show()["learning_rate"] == 0.03
    shown = dvc.api.metrics_show()
    assert shown["step"] == 8
    final = run.trainer.state.log_history[-1]
    assert shown["train"]["train_loss"] == pytest.approx(final["train_loss"])
    assert not (dvc_repo / ".dvc" / "tmp" / "exps" / "run" / "DVCLIVE_STEP_COMPLETED").exists(), \
        "live.end() clears the step signal dvclive writes for VS Code at every step"


# ---- artifacts -------------------------------------------------------------------------------


def cached_files(repo: Path, dvc_file: Path) -> dict[str, bytes]:
    """The files a directory's .dvc file points at, read from the DVC cache (path -> bytes)."""
    from dvclive.serialize import load_yaml

    (out,) = load_yaml(dvc_file)["outs"]
    cache = repo / ".dvc" / "cache" / "files" / "md5"
    listing = json.loads((cache / out["md5"][:2] / out["md5"][2:]).read_text())
    return {e["relpath"]: (cache / e["md5"][:2] / e["md5"][2:]).read_bytes() for e in listing}


def test_log_model_true_logs_the_final_model(dvc_repo: Path, monkeypatch) -> None:
    from dvclive.serialize import load_yaml

    monkeypatch.setenv("HF_DVCLIVE_LOG_MODEL", "TRUE")  # HF's spelling
    model = TinyRegressor()
    model.config = {"hidden": 8}
    run = run_training(output_dir="out", report_to=["dvclive"], model=model)

    expected = save_model(run.trainer.model, dvc_repo / "expected")
    artifact = dvc_repo / "out" / "dvclive" / "artifacts" / "last"
    assert load_yaml(dvc_repo / "dvc.yaml")["artifacts"] == {
        "last": {"path": "out/dvclive/artifacts/last", "type": "model"}}
    stored = cached_files(dvc_repo, artifact.with_name("last.dvc"))
    assert set(stored) == {"model.safetensors", "config.json"}
    for name, data in stored.items():
        assert data == (expected / name).read_bytes() == (artifact / name).read_bytes(), name
    assert not list((dvc_repo / "out").glob("checkpoint-*.dvc"))


def test_log_model_all_logs_every_checkpoint(dvc_repo: Path) -> None:
    from dvclive.serialize import load_yaml

    run_training(output_dir="out", report_to=["dvclive"], save_strategy="steps", save_steps=4,
                 plugin_settings={"dvclive": {"log_model": "all"}})
    artifacts = load_yaml(dvc_repo / "dvc.yaml")["artifacts"]
    assert artifacts == {f"checkpoint-{s}": {"path": f"out/checkpoint-{s}", "type": "model"}
                         for s in (4, 8)}
    for step in (4, 8):
        checkpoint = dvc_repo / "out" / f"checkpoint-{step}"
        stored = cached_files(dvc_repo, checkpoint.with_suffix(".dvc"))
        assert stored["model.safetensors"] == (checkpoint / "model.safetensors").read_bytes()
        assert set(stored) == {p.relative_to(checkpoint).as_posix()
                               for p in checkpoint.rglob("*") if p.is_file()}
    assert not (dvc_repo / "out" / "dvclive" / "artifacts").exists()


def test_log_model_outside_a_dvc_repository_is_skipped_with_dvclives_warning(
        tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    run = run_training(output_dir="out", report_to=["dvclive"],
                       plugin_settings={"dvclive": {"log_model": True}})
    assert run.faults == []
    assert any("A DVC repo is required to log artifacts" in r.getMessage() for r in caplog.records)
    assert read_dir(tmp_path / "out" / "dvclive")["plots"]["train/loss"]


# ---- ending, resuming, a user's Live ---------------------------------------------------------


def test_live_ends_when_training_fails(tmp_path: Path, ends) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        run_training(output_dir="out", report_to=["dvclive"], plugins=[FailAtStep(5)])
    assert ends == ["out/dvclive"]
    got = read_dir(tmp_path / "out" / "dvclive")
    assert got["plots"]["train/loss"][-1][0] == 4
    assert got["metrics"]["step"] == 4


def test_resumed_run_continues_the_same_dvclive_directory(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        run_training(output_dir="out", report_to=["dvclive"], plugins=[FailAtStep(7)],
                     save_strategy="steps", save_steps=4, eval_strategy="steps", eval_steps=2)
    directory = tmp_path / "out" / "dvclive"
    assert read_dir(directory)["plots"]["train/loss"][-1][0] == 6
    stored = json.loads((tmp_path / "out" / "checkpoint-4" / "trainer_state.json").read_text())
    assert stored["stateful_callbacks"]["DVCLivePlugin#0"] == {"dir": str(directory)}

    run = run_training(output_dir="out", report_to=["dvclive"], resume_from_checkpoint=True,
                       save_strategy="steps", save_steps=4, eval_strategy="steps", eval_steps=2)
    got = read_dir(directory)
    # one history: the interrupted run's step 6 is replaced by the resumed run's, no step twice
    assert_plots_match(got["plots"], run.trainer.state.log_history)
    assert [s for s, _ in got["plots"]["train/loss"]] == [2, 4, 6, 8]
    assert got["metrics"]["step"] == 8
    assert got["params"]["save_steps"] == 4
    assert [p.name for p in (tmp_path / "out").iterdir() if "dvclive" in p.name] == ["dvclive"]


def test_a_live_of_your_own_through_callbacks(tmp_path: Path, ends) -> None:
    from dvclive import Live

    from hooktrain_dvclive import DVCLivePlugin

    live = Live(dir=str(tmp_path / "mine"), save_dvc_exp=False, dvcyaml=False)
    run = run_training(output_dir="out", report_to="none", plugins=[DVCLivePlugin(live=live)])

    got = read_dir(tmp_path / "mine")
    assert_plots_match(got["plots"], run.trainer.state.log_history)
    assert got["params"]["output_dir"] == "out"
    assert ends == [str(tmp_path / "mine")]
    assert not (tmp_path / "out" / "dvclive").exists() and not (tmp_path / "dvc.yaml").exists()
    with pytest.raises(TypeError, match="dvclive.Live"):
        DVCLivePlugin(live=object())


# ---- settings ---------------------------------------------------------------------------------


def test_settings_win_over_the_environment(tmp_path: Path, monkeypatch) -> None:
    from hooktrain_dvclive import DVCLivePlugin

    monkeypatch.setenv("HF_DVCLIVE_LOG_MODEL", "all")
    run = run_training(output_dir="out", report_to=["dvclive"],
                       plugin_settings={"dvclive": {"dir": "elsewhere", "dvcyaml": False}})
    plugin = run.plugin(DVCLivePlugin)
    assert plugin.config.log_model == "all"  # from the environment
    assert read_dir(tmp_path / "elsewhere")["plots"]["train/loss"]
    assert not (tmp_path / "out" / "dvclive").exists() and not (tmp_path / "dvc.yaml").exists()

    run = run_training(output_dir="out2", report_to=["dvclive"],
                       plugin_settings={"dvclive": {"log_model": "false"}})
    plugin = run.plugin(DVCLivePlugin)
    assert plugin.config.log_model is False
    assert DVCLivePlugin().config.log_model == "all", "built by hand, the environment applies"
    for value, meaning in (("1", True), ("ON", True), ("0", False), ("ALL", "all")):
        monkeypatch.setenv("HF_DVCLIVE_LOG_MODEL", value)
        assert DVCLivePlugin().config.log_model == meaning, value


def test_dvc_analytics_are_switched_off_unless_the_user_chose(monkeypatch) -> None:
    import os

    from hooktrain_dvclive import DVCLivePlugin

    monkeypatch.delenv("DVC_NO_ANALYTICS")
    DVCLivePlugin()
    assert os.environ["DVC_NO_ANALYTICS"] == "1"
    monkeypatch.setenv("DVC_NO_ANALYTICS", "0")
    DVCLivePlugin()
    assert os.environ["DVC_NO_ANALYTICS"] == "0"


def test_a_bad_log_model_value_is_a_clear_error(tmp_path: Path) -> None:
    from hooktrain.plugin import ConfigError

    with pytest.raises(ConfigError, match=r"log_model.*true, false or 'all'.*'checkpoint'"):
        run_training(output_dir="out", report_to=["dvclive"],
                     plugin_settings={"dvclive": {"log_model": "checkpoint"}})


def test_installed_entry_point_and_report_to_all(tmp_path: Path) -> None:
    from importlib.metadata import entry_points

    from hooktrain_dvclive import DVCLivePlugin

    (ep,) = [e for e in entry_points(group="hooktrain.plugins") if e.name == "dvclive"]
    assert ep.load() is DVCLivePlugin and ep.dist.name == "hooktrain-dvclive"
    run = run_training(output_dir="out", report_to="all")
    assert any(isinstance(p, DVCLivePlugin) for p in run.trainer.callbacks)
    assert read_dir(tmp_path / "out" / "dvclive")["plots"]["train/loss"]


# ---- faults -----------------------------------------------------------------------------------


def test_a_failing_backend_mid_run_is_isolated(tmp_path: Path, caplog) -> None:
    class BreakPlots(TrainerCallback):
        """After the step-4 log, a file where dvclive's plots directory was: writes then fail."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 5:
                plots = tmp_path / "out" / "dvclive" / "plots"
                shutil.rmtree(plots)
                plots.write_text("not a directory")

    caplog.set_level(logging.ERROR, logger="hooktrain")
    run = run_training(output_dir="out", report_to=["dvclive"], plugins=[BreakPlots()])
    assert run.output.global_step == 8
    faults = run.faults
    assert [(f.plugin.split()[0], f.hook) for f in faults] == [("dvclive", "on_log")]
    assert sum("dvclive" in r.getMessage() for r in caplog.records if r.name.startswith("hooktrain")) == 1
    assert json.loads((tmp_path / "out" / "dvclive" / "metrics.json").read_text())["step"] == 4



def test_a_git_repository_without_a_commit_switches_the_plugin_off(tmp_path: Path) -> None:
    """dvclive 3.49 raises SCMError('Empty git repo') in Live(): reported once, training goes on."""
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    run = run_training(output_dir="out", report_to=["dvclive"])
    assert run.output.global_step == 8
    faults = run.faults
    assert [(f.plugin.split()[0], f.hook) for f in faults] == [("dvclive", "on_train_begin")]
    assert "Empty git repo" in faults[0].error
