"""The ``hooktrain`` command: ``plugins`` (in a venv with real sample plugins) and ``train``.

``hooktrain plugins`` is checked inside a fresh venv where the sample distributions of
``tests/sample_plugins/`` are installed as wheels (see ``wheel_venv.py``); hooktrain itself is
visible there through a ``.pth`` file but has no console script, so the venv runs
``python -m hooktrain.cli``. ``hooktrain train`` runs in this environment with
``report_to="none"``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from wheel_venv import clean_env

from hooktrain import cli

JSON_KEYS = {"name", "distribution", "version", "hooks", "status", "reason"}

EXPECTED = {  # name -> (distribution, version, hooks)
    "alpha": ("hooktrain-alpha", "1.2.0", ["on_log", "on_train_begin", "on_train_end"]),
    "beta": ("hooktrain-beta", "0.4.0", ["on_log", "on_train_begin", "on_train_end"]),
    "omega": ("aaa-omega", "2.0.0", ["on_log", "on_train_begin"]),
}


def plugins_json(venv, tmp_path, *argv, **env):
    proc = venv.cli("plugins", "--json", *argv, cwd=tmp_path, **env)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    return {row["name"]: row for row in rows}, rows


# ---- hooktrain plugins ------------------------------------------------------------------------


def test_plugins_lists_name_distribution_version_hooks_and_status(full_venv, tmp_path):
    proc = full_venv.cli("plugins", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for name, (dist, version, hooks) in EXPECTED.items():
        line = next(l for l in out.splitlines() if l.startswith(name + " "))
        assert dist in line and version in line and "enabled" in line, line
        for hook in hooks:
            assert hook in out
    broken = next(l for l in out.splitlines() if l.startswith("broken "))
    assert "hooktrain-broken" in broken and "0.1.0" in broken
    assert "broken" in broken.split("0.1.0", 1)[1]  # the status
    assert "hooktrain_sample_missing_dependency" in broken  # the reason
    assert "typo" in out and "hooktrain-typo" in out


def test_plugins_json_has_exactly_the_documented_keys(full_venv, tmp_path):
    by_name, rows = plugins_json(full_venv, tmp_path)
    assert isinstance(rows, list)
    for row in rows:
        assert set(row) == JSON_KEYS, row
        assert row["status"] in ("enabled", "disabled", "broken")
        assert isinstance(row["hooks"], list) and isinstance(row["version"], str)
    for name, (dist, version, hooks) in EXPECTED.items():
        row = by_name[name]
        assert (row["distribution"], row["version"], row["status"]) == (dist, version, "enabled")
        assert sorted(row["hooks"]) == hooks
        assert not row["reason"]
    broken = by_name["broken"]
    assert broken["status"] == "broken"
    assert broken["distribution"] == "hooktrain-broken"
    assert "ModuleNotFoundError" in broken["reason"]
    assert "hooktrain_sample_missing_dependency" in broken["reason"]
    assert by_name["typo"]["distribution"] == "hooktrain-typo"
    assert "on_stepend" in by_name["typo"]["hooks"]
    assert [row["name"] for row in rows] == sorted(by_name)


def test_plugins_shows_environment_disables(full_venv, tmp_path):
    by_name, _ = plugins_json(full_venv, tmp_path, HOOKTRAIN_DISABLE_PLUGINS="alpha,broken")
    for name in ("alpha", "broken"):
        assert by_name[name]["status"] == "disabled"
        assert "HOOKTRAIN_DISABLE_PLUGINS" in by_name[name]["reason"]
    assert by_name["beta"]["status"] == "enabled"
    text = full_venv.cli("plugins", cwd=tmp_path, HOOKTRAIN_DISABLE_PLUGINS="alpha")
    line = next(l for l in text.stdout.splitlines() if l.startswith("alpha "))
    assert "disabled" in line and "HOOKTRAIN_DISABLE_PLUGINS" in line

    by_name, _ = plugins_json(full_venv, tmp_path, HOOKTRAIN_DISABLE_PLUGIN_AUTOLOAD="1")
    for name in EXPECTED:
        assert by_name[name]["status"] == "disabled"
        assert "HOOKTRAIN_DISABLE_PLUGIN_AUTOLOAD" in by_name[name]["reason"]


def test_plugins_applies_report_to_and_disable_plugins_from_a_config(full_venv, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('[training]\nreport_to = ["alpha", "omega"]\n'
                      'disable_plugins = ["omega"]\n\n[plugins.alpha]\nlevel = 2\n')
    by_name, _ = plugins_json(full_venv, tmp_path, "--config", str(config))
    assert by_name["alpha"]["status"] == "enabled"
    assert by_name["omega"]["status"] == "disabled"
    assert "disable_plugins" in by_name["omega"]["reason"]
    assert by_name["beta"]["status"] == "disabled"
    assert "report_to" in by_name["beta"]["reason"]

    config.write_text('[training]\nreport_to = "none"\n')
    by_name, _ = plugins_json(full_venv, tmp_path, "--config", str(config))
    assert {by_name[n]["status"] for n in EXPECTED} == {"disabled"}

    config.write_text('[training]\nreport_to = "beta"\n')
    by_name, _ = plugins_json(full_venv, tmp_path, "--config", str(config))
    assert by_name["beta"]["status"] == "enabled"
    assert by_name["alpha"]["status"] == "disabled"


@pytest.mark.parametrize("content", [None, "[training\nreport_to = 1\n"])
def test_plugins_with_a_bad_config_is_a_clean_error(tmp_path, capsys, content):
    """A missing or invalid --config file: exit 2 and 'hooktrain: error:', no traceback."""
    config = tmp_path / "bad.toml"
    if content is not None:
        config.write_text(content)
    assert cli.main(["plugins", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "hooktrain: error:" in err and "bad.toml" in err


def test_plugins_imports_neither_torch_nor_disabled_plugins(full_venv, tmp_path):
    r = full_venv.result(
        """
        import io, contextlib
        from sample_driver import emit, imported
        from hooktrain.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as out:
            code = main(["plugins"])
            code_json = main(["plugins", "--json"])
        emit(code=code, code_json=code_json, torch=imported("torch"),
             alpha=imported("hooktrain_alpha"), beta=imported("hooktrain_beta"),
             listed="beta" in out.getvalue())
        """,
        cwd=tmp_path, HOOKTRAIN_DISABLE_PLUGINS="alpha",
    )
    assert r["code"] == 0 and r["code_json"] == 0 and r["listed"]
    assert r["torch"] is False
    assert r["alpha"] is False  # blocked plugins are not imported, not even to list hooks
    assert r["beta"] is True


def test_plugins_wall_time(full_venv, tmp_path):
    """Issue 5 asks for the measured time of `hooktrain plugins` with several plugins installed."""
    times = []
    for _ in range(5):
        start = time.perf_counter()
        proc = full_venv.cli("plugins", cwd=tmp_path)
        times.append(time.perf_counter() - start)
        assert proc.returncode == 0
    print(f"\n`python -m hooktrain.cli plugins` with {len(full_venv.plugins)} sample plugins "
          f"installed: min {min(times):.3f}s, median {statistics.median(times):.3f}s, "
          f"max {max(times):.3f}s (wall time of the whole process)")


def test_train_in_a_venv_with_plugin_settings_from_file_and_flags(clean_venv, tmp_path):
    factories = tmp_path / "venv_factories.py"
    factories.write_text(FACTORIES)
    config = tmp_path / "run.toml"
    config.write_text(TRAINING.format(output_dir=json.dumps(str(tmp_path / "run")))
                      .replace('report_to = "none"', 'report_to = ["alpha"]')
                      + RUN.format(module="venv_factories")
                      + '\n[plugins.alpha]\nlevel = 2\ntag = "file"\n')
    trace = tmp_path / "trace"
    proc = subprocess.run(
        [str(clean_venv.python), "-m", "hooktrain.cli", "train", str(config),
         "--plugins.alpha.level", "4", "--training.max_steps=2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=180,
        env=clean_env(PYTHONPATH=str(tmp_path), SAMPLE_TRACE=str(trace)),
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["global_step"] == 2
    lines = trace.read_text().splitlines()
    assert "alpha init level=4 tag=file ratio=0.5" in lines
    assert "alpha on_train_end" in lines


# ---- hooktrain train CONFIG.toml ----------------------------------------------------------------

FACTORIES = '''\
from hooktrain.testing import RegressionDataset, TinyRegressor


def make_model():
    return TinyRegressor()


def train_set():
    return RegressionDataset(16, seed=0)


EVAL_SET = RegressionDataset(8, seed=1)  # a ready object, not a factory
'''

TRAINING = '''\
[training]
output_dir = {output_dir}
num_train_epochs = 2
per_device_train_batch_size = 4
learning_rate = 0.01
logging_steps = 2
save_strategy = "no"
eval_strategy = "epoch"
report_to = "none"
disable_tqdm = true
'''

RUN = '''
[run]
model = "{module}:make_model"
train_dataset = "{module}:train_set"
eval_dataset = "{module}:EVAL_SET"
'''


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A factories module on sys.path (unique name) and a config that trains it."""
    module = f"factories_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "run.toml"
    config.write_text(TRAINING.format(output_dir=json.dumps(str(tmp_path / "run")))
                      + RUN.format(module=module))
    return tmp_path, module, config


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_train_end_to_end_as_a_command(project):
    tmp_path, module, config = project
    proc = subprocess.run(
        [sys.executable, "-m", "hooktrain.cli", "train", str(config),
         "--training.max_steps", "3"],
        cwd=tmp_path, capture_output=True, text=True, timeout=180,
        env=clean_env(PYTHONPATH=str(tmp_path)),
    )
    assert proc.returncode == 0, proc.stderr
    result = last_json(proc.stdout)
    assert result["global_step"] == 3  # the flag wins over num_train_epochs = 2
    assert "train_loss" in result


