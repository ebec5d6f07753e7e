"""``hooktrain new-plugin NAME``: a distribution a third party can build, test and publish.

The generated distribution is built into a wheel and installed into a fresh venv (see
``wheel_venv.py``), where its own tests must pass and hooktrain must discover it by name.
"""

from __future__ import annotations

import json
import subprocess
import tomllib

import pytest
from wheel_venv import SampleVenv, build_wheels, clean_env, create_venv, install

from hooktrain import cli
from hooktrain.errors import ConfigError
from hooktrain.scaffold import create_plugin


@pytest.fixture(scope="module")
def scaffold(tmp_path_factory):
    """``hooktrain new-plugin my_logger --directory DIR`` (through the command's entry)."""
    directory = tmp_path_factory.mktemp("scaffold")
    assert cli.main(["new-plugin", "my_logger", "--directory", str(directory)]) == 0
    return directory / "hooktrain-my-logger"


@pytest.fixture(scope="module")
def scaffold_venv(scaffold, tmp_path_factory):
    """A fresh venv with only the scaffolded plugin's wheel installed."""
    work = tmp_path_factory.mktemp("scaffold_build")
    wheels = build_wheels([scaffold], work / "wheels", work / "src")
    python = create_venv(work / "venv")
    install(python, list(wheels.values()))
    return SampleVenv(work / "venv", python, ("my_logger",))


def test_new_plugin_writes_a_distribution(scaffold):
    assert scaffold.is_dir()
    pyproject = tomllib.loads((scaffold / "pyproject.toml").read_text())
    project = pyproject["project"]
    assert project["name"] == "hooktrain-my-logger"
    entry_points = project["entry-points"]["hooktrain.plugins"]
    assert list(entry_points) == ["my_logger"]
    assert entry_points["my_logger"].startswith("hooktrain_my_logger")
    assert "build-backend" in pyproject["build-system"]
    assert (scaffold / "src" / "hooktrain_my_logger" / "__init__.py").is_file()
    readme = (scaffold / "README.md").read_text()
    assert "hooktrain-my-logger" in readme and "[plugins.my_logger]" in readme
    tests = list((scaffold / "tests").glob("test_*.py"))
    assert tests, "the distribution ships a test"
    # the test kit's fixtures come from hooktrain's pytest11 entry point, not a conftest line
    assert not (scaffold / "tests" / "conftest.py").exists()


def test_new_plugin_prints_where_it_went(tmp_path, capsys):
    assert cli.main(["new-plugin", "other_one", "--directory", str(tmp_path)]) == 0
    assert str(tmp_path / "hooktrain-other-one") in capsys.readouterr().out


def test_generated_tests_pass_against_the_installed_wheel(scaffold, scaffold_venv, tmp_path):
    where = scaffold_venv.result(
        """
        import sys
        from sample_driver import emit
        import hooktrain_my_logger
        emit(file=hooktrain_my_logger.__file__, torch="torch" in sys.modules)
        """,
        cwd=tmp_path,
    )
    assert where["file"].startswith(str(scaffold_venv.root))  # the wheel, not the source tree
    assert where["torch"] is False  # plugin modules never import torch at top
    proc = subprocess.run(
        [str(scaffold_venv.python), "-m", "pytest", str(scaffold / "tests"), "-q",
         "-p", "no:cacheprovider"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=clean_env(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " passed" in proc.stdout and "failed" not in proc.stdout


def test_generated_plugin_is_discovered_by_name(scaffold_venv, tmp_path):
    proc = scaffold_venv.cli("plugins", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in json.loads(proc.stdout)}
    row = rows["my_logger"]
    assert row["distribution"] == "hooktrain-my-logger"
    assert row["version"] == "0.1.0"
    assert row["status"] == "enabled"
    assert "on_log" in row["hooks"]


def test_generated_plugin_runs_with_its_settings(scaffold_venv, tmp_path):
    r = scaffold_venv.result(
        """
        from pathlib import Path
        from sample_driver import *
        from hooktrain import TrainingArguments

        Path("c.toml").write_text(
            '[training]\\noutput_dir = "out"\\nreport_to = "all"\\nsave_strategy = "no"\\n'
            'logging_steps = 2\\nper_device_train_batch_size = 4\\nnum_train_epochs = 2\\n'
            'disable_tqdm = true\\n\\n[plugins.my_logger]\\nevery_n_logs = 2\\n'
        )
        trainer = make_trainer(args=TrainingArguments.from_toml("c.toml"))
        trainer.train()
        logger = plugin(trainer, "my_logger")
        result = dict(entry_points=entry_points(trainer), every=logger.config.every_n_logs,
                      records=len(logger.records))
        os.environ["MY_LOGGER_EVERY_N_LOGS"] = "3"
        fallback = plugin(make_trainer(report_to=["my_logger"]), "my_logger")
        result["env"] = fallback.config.every_n_logs
        result["unknown"] = attempt(lambda: TrainingArguments.from_toml(
            "c.toml", ["--plugins.my_logger.every_n_log", "1"]))
        emit(**result)
        """,
        cwd=tmp_path,
    )
    assert "my_logger" in r["entry_points"]
    assert r["every"] == 2
    assert r["records"] == 2  # 5 logs (4 steps' worth and the final one), every second kept
    assert r["env"] == 3
    assert r["unknown"] is not None and "ConfigError" in r["unknown"]["types"]
    assert "every_n_logs" in r["unknown"]["message"]


@pytest.mark.parametrize("name", [
    "My_Logger", "1logger", "my-logger", "my logger", "_private", "class", "", "logger!",
    "über",
])
def test_bad_names_are_rejected(tmp_path, name):
    with pytest.raises(ConfigError):
        create_plugin(name, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_bad_name_on_the_command_line_exits_2(tmp_path, capsys):
    assert cli.main(["new-plugin", "My-Logger", "--directory", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("hooktrain: error:")
    assert list(tmp_path.iterdir()) == []


def test_existing_directory_is_not_overwritten(tmp_path):
    target = tmp_path / "hooktrain-taken"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="already exists"):
        create_plugin("taken", tmp_path)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
