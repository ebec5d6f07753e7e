"""The W&B plugin against real wandb offline runs, read back from their ``.wandb`` files."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from wandbfiles import Segment, offline_environment, read_run

from hooktrain import TrainerCallback
from hooktrain.plugin import SUMMARY_KEYS, rewrite_key, run_config, save_model
from hooktrain.testing import TinyRegressor, find_plugin, run_training

pytestmark = pytest.mark.timeout(120)


def expected_rows(log_history: list[dict]) -> dict[int, dict[str, float]]:
    """HF's rows: every numeric non-summary value under its ``train/x`` / ``eval/x`` name."""
    rows: dict[int, dict[str, float]] = {}
    for entry in log_history:
        row = rows.setdefault(entry["step"], {"train/global_step": entry["step"]})
        for key, value in entry.items():
            if key != "step" and key not in SUMMARY_KEYS and isinstance(value, (int, float)):
                row[rewrite_key(key)] = value
    return rows


def logged_rows(segments: list[Segment]) -> dict[int, dict[str, Any]]:
    """History rows by step, without wandb's own ``_`` keys; later segments continue earlier."""
    rows: dict[int, dict[str, Any]] = {}
    for segment in segments:
        for row in segment.history:
            assert row["_step"] == row["train/global_step"], row
            rows.setdefault(row["_step"], {}).update(
                {k: v for k, v in row.items() if not k.startswith("_")})
    return rows


def aliases(artifact: Any) -> list[str]:
    """The aliases the plugin gave (wandb adds ``latest`` itself)."""
    return [alias for alias in artifact.aliases if alias != "latest"]


def staged_files(artifact: Any) -> dict[str, bytes]:
    """Offline, an artifact's files are copied to ``$WANDB_DATA_DIR/artifacts/staging``."""
    return {entry.path: Path(entry.local_path).read_bytes()
            for entry in artifact.manifest.contents}


class Crash(TrainerCallback):
    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at_step:
            raise RuntimeError("boom")


def test_config_history_and_summary_match_the_run(tmp_path: Path, wandb_dir: Path) -> None:
    model = TinyRegressor()
    model.config = {"hidden": 8, "activation": "relu"}  # as an HF model's config would be
    run = run_training(output_dir=tmp_path / "out", report_to=["wandb"], model=model,
                       eval_strategy="steps", eval_steps=4, logging_steps=2)
    assert run.faults == []
    (segment,) = read_run(wandb_dir, run.plugin("WandbPlugin").run_id)
    history = run.trainer.state.log_history

    assert segment.project == "huggingface"  # HF's default project
    config = {k: v for k, v in segment.config.items() if k != "_wandb"}
    assert config == run_config(run.trainer.args, model)
    assert config["model_config/activation"] == "relu" and config["learning_rate"] == 0.01

    # Every row at every step holds exactly HF's values, stored as JSON doubles (exact).
    assert logged_rows([segment]) == expected_rows(history)
    assert [row["_step"] for row in segment.history] == [2, 4, 6, 8]
    assert {"train/loss", "train/grad_norm", "train/learning_rate", "train/epoch",
            "eval/loss"} <= set(logged_rows([segment])[8])

    final = history[-1]
    for key in SUMMARY_KEYS:
        assert segment.summary[key] == final[key], key
        assert all(rewrite_key(key) not in row for row in segment.history), key
    assert segment.summary["eval/loss"] == history[-2]["eval_loss"]  # last value of each metric

    metrics = {(m.name or m.glob_name): m.step_metric for m in segment.metrics}
    # wandb before 0.31 also records the glob's expansion, one entry per logged metric
    expanded = {key: step for key, step in metrics.items() if key not in ("train/global_step", "*")}
    assert metrics["train/global_step"] == "" and metrics["*"] == "train/global_step"
    assert set(expanded.values()) <= {"train/global_step"}
    assert segment.artifacts == [] and segment.exit_code == 0


