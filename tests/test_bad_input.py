"""Bad input is one clear line (a ConfigError or CheckpointError; exit 2 from the CLI)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hooktrain import TrainerCallback, TrainingArguments, cli
from hooktrain.errors import CheckpointError, PluginError
from hooktrain.testing import RegressionDataset, TinyRegressor, tiny_args
from hooktrain.trainer import Trainer

MODULE = '''
import torch
from hooktrain.testing import RegressionDataset, TinyRegressor


def make_model():
    return TinyRegressor()


def not_a_model():
    return 5


def data():
    return RegressionDataset(16)


class InterruptAtFifthStep(TinyRegressor):
    calls = 0

    def forward(self, x, labels=None):
        InterruptAtFifthStep.calls += 1
        if InterruptAtFifthStep.calls == 5:
            raise KeyboardInterrupt
        return super().forward(x, labels)
'''


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A working directory with a module of the user's, as `hooktrain train` users have."""
    (tmp_path / "mymodels.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    return tmp_path


def config(path: Path, run: str = 'model = "mymodels:make_model"\n'
           'train_dataset = "mymodels:data"\n', training: str = "") -> Path:
    path.write_text('[training]\noutput_dir = "out"\nreport_to = "none"\ndisable_tqdm = true\n'
                    'max_steps = 6\nsave_steps = 2\n' + training + "\n[run]\n" + run)
    return path


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


def test_train_finds_modules_in_the_working_directory(project, capsys):
    code, err = run_cli(capsys, "train", str(config(project / "run.toml")))
    assert code == 0, err


@pytest.mark.parametrize("content, words", [
    (b"\x00\xff\xfe binary", "not UTF-8"),
    (b"training = 5\n", "must be a table"),
    (b'[run]\nmodel = 5\n', "import path"),
    (b'[run]\nmodel = "mymodels:make_model"\nresume_from_checkpoint = 5\n',
     "resume_from_checkpoint"),
    (b'[run]\nmodel = "mymodels:not_a_model"\n', "torch.nn.Module"),
    (b'[run]\nmodel = "mymodels:make_model"\n'
     b'train_dataset = "mymodels:InterruptAtFifthStep.calls"\n', "train_dataset"),
])
def test_a_bad_config_is_one_line_and_exit_2(project, capsys, content, words):
    path = project / "bad.toml"
    path.write_bytes(content)
    code, err = run_cli(capsys, "train", str(path))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("hooktrain: error:") and words in err, err


@pytest.mark.parametrize("word, expected", [("true", True), ("false", False),
                                            ("out/checkpoint-2", "out/checkpoint-2")])
def test_resume_from_checkpoint_on_the_command_line(project, word, expected):
    from hooktrain.config import load_config

    loaded = load_config(config(project / "run.toml"), ["--run.resume_from_checkpoint", word],
                         TrainingArguments)
    assert loaded.run["resume_from_checkpoint"] == expected


def test_ctrl_c_in_hooktrain_train_is_one_line_naming_the_resume_command(project, capsys):
    path = config(project / "run.toml", 'model = "mymodels:InterruptAtFifthStep"\n'
                  'train_dataset = "mymodels:data"\n')
    code, err = run_cli(capsys, "train", str(path))
    assert code == 130
    assert err.count("\n") == 1, err
    assert "at step 4 of 6" in err and "checkpoint-4" in err
    assert f"hooktrain train {path} --run.resume_from_checkpoint true" in err


def test_ctrl_c_in_a_users_script_still_raises(tmp_path):
    class Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            raise KeyboardInterrupt

    trainer = Trainer(TinyRegressor(), tiny_args(tmp_path), train_dataset=RegressionDataset(),
                      callbacks=[Interrupt()])
    with pytest.raises(KeyboardInterrupt):
        trainer.train()


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("hooktrain ")


def test_plugins_columns_stay_aligned_for_long_names(monkeypatch, capsys):
    rows = [{"name": "a", "distribution": "hooktrain-a", "version": "1", "hooks": ["on_log"],
             "status": "enabled", "reason": ""},
            {"name": "a_plugin_with_a_very_long_name", "distribution": "x", "version": "10.2",
             "hooks": [], "status": "broken", "reason": "why"}]
    monkeypatch.setattr(cli, "plugin_rows", lambda config=None: rows)
    cli.list_plugins()
    lines = [line for line in capsys.readouterr().out.splitlines() if "hooks:" not in line]
    assert len({line.index(("enabled", "broken")[i]) for i, line in enumerate(lines)}) == 1


# ---- checkpoints that hash right but hold the wrong thing -------------------------------------


@pytest.fixture
def saved(tmp_path) -> Path:
    args = tiny_args(tmp_path / "run", save_strategy="steps", save_steps=4, max_steps=4)
    Trainer(TinyRegressor(), args, train_dataset=RegressionDataset()).train()
    return tmp_path / "run" / "checkpoint-4"


def rewrite(checkpoint: Path, name: str, content: bytes) -> None:
    """Replace a file and its manifest entry: the hashes match, as after a hand edit."""
    (checkpoint / name).write_bytes(content)
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    manifest["files"][name] = {"size": len(content),
                               "sha256": hashlib.sha256(content).hexdigest()}
    (checkpoint / "manifest.json").write_text(json.dumps(manifest))


def resume(checkpoint: Path) -> None:
    args = tiny_args(checkpoint.parent, save_strategy="steps", save_steps=4, max_steps=8)
    Trainer(TinyRegressor(), args, train_dataset=RegressionDataset()).train(
        resume_from_checkpoint=str(checkpoint))


@pytest.mark.parametrize("change, words", [
    (lambda s: {**s, "global_step": -3}, "'global_step' must be a whole number >= 0"),
    (lambda s: {**s, "global_step": "four"}, "'global_step'"),
    (lambda s: {k: v for k, v in s.items() if k != "log_history"}, "'log_history' is missing"),
    (lambda s: {**s, "log_history": {"loss": 1}}, "'log_history' must be a list"),
    (lambda s: [s], "not a JSON object"),
])
def test_a_trainer_state_with_wrong_fields_names_the_file_and_field(saved, change, words):
    state = json.loads((saved / "trainer_state.json").read_text())
    rewrite(saved, "trainer_state.json", json.dumps(change(state)).encode())
    with pytest.raises(CheckpointError, match="trainer_state.json") as error:
        resume(saved)
    assert words in str(error.value)


def test_a_loop_state_missing_a_field_names_it(saved):
    loop = json.loads((saved / "hooktrain_state.json").read_text())
    del loop["tr_loss"]
    rewrite(saved, "hooktrain_state.json", json.dumps(loop).encode())
    with pytest.raises(CheckpointError, match="hooktrain_state.json.*'tr_loss' is missing"):
        resume(saved)


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_an_unsafe_pickle_is_refused_without_torchs_weights_only_hint(saved, tmp_path):
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"state": Payload()}, unsafe)
    rewrite(saved, "optimizer.pt", unsafe.read_bytes())
    with pytest.raises(CheckpointError) as error:
        resume(saved)
    message = str(error.value)
    assert "could run code" in message and "weights_only=False" not in message


def test_on_pre_log_returning_something_else_than_a_dict_is_a_plugin_error(tmp_path):
    class Bad(TrainerCallback):
        def on_pre_log(self, args, state, control, logs=None, **kwargs):
            return ["not", "a", "dict"]

    trainer = Trainer(TinyRegressor(), tiny_args(tmp_path), train_dataset=RegressionDataset(),
                      callbacks=[Bad()])
    with pytest.raises(PluginError, match="on_pre_log.*Bad.*returned a list"):
        trainer.train()


def test_the_cli_reports_config_errors_from_a_subprocess_as_exit_2(project):
    (project / "bad.toml").write_bytes(b"\xff\xfe")
    done = subprocess.run([sys.executable, "-m", "hooktrain.cli", "train", "bad.toml"],
                          capture_output=True, text=True, cwd=project, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