def test_train_uses_the_config(project, capsys):
    _, _, config = project
    assert cli.main(["train", str(config)]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["global_step"] == 8  # 16 samples / 4 per batch * 2 epochs


@pytest.mark.parametrize("flags", [["--training.max_steps", "3"], ["--training.max_steps=3"]])
def test_train_flags_override_the_file(project, capsys, flags):
    _, _, config = project
    assert cli.main(["train", str(config), *flags]) == 0
    assert last_json(capsys.readouterr().out)["global_step"] == 3


def test_train_run_flags_override_the_run_table(project, capsys):
    tmp_path, module, config = project
    (tmp_path / f"{module}_other.py").write_text(
        FACTORIES.replace("RegressionDataset(16, seed=0)", "RegressionDataset(8, seed=0)"))
    argv = ["train", str(config), "--run.train_dataset", f"{module}_other:train_set"]
    assert cli.main(argv) == 0
    assert last_json(capsys.readouterr().out)["global_step"] == 4  # 8 samples / 4 * 2 epochs


def rewrite(config: Path, old: str, new: str) -> None:
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new))


ERRORS = {
    # case: (edit to the config (old, new) or extra flags, words the message must contain)
    "unknown table": (("[run]", "[runn]"), ["[runn]", "[training]", "[plugins]", "[run]"]),
    "unknown run key": (("model =", "modle ="), ["'modle'", "model", "train_dataset"]),
    "bad module": ((":make_model", "_nosuch:make_model"), ["model", "_nosuch"]),
    "bad attribute": (("make_model", "make_modle"), ["model", "make_modle"]),
    "not module:attribute": ((":make_model", ".make_model"), ["model", "module:attribute"]),
    "misspelled training key": (("learning_rate", "learning_rat"), ["'learning_rat'",
                                                                     "'learning_rate'"]),
    "mistyped training value": (("num_train_epochs = 2", 'num_train_epochs = "two"'),
                                ["num_train_epochs", "two"]),
    "no model": (('model = "', 'processing_class = "'), ["model"]),
    "misspelled flag": (["--training.max_step", "3"], ["'max_step'", "'max_steps'"]),
    "unknown flag table": (["--trainer.max_steps", "3"], ["trainer.max_steps", "--training."]),
    "flag without value": (["--training.max_steps"], ["--training.max_steps"]),
    "flag value mistyped": (["--training.max_steps", "three"], ["max_steps", "three"]),
    "settings for a missing plugin": (["--plugins.nosuch.key", "1"], ["'nosuch'"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_train_errors_exit_2_with_a_message(project, capsys, case):
    _, _, config = project
    change, words = ERRORS[case]
    flags = []
    if isinstance(change, tuple):
        rewrite(config, *change)
    else:
        flags = change
    assert cli.main(["train", str(config), *flags]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("hooktrain: error:"), captured.err
    assert "Traceback" not in captured.err
    for word in words:
        assert word in captured.err, (word, captured.err)


def test_train_error_exit_code_from_the_command(project):
    tmp_path, _, config = project
    rewrite(config, "[training]", "[trainig]")
    proc = subprocess.run([sys.executable, "-m", "hooktrain.cli", "train", str(config)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=clean_env(PYTHONPATH=str(tmp_path)))
    assert proc.returncode == 2
    assert proc.stderr.startswith("hooktrain: error:") and "[trainig]" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_train_missing_config_file(tmp_path, capsys):
    assert cli.main(["train", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hooktrain: error:") and "nope.toml" in err


def test_unknown_arguments_to_other_commands_are_rejected(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["plugins", "--training.max_steps", "3"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err