def test_final_model_artifact_with_WANDB_LOG_MODEL_end(
        tmp_path: Path, wandb_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_LOG_MODEL", "end")
    model = TinyRegressor()
    model.config = {"hidden": 8}
    run = run_training(output_dir=tmp_path / "out", report_to=["wandb"], model=model)
    run_id = run.plugin("WandbPlugin").run_id
    (segment,) = read_run(wandb_dir, run_id)

    (artifact,) = segment.artifacts
    assert (artifact.name, artifact.type) == (f"model-{run_id}", "model")
    assert aliases(artifact) == ["final_model"]
    metadata = json.loads(artifact.metadata)
    assert metadata["final_model"] is True and metadata["train/global_step"] == 8
    files = staged_files(artifact)
    expected = save_model(run.trainer.model, tmp_path / "expected")
    assert files["model.safetensors"] == (expected / "model.safetensors").read_bytes()
    assert json.loads(files["config.json"]) == {"hidden": 8}
    assert files["model_architecture.txt"].decode().startswith("TinyRegressor(")


def test_every_checkpoint_is_an_artifact_with_log_model_checkpoint(
        tmp_path: Path, wandb_dir: Path) -> None:
    run = run_training(output_dir=tmp_path / "out", report_to=["wandb"], run_name="my run/1",
                       save_strategy="steps", save_steps=4,
                       plugin_settings={"wandb": {"log_model": "checkpoint"}})
    (segment,) = read_run(wandb_dir, run.plugin("WandbPlugin").run_id)
    assert segment.name == "my run/1"

    checkpoints, final = segment.artifacts[:-1], segment.artifacts[-1]
    assert [sorted(aliases(a)) for a in checkpoints] == [
        ["checkpoint_global_step_4", "epoch_1.0"], ["checkpoint_global_step_8", "epoch_2.0"]]
    for artifact, step in zip(checkpoints, (4, 8)):
        assert artifact.name == "model-my-run-1"  # HF: the run name, made a valid artifact name
        directory = tmp_path / "out" / f"checkpoint-{step}"
        on_disk = {p.relative_to(directory).as_posix(): p.read_bytes()
                   for p in directory.rglob("*") if p.is_file()}
        assert staged_files(artifact) == on_disk
        assert "model.safetensors" in on_disk
    assert aliases(final) == ["final_model"]  # HF logs the final model for "checkpoint" too


def crashed_run(output_dir: Path, at_step: int, **overrides: Any) -> str:
    """Train until a callback raises at ``at_step``; the W&B run id."""
    from hooktrain import Trainer
    from hooktrain.testing import RegressionDataset, tiny_args

    trainer = Trainer(TinyRegressor(), tiny_args(output_dir, report_to=["wandb"], **overrides),
                      train_dataset=RegressionDataset(16), callbacks=[Crash(at_step)])
    with pytest.raises(RuntimeError, match="boom"):
        trainer.train()
    return find_plugin(trainer, "WandbPlugin").run_id


def test_a_crash_marks_the_run_failed(tmp_path: Path, wandb_dir: Path) -> None:
    (segment,) = read_run(wandb_dir, crashed_run(tmp_path / "out", at_step=5))
    assert segment.exit_code == 1
    assert [row["_step"] for row in segment.history] == [2, 4]


def test_a_resumed_training_continues_the_same_run(tmp_path: Path, wandb_dir: Path) -> None:
    # crashes after checkpoint-4 was saved, before step 6 is logged
    run_id = crashed_run(tmp_path / "out", at_step=6, save_strategy="steps", save_steps=4)
    resumed = run_training(output_dir=tmp_path / "out", report_to=["wandb"],
                           save_strategy="steps", save_steps=4, resume_from_checkpoint=True)
    assert resumed.plugin("WandbPlugin").run_id == run_id
    segments = read_run(wandb_dir, run_id)
    assert [s.exit_code for s in segments] == [1, 0]
    assert [[row["_step"] for row in s.history] for s in segments] == [[2, 4], [6, 8]]
    assert logged_rows(segments) == expected_rows(resumed.trainer.state.log_history)
    assert segments[1].config == segments[0].config
    assert segments[1].summary["train_runtime"] == resumed.trainer.state.log_history[-1][
        "train_runtime"]


def test_evaluate_and_predict_around_train_log_into_the_same_run(
        tmp_path: Path, wandb_dir: Path) -> None:
    from hooktrain import Trainer
    from hooktrain.testing import RegressionDataset, tiny_args

    trainer = Trainer(TinyRegressor(), tiny_args(tmp_path / "out", report_to=["wandb"]),
                      train_dataset=RegressionDataset(16), eval_dataset=RegressionDataset(8))
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    predicted = trainer.predict(RegressionDataset(8, seed=2)).metrics
    plugin = find_plugin(trainer, "WandbPlugin")
    plugin.run.finish()  # what wandb does at exit for a run still open after train()

    first, second = read_run(wandb_dir, plugin.run_id)
    assert (first.history[0]["_step"], first.history[0]["eval/loss"]) == (0, before["eval_loss"])
    assert [row["_step"] for row in first.history] == [0, 2, 4, 6, 8] and first.exit_code == 0
    (row,) = second.history  # reattached: the same run id, both at step 8
    assert (row["_step"], row["eval/loss"], row["test/loss"]) == (
        8, after["eval_loss"], predicted["test_loss"])


def test_watch_logs_gradient_and_parameter_histograms(
        tmp_path: Path, wandb_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_WATCH", "all")
    run = run_training(output_dir=tmp_path / "out", report_to=["wandb"],
                       plugin_settings={"wandb": {"watch_log_freq": 1}})
    (segment,) = read_run(wandb_dir, run.plugin("WandbPlugin").run_id)

    keys = {k for row in segment.history for k in row}
    for name in ("net.0.weight", "net.3.bias"):
        assert f"gradients/{name}" in keys and f"parameters/{name}" in keys
    histogram = next(row["gradients/net.0.weight"] for row in segment.history
                     if "gradients/net.0.weight" in row)
    assert histogram["_type"] == "histogram"
    # Histograms join the row of the current step (row 0 before the first log); the HF
    # metrics are untouched, and the hooks are gone once the run is finished.
    rows = {step: {k: v for k, v in row.items() if k.startswith(("train/", "eval/"))}
            for step, row in logged_rows([segment]).items()}
    assert {s: r for s, r in rows.items() if set(r) - {"train/global_step"}} == expected_rows(
        run.trainer.state.log_history)
    model = run.trainer.model
    assert not any(m._forward_hooks for m in model.modules())
    assert not any(p._backward_hooks for p in model.parameters())


def test_settings_win_over_the_environment(
        tmp_path: Path, wandb_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    run = run_training(output_dir=tmp_path / "a", report_to=["wandb"])
    assert read_run(wandb_dir, run.plugin("WandbPlugin").run_id)[0].project == "from-env"

    run = run_training(output_dir=tmp_path / "b", report_to=["wandb"],
                       plugin_settings={"wandb": {"project": "from-settings"}})
    assert read_run(wandb_dir, run.plugin("WandbPlugin").run_id)[0].project == "from-settings"

    caplog.set_level(logging.WARNING, logger="hooktrain")
    monkeypatch.setenv("WANDB_LOG_MODEL", "true")  # HF's deprecated spelling of "end"
    run = run_training(output_dir=tmp_path / "c", report_to=["wandb"])
    assert run.plugin("WandbPlugin").log_model == "end"
    assert any("deprecated" in r.getMessage() for r in caplog.records if r.name.startswith("hooktrain"))
    (segment,) = read_run(wandb_dir, run.plugin("WandbPlugin").run_id)
    assert [aliases(a) for a in segment.artifacts] == [["final_model"]]


def test_an_unknown_choice_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    from hooktrain.plugin import ConfigError

    monkeypatch.setenv("WANDB_WATCH", "weights")
    with pytest.raises(ConfigError, match=r"WANDB_WATCH.*'gradients', 'parameters', 'all'"):
        run_training(output_dir=tmp_path / "out", report_to=["wandb"])


def test_a_run_the_user_started_is_used_and_left_open(tmp_path: Path, wandb_dir: Path) -> None:
    import wandb

    user_run = wandb.init(project="mine", config={"note": "user"}, mode="offline",
                          dir=str(wandb_dir))
    try:
        run = run_training(output_dir=tmp_path / "out", report_to=["wandb"])
        assert run.plugin("WandbPlugin").run_id == user_run.id
        user_run.log({"after": 1.0}, step=9)  # still open: the user finishes it
    finally:
        user_run.finish()
    (segment,) = read_run(wandb_dir, user_run.id)
    assert segment.config["note"] == "user" and segment.config["learning_rate"] == 0.01
    rows = {row["_step"]: row for row in segment.history}
    assert rows[8]["train/loss"] == run.trainer.state.log_history[-2]["loss"]
    assert rows[9]["after"] == 1.0 and segment.exit_code == 0


# ---- credentials and faults: wandb reads its environment once per process: subprocesses ----

SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    from pathlib import Path
    from hooktrain import TrainerCallback
    from hooktrain.testing import run_training

    class KillService(TrainerCallback):
        # the wandb-core service this process started dies (as if OOM-killed) at step 3
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step != 3:
                return
            for pid in os.listdir("/proc"):
                try:
                    stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                    cmd = open(f"/proc/{pid}/cmdline", "rb").read()
                except (OSError, IndexError):
                    continue
                if int(stat[1]) == os.getpid() and b"wandb-core" in cmd:
                    os.kill(int(pid), signal.SIGKILL)

    def train(name, *plugins, **settings):
        run = run_training(output_dir=Path(sys.argv[1], name), report_to=["wandb"],
                           plugins=list(plugins), plugin_settings={"wandb": settings})
        plugin = run.plugin("WandbPlugin")
        faults = run.faults
        return {"faults": [(f.plugin.split()[0], f.hook, f.error) for f in faults],
                "steps": run.output.global_step, "run_id": plugin.run_id}

    if sys.argv[2] == "no-key":
        results = [train("a"), train("b", KillService())]
    else:
        results = [train("a", init_timeout=3)]
    print("RESULT " + json.dumps(results))
""")


def run_script(tmp_path: Path, mode: str, env: dict[str, str]) -> tuple[list[dict], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")} | env
    env |= {"HOME": str(tmp_path), "NETRC": str(tmp_path / "no-netrc"),
            "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "out"), mode],
                            check=False, capture_output=True, text=True, env=env, timeout=100,
                            stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):]), result.stderr


def test_no_api_key_logs_offline_and_a_dying_service_is_isolated(tmp_path: Path) -> None:
    """No WANDB_MODE and no credentials anywhere: no prompt (stdin is no terminal, where
    wandb.init would raise), both runs are logged offline, said once per process. In the
    second, the wandb-core service dies mid-run: one fault, training finishes."""
    env = {k: v for k, v in offline_environment(tmp_path / "wb").items() if k != "WANDB_MODE"}
    (offline, killed), stderr = run_script(tmp_path, "no-key", env)
    assert stderr.count("no API key") == 1, stderr

    assert offline["steps"] == 8 and offline["faults"] == []
    (segment,) = read_run(tmp_path / "wb", offline["run_id"])
    assert segment.exit_code == 0 and [row["_step"] for row in segment.history] == [2, 4, 6, 8]

    assert killed["steps"] == 8, "training finishes"
    assert [fault[:2] for fault in killed["faults"]] == [["wandb", "on_log"]]
    assert "Connection" in killed["faults"][0][2]
    assert list((tmp_path / "wb" / "wandb").glob(f"offline-run-*-{killed['run_id']}"))


def test_an_unreachable_server_costs_seconds_and_is_isolated(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port with nothing listening on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in offline_environment(tmp_path / "wb").items() if k != "WANDB_MODE"}
    env |= {"WANDB_API_KEY": "k" * 40, "WANDB_BASE_URL": f"http://127.0.0.1:{port}"}
    (result,), _ = run_script(tmp_path, "dead-server", env)
    assert result["steps"] == 8
    assert [fault[:2] for fault in result["faults"]] == [["wandb", "on_train_begin"]]
    assert "127.0.0.1" in result["faults"][0][2]


@pytest.mark.parametrize(("spelling", "log_model"), [
    ("1", "end"), ("yes", "end"), ("TRUE", "end"), ("0", "false"), ("no", "false"),
    ("off", "false"), ("none", "false"), ("False", "false"), ("checkpoint", "checkpoint"),
])
def test_hf_spellings_of_wandb_log_model(monkeypatch, spelling: str, log_model: str) -> None:
    """HF treats 1/yes/true as the deprecated "end" and any other non-choice as off."""
    from hooktrain_wandb import WandbPlugin

    monkeypatch.setenv("WANDB_LOG_MODEL", spelling)
    monkeypatch.setenv("WANDB_WATCH", "none")
    plugin = WandbPlugin()
    assert (plugin.log_model, plugin.watch) == (log_model, "false")
