"""The Azure ML plugin against real azureml-core, outside Azure ML: ``Run.get_context()`` is the
offline run, whose every call prints what it would log; the tests capture stdout and parse it.

The offline run's ``log()`` takes no step, so what is read back per metric is the sequence of its
values, in order; it is compared, value for value, with ``state.log_history``.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import json
import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hooktrain import Trainer, TrainerCallback, TrainingArguments
from hooktrain.plugin import rewrite_key, run_config
from hooktrain.testing import (
    FailAtStep,
    RegressionDataset,
    TinyRegressor,
    find_plugin,
    logged_series,
    run_training,
    tiny_args,
)

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore:FileType Enum is Deprecated:DeprecationWarning"),  # azureml
]

OFFLINE_SAID = "not inside an Azure ML job (no AZUREML_RUN_ID): azureml-core logs to an offline run"


# ---- reading back what the offline run printed ------------------------------------------------


@dataclass
class Offline:
    """What azureml-core's offline run printed, call by call."""

    metrics: dict[str, list[float]] = field(default_factory=dict)
    tags: list[dict[str, str]] = field(default_factory=list)
    uploads: list[tuple[list[str], list[str], str]] = field(default_factory=list)
    flushed: list[str] = field(default_factory=list)  # run ids
    failed: list[tuple[str, str]] = field(default_factory=list)  # (error code, details)
    order: list[str] = field(default_factory=list)  # scalar / tags / files / flush / failed


PATTERNS = {
    "scalar": re.compile(r"Attempted to log scalar metric (.+):\n(.*)"),
    "tags": re.compile(r"Attempted to set tags (\{.*\})"),
    "files": re.compile(r"Attempted to track files (\[.*\]) at (\[.*\]) with timeout (\S+)s"),
    "flush": re.compile(r"Attempted to flush run with id (\S+)"),
    "failed": re.compile(r"Run failed with error code (.*):\n(.*)"),
}


def read_offline(out: str) -> Offline:
    found = Offline()
    lines = out.splitlines()
    i = 0
    while i < len(lines):
        two = "\n".join(lines[i:i + 2])
        for kind, pattern in PATTERNS.items():  # noqa: B007 (kind is used after the loop)
            match = pattern.fullmatch(two) or pattern.fullmatch(lines[i])
            if match:
                break
        else:
            assert not lines[i].startswith("Attempted"), f"unparsed: {lines[i]}"
            i += 1
            continue
        found.order.append(kind)
        if kind == "scalar":
            found.metrics.setdefault(match[1], []).append(float(match[2]))
        elif kind == "tags":
            found.tags.append(ast.literal_eval(match[1]))
        elif kind == "files":
            found.uploads.append((ast.literal_eval(match[1]), ast.literal_eval(match[2]), match[3]))
        elif kind == "flush":
            found.flushed.append(match[1])
        else:
            found.failed.append((match[1], match[2]))
        i += match[0].count("\n") + 1
    return found


def expected_metrics(log_history: list[dict], name=rewrite_key) -> dict[str, list[float]]:
    """Every numeric value of ``log_history``, in order, under the plugin's metric names."""
    return {metric: [value for _, value in points]
            for metric, points in logged_series(log_history, name=name).items()}


def offline_said(caplog: pytest.LogCaptureFixture) -> int:
    return sum(OFFLINE_SAID in r.getMessage() for r in caplog.records if r.name.startswith("hooktrain"))


# ---- what is logged ----------------------------------------------------------------------------


