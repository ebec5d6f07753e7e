"""The TensorBoard plugin against real tensorboardX event files, read back after real runs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from eventfiles import read_log_dir

from hooktrain import TrainerCallback
from hooktrain.testing import FailAtStep, logged_series, run_training

pytestmark = pytest.mark.timeout(120)


def test_scalars_match_the_log_history(tmp_path: Path) -> None:
    run = run_training(output_dir=tmp_path / "out", report_to=["tensorboard"],
                       eval_strategy="steps", eval_steps=4, logging_steps=2)
    log = read_log_dir(tmp_path / "out" / "runs" / "out")

    expected = logged_series(run.trainer.state.log_history)
    assert set(log.scalars) == set(expected)
    for tag, points in expected.items():
        steps = [step for step, _ in log.scalars[tag]]
        values = [value for _, value in log.scalars[tag]]
        assert steps == [step for step, _ in points], tag
        assert values == pytest.approx([value for _, value in points], rel=1e-6), tag
    assert {"train/loss", "train/learning_rate", "train/grad_norm", "eval/loss",
            "train/train_loss", "train/train_runtime"} <= set(log.scalars)


def test_arguments_and_model_config_are_hyperparameters_and_text(tmp_path: Path) -> None:
    from hooktrain.testing import TinyRegressor

    model = TinyRegressor()
    model.config = {"hidden": 8, "activation": "relu"}  # as an HF model's config would be
    run_training(output_dir=tmp_path / "out", report_to=["tensorboard"], model=model,
                 learning_rate=0.02)
    log = read_log_dir(tmp_path / "out" / "runs" / "out")

    assert log.hparams["learning_rate"] == pytest.approx(0.02)
    assert log.hparams["output_dir"] == str(tmp_path / "out")
    assert log.hparams["model_config/activation"] == "relu"
    assert json.loads(log.texts["args/text_summary"])["learning_rate"] == 0.02
    assert json.loads(log.texts["model_config/text_summary"]) == model.config
    assert log.session_ended
    assert len(log.files) == 1, "hyperparameters must not create a second run (HF #23999)"


def test_report_to_all_picks_up_the_installed_plugin(tmp_path: Path) -> None:
    run = run_training(output_dir=tmp_path / "out", report_to="all")
    names = [type(p).__name__ for p in run.trainer.callbacks]
    assert "TensorBoardPlugin" in names
    assert read_log_dir(tmp_path / "out" / "runs" / "out").scalars["train/loss"]


def test_directory_from_environment_then_setting(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "from-env"))
    run_training(output_dir=tmp_path / "a", report_to=["tensorboard"])
    assert read_log_dir(tmp_path / "from-env").scalars["train/loss"]

    run_training(output_dir=tmp_path / "b", report_to=["tensorboard"],
                 plugin_settings={"tensorboard": {"log_dir": str(tmp_path / "from-setting")}})
    assert read_log_dir(tmp_path / "from-setting").scalars["train/loss"]
    assert not (tmp_path / "b" / "runs").exists()


def test_evaluate_before_train_writes_into_the_run_directory(tmp_path: Path, monkeypatch) -> None:
    from hooktrain import Trainer
    from hooktrain.testing import RegressionDataset, TinyRegressor, tiny_args

    monkeypatch.chdir(tmp_path)
    trainer = Trainer(TinyRegressor(), tiny_args(tmp_path / "out", report_to=["tensorboard"]),
                      train_dataset=RegressionDataset(8), eval_dataset=RegressionDataset(8))
    metrics = trainer.evaluate()
    trainer.train()

    log = read_log_dir(tmp_path / "out" / "runs" / "out")
    assert log.scalars["eval/loss"][0] == (0, pytest.approx(metrics["eval_loss"], rel=1e-6))
    assert not (tmp_path / "runs").exists(), "HF writes this evaluation to ./runs"


def test_non_numbers_are_skipped_with_one_warning_per_key(tmp_path: Path, caplog) -> None:
    class NoteLogger(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (1, 2, 3):
                trainer.log({"note": "text", "flag": True, "value": 1.5})

    caplog.set_level(logging.WARNING, logger="hooktrain")
    from hooktrain import Trainer
    from hooktrain.testing import RegressionDataset, TinyRegressor, tiny_args

    trainer = Trainer(TinyRegressor(), tiny_args(tmp_path / "out", report_to=["tensorboard"]),
                      train_dataset=RegressionDataset(16), callbacks=[NoteLogger])
    trainer.train()

    log = read_log_dir(tmp_path / "out" / "runs" / "out")
    assert [step for step, _ in log.scalars["train/value"]] == [1, 2, 3]
    assert "train/note" not in log.scalars and "train/flag" not in log.scalars
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("hooktrain") if "not logging" in r.getMessage()]
    assert len(warnings) == 2 and any("'note'" in w for w in warnings)


def test_writer_is_closed_and_flushed_when_training_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        run_training(output_dir=tmp_path / "out", report_to=["tensorboard"],
                     plugins=[FailAtStep(5)], plugin_settings={"tensorboard": {"flush_secs": 3600}})
    log = read_log_dir(tmp_path / "out" / "runs" / "out")
    assert [step for step, _ in log.scalars["train/loss"]] == [2, 4]


def test_unknown_setting_is_a_clear_error(tmp_path: Path) -> None:
    from hooktrain.plugin import ConfigError

    with pytest.raises(ConfigError, match=r"'logdir' for plugin 'tensorboard'.*log_dir"):
        run_training(output_dir=tmp_path / "out", report_to=["tensorboard"],
                     plugin_settings={"tensorboard": {"logdir": "x"}})


def test_unwritable_directory_switches_the_plugin_off(tmp_path: Path, caplog) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the log directory should be")
    caplog.set_level(logging.ERROR, logger="hooktrain")

    plain = run_training(output_dir=tmp_path / "plain", report_to="none")
    run = run_training(output_dir=tmp_path / "out", report_to=["tensorboard"],
                       plugin_settings={"tensorboard": {"log_dir": str(blocker / "tb")}})

    assert run.output.global_step == plain.output.global_step
    faults = run.faults
    assert [(f.plugin.split()[0], f.hook) for f in faults] == [("tensorboard", "on_train_begin")]
    assert sum("tensorboard" in r.getMessage() for r in caplog.records if r.name.startswith("hooktrain")) == 1


DISK_FULL_SCRIPT = textwrap.dedent("""
    import resource, signal, sys
    from hooktrain.testing import run_training
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a too-large write then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    run = run_training(output_dir=sys.argv[1], report_to=["tensorboard"], train_size=400,
                       logging_steps=1, num_train_epochs=1)
    print("FAULTS", [(f.plugin.split()[0], f.hook) for f in run.faults])
    print("STEPS", run.output.global_step)
""")


def test_a_full_disk_mid_run_is_isolated(tmp_path: Path) -> None:
    """The file-size limit makes the kernel refuse writes past 4 KiB, as a full disk would."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", DISK_FULL_SCRIPT, str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "STEPS 100" in result.stdout
    faults = result.stdout.split("FAULTS ")[1].splitlines()[0]
    assert "'tensorboard'" in faults
    assert "File too large" in result.stderr