def test_every_value_at_every_step_and_the_run_config(capsys, caplog) -> None:
    caplog.set_level(logging.INFO, logger="hooktrain")
    model = TinyRegressor()
    model.config = {"hidden": 8, "activation": "relu"}
    run = run_training(output_dir="out", report_to=["azure_ml"], model=model, learning_rate=0.02,
                       eval_strategy="steps", eval_steps=4, logging_steps=2)
    got = read_offline(capsys.readouterr().out)
    history = run.trainer.state.log_history
    plugin = run.plugin("AzureMLPlugin")

    # every numeric value, in order, exactly (the offline run prints repr(float))
    assert got.metrics == expected_metrics(history)
    assert got.metrics["train/loss"] == [e["loss"] for e in history if "loss" in e]
    assert len(got.metrics["train/loss"]) == 4 and len(got.metrics["eval/loss"]) == 2
    assert {"train/grad_norm", "train/learning_rate", "train/epoch", "train/train_runtime",
            "train/train_loss", "train/total_flos", "train/train_samples_per_second"} <= set(
        got.metrics)
    # the run config as tags, once, before any metric
    assert got.tags == [{k: str(v) for k, v in run_config(run.trainer.args, model).items()}]
    assert got.tags[0]["learning_rate"] == "0.02" and got.tags[0]["output_dir"] == "out"
    assert got.tags[0]["model_config/activation"] == "relu"
    assert got.order[0] == "tags" and got.order[-1] == "flush"
    # one offline run, flushed at train end, never failed, nothing uploaded unless asked
    assert plugin.run.id.startswith("OfflineRun_") and got.flushed == [plugin.run.id]
    assert got.failed == [] and got.uploads == []
    assert offline_said(caplog) == 1
    assert run.faults == []


def test_rewrite_keys_false_keeps_hfs_azureml_callback_names(capsys) -> None:
    run = run_training(output_dir="out", report_to=["azure_ml"], eval_strategy="steps",
                       eval_steps=4, plugin_settings={"azure_ml": {"rewrite_keys": False}})
    got = read_offline(capsys.readouterr().out)
    assert got.metrics == expected_metrics(run.trainer.state.log_history, name=lambda key: key)
    assert {"loss", "eval_loss", "train_runtime", "train_loss"} <= set(got.metrics)


def test_evaluate_before_and_after_train_log_to_the_same_run(capsys, caplog) -> None:
    trainer = Trainer(TinyRegressor(), tiny_args("out", report_to=["azure_ml"]),
                      train_dataset=RegressionDataset(16), eval_dataset=RegressionDataset(8))
    before = trainer.evaluate()
    run_id = find_plugin(trainer, "AzureMLPlugin").run.id
    trainer.train()
    after = trainer.evaluate()
    trainer.log({"note": "not a number", "custom": 3})
    trainer.log({"note": "still not", "custom": 4})

    got = read_offline(capsys.readouterr().out)
    assert find_plugin(trainer, "AzureMLPlugin").run.id == run_id and got.flushed == [run_id]
    assert got.metrics["eval/loss"][0] == before["eval_loss"]
    assert got.metrics["eval/loss"][-1] == after["eval_loss"]
    assert got.metrics["train/custom"] == [3.0, 4.0] and "train/note" not in got.metrics
    # train() starts a fresh log_history: the evaluation before it comes first on the run
    assert got.metrics == expected_metrics([{**before, "step": 0}, *trainer.state.log_history])
    assert offline_said(caplog) == 1
    assert sum("'note'" in r.getMessage() for r in caplog.records if r.name.startswith("hooktrain")) == 1, "warned once per key"


def test_a_failed_run_is_marked_failed(capsys) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        run_training(output_dir="out", report_to=["azure_ml"], plugins=[FailAtStep(5)])
    got = read_offline(capsys.readouterr().out)
    assert len(got.metrics["train/loss"]) == 2  # steps 2 and 4
    assert "train/train_runtime" not in got.metrics
    assert got.failed == [("None", "boom")]  # offline fail(): error code None (online: UserError)
    assert got.order[-2:] == ["flush", "failed"]


def test_a_resumed_run_is_the_same_run_and_its_metrics_continue(tmp_path: Path, capsys) -> None:
    schedule = {"save_strategy": "steps", "save_steps": 4, "eval_strategy": "steps",
                "eval_steps": 2}
    with pytest.raises(RuntimeError, match="boom"):
        run_training(output_dir="out", report_to=["azure_ml"], plugins=[FailAtStep(7)], **schedule)
    first = read_offline(capsys.readouterr().out)
    (run_id,) = first.flushed
    stored = json.loads((tmp_path / "out" / "checkpoint-4" / "trainer_state.json").read_text())
    assert stored["stateful_callbacks"]["AzureMLPlugin#0"] == {"run_id": run_id}

    run = run_training(output_dir="out", report_to=["azure_ml"], resume_from_checkpoint=True,
                       **schedule)
    second = read_offline(capsys.readouterr().out)
    assert run.plugin("AzureMLPlugin").run.id == run_id and second.flushed == [run_id]
    assert second.failed == [] and len(second.tags) == 1

    history = run.trainer.state.log_history  # steps <= 4 restored from the checkpoint
    before = expected_metrics([e for e in history if e["step"] <= 4])
    after = expected_metrics([e for e in history if e["step"] > 4])
    assert second.metrics == after
    # the interrupted run logged the same values up to the checkpoint (and step 6, which the
    # resumed run logs again: the offline run cannot take values back)
    for name, values in before.items():
        assert first.metrics[name][:len(values)] == values, name
    assert first.metrics["train/loss"] == before["train/loss"] + after["train/loss"][:1]


def test_checkpoints_and_the_final_model_are_uploaded_when_asked(tmp_path: Path, capsys) -> None:
    model = TinyRegressor()
    model.config = {"hidden": 8}
    run_training(output_dir="out", report_to=["azure_ml"], model=model, save_strategy="steps",
                 save_steps=4, plugin_settings={"azure_ml": {"log_checkpoints": True,
                                                             "log_model": True, "timeout": 30}})
    got = read_offline(capsys.readouterr().out)
    *checkpoints, final = got.uploads
    assert len(checkpoints) == 2
    for step, (names, paths, timeout) in zip((4, 8), checkpoints, strict=True):
        directory = tmp_path / "out" / f"checkpoint-{step}"
        files = sorted(p for p in directory.rglob("*") if p.is_file())
        assert names == [f"checkpoint-{step}/{p.relative_to(directory).as_posix()}" for p in files]
        assert [Path(p).resolve() for p in paths] == files
        assert f"checkpoint-{step}/model.safetensors" in names and timeout == "30"
    names, paths, _ = final
    assert names == ["model/config.json", "model/model.safetensors"]
    assert [Path(p).name for p in paths] == ["config.json", "model.safetensors"]
    assert not Path(paths[0]).parent.exists(), "the final model's temporary directory is gone"
    assert got.order[-1] == "flush" and got.order[-2] == "files"


# ---- settings ----------------------------------------------------------------------------------


def test_allow_offline_false_switches_the_plugin_off_with_one_warning(capsys, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="hooktrain")
    run = run_training(output_dir="out", report_to=["azure_ml"], eval_strategy="steps",
                       eval_steps=2, plugin_settings={"azure_ml": {"allow_offline": False}})
    assert "Attempted" not in capsys.readouterr().out
    assert run.output.global_step == 8 and run.faults == []
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("hooktrain") if "azure_ml" in r.getMessage()]
    assert len(warnings) == 1 and "allow_offline is false" in warnings[0]
    assert run.plugin("AzureMLPlugin").state_dict() == {}


def test_settings_from_toml_command_line_and_python(tmp_path: Path, capsys) -> None:
    from hooktrain.plugin import ConfigError

    config = tmp_path / "run.toml"
    config.write_text('[training]\noutput_dir = "out"\nreport_to = ["azure_ml"]\n\n'
                      '[plugins.azure_ml]\nlog_params = false\ntimeout = 5\n')
    args = TrainingArguments.from_toml(
        config, ["--plugins.azure_ml.timeout", "7"],
        plugin_settings={"azure_ml": {"log_params": True, "log_checkpoints": True}})
    trainer = Trainer(TinyRegressor(), args, train_dataset=RegressionDataset(16))
    settings = find_plugin(trainer, "AzureMLPlugin").config
    assert settings.timeout == 7.0  # command line > TOML
    assert settings.log_params is False  # TOML > Python argument
    assert settings.log_checkpoints is True  # Python argument > default
    assert settings.allow_offline is settings.rewrite_keys is True  # defaults
    assert settings.log_model is False
    trainer.train()
    assert read_offline(capsys.readouterr().out).tags == []

    with pytest.raises(ConfigError, match=r"'log_artifacts'.*Valid settings: log_params, "
                                          r"rewrite_keys, allow_offline, log_checkpoints, log_model, timeout"):
        run_training(output_dir="out2", report_to=["azure_ml"],
                     plugin_settings={"azure_ml": {"log_artifacts": True}})


def test_a_run_of_your_own_is_logged_to_and_left_to_you(capsys, caplog) -> None:
    from azureml.core.run import Run

    from hooktrain_azure_ml import AzureMLPlugin

    mine = Run.get_context()
    with pytest.raises(RuntimeError, match="boom"):
        run_training(output_dir="out", report_to="none",
                     plugins=[AzureMLPlugin(azureml_run=mine), FailAtStep(5)])
    got = read_offline(capsys.readouterr().out)
    assert len(got.metrics["train/loss"]) == 2 and got.flushed == [mine.id]
    assert got.failed == [], "a run you pass is yours to fail"
    assert offline_said(caplog) == 0


# ---- faults ------------------------------------------------------------------------------------


def test_a_broken_stdout_mid_run_is_isolated(monkeypatch, caplog) -> None:
    """Offline, every log is a print: stdout piped into a reader that went away (``| head``)
    makes azureml-core's print raise BrokenPipeError. Training finishes without the plugin.

    hooktrain's own log printer (``PrinterCallback``, or tqdm's ``ProgressCallback``) prints to
    the same stdout and, being a callback rather than a plugin, would stop training: it is
    removed here, as by a user who reads the logs from plugins only."""
    from hooktrain import PrinterCallback

    read_end, write_end = os.pipe()
    broken = open(write_end, "w", buffering=1)  # noqa: SIM115 - closed by the test's reader

    class CloseTheReader(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 5:
                os.close(read_end)
                monkeypatch.setattr(sys, "stdout", broken)

    trainer = Trainer(TinyRegressor(), tiny_args("out", report_to=["azure_ml"]),
                      train_dataset=RegressionDataset(16), callbacks=[CloseTheReader()])
    trainer.remove_callback(PrinterCallback)
    caplog.set_level(logging.ERROR, logger="hooktrain")
    try:
        output = trainer.train()
    finally:
        monkeypatch.undo()
        with contextlib.suppress(BrokenPipeError):
            broken.close()
    assert output.global_step == 8
    faults = trainer.plugin_faults
    assert [(f.plugin.split()[0], f.hook) for f in faults] == [("azure_ml", "on_log")]
    assert "BrokenPipeError" in faults[0].error
    assert sum("azure_ml" in r.getMessage() for r in caplog.records if r.name.startswith("hooktrain")) == 1


# ---- installation and the online API -----------------------------------------------------------


def test_installed_entry_point_and_listed_by_hooktrain_plugins() -> None:
    from importlib.metadata import entry_points

    from hooktrain_azure_ml import AzureMLPlugin

    (ep,) = [e for e in entry_points(group="hooktrain.plugins") if e.name == "azure_ml"]
    assert ep.load() is AzureMLPlugin and ep.dist.name == "hooktrain-azure-ml"
    listing = subprocess.run([sys.executable, "-m", "hooktrain.cli", "plugins", "--json"],
                             check=True, capture_output=True, text=True, timeout=60)
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    assert rows["azure_ml"]["status"] == "enabled"
    assert rows["azure_ml"]["distribution"] == "hooktrain-azure-ml"
    assert {"on_train_begin", "on_log", "on_save", "on_train_end", "on_exception",
            "on_load_checkpoint"} <= set(rows["azure_ml"]["hooks"])


def test_the_online_run_takes_the_arguments_the_plugin_passes() -> None:
    """Inside a job the plugin calls a real ``Run``; no Azure here, so check its signatures."""
    from azureml.core.run import Run

    def params(method) -> list[str]:
        return list(inspect.signature(method).parameters)

    assert params(Run.log)[:5] == ["self", "name", "value", "description", "step"]
    assert "timeout_seconds" in params(Run.flush)
    assert params(Run.upload_files)[:3] == ["self", "names", "paths"]
    assert "timeout_seconds" in params(Run.upload_files)
    assert "error_details" in params(Run.fail) and "tags" in params(Run.set_tags)
    assert "allow_offline" in params(Run.get_context)
