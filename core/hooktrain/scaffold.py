"""``hooktrain new-plugin NAME``: a ready-to-publish plugin distribution with a passing test."""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from hooktrain.errors import ConfigError

_PYPROJECT = '''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "hooktrain-{dist}"
version = "0.1.0"
description = "{title} plugin for hooktrain"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["hooktrain>=0.2"]

[project.optional-dependencies]
test = ["pytest>=8"]

[project.entry-points."hooktrain.plugins"]
{name} = "hooktrain_{name}:{cls}"

[tool.setuptools.packages.find]
where = ["src"]
'''

_MODULE = '''\
"""{title}: a hooktrain plugin. Import heavy libraries inside hooks, never at module top."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Literal

from hooktrain.plugin import TrackerPlugin, hookimpl, setting


@dataclass
class {cls}Settings:
    """The [plugins.{name}] table of a config file; each field falls back to its env var."""

    #: Keep every n-th log.
    every_n_logs: int = setting(1, env="{env}_EVERY_N_LOGS")
    #: Which logs to keep; any other value is an error naming these two.
    keep: Literal["all", "eval"] = setting("all", env="{env}_KEEP")


class {cls}(TrackerPlugin):
    """Records every logged value in memory; replace the bodies with calls to your backend.

    TrackerPlugin opens the run when training starts (on resume, the run whose id the
    checkpoint saved), finishes it as a success or a failure, and closes it as failed when
    one of this plugin's hooks raises: hooktrain then switches the plugin off, training goes on.
    """

    plugin_name = "{name}"
    settings = {cls}Settings

    def __init__(self, settings: {cls}Settings | None = None) -> None:
        super().__init__(settings)
        self.records: list[dict[str, Any]] = []
        self.status: str | None = None
        self._seen = 0

    def open_run(self, args: Any, state: Any, model: Any, run_id: str | None) -> Any:
        self.status = "running"  # your backend: start a run, or reopen run_id
        return SimpleNamespace(id=run_id or uuid.uuid4().hex)

    def log_metrics(self, run: Any, metrics: dict[str, float], state: Any) -> None:
        if self.config.keep == "eval" and not any(k.startswith("eval_") for k in metrics):
            return
        self._seen += 1
        if self._seen % self.config.every_n_logs == 0:
            self.records.append({{"step": state.global_step, **metrics}})

    def finish_run(self, run: Any, failure: BaseException | None) -> None:
        self.status = "finished" if failure is None else "failed"

    @hookimpl
    def on_save(self, checkpoint_dir: Any) -> None:
        with self.failing():  # any other hook: mark it, and close the run if it raises
            pass  # upload checkpoint_dir to your backend here
'''

_TEST = '''\
import pytest

from hooktrain.plugin import ConfigError
from hooktrain_{name} import {cls}, {cls}Settings


def test_plugin_receives_every_log(run_training):
    plugin = {cls}()
    run = run_training(plugins=[plugin], logging_steps=2)
    logged = [entry for entry in run.trainer.state.log_history if "loss" in entry]
    assert [r["step"] for r in plugin.records if "loss" in r] == [e["step"] for e in logged]
    assert run.recorder.events.count("on_log") == len(plugin.records)
    assert plugin.status == "finished" and not run.faults


def test_settings_thin_out_the_logs(run_training):
    plugin = {cls}({cls}Settings(every_n_logs=2))
    run = run_training(plugins=[plugin], logging_steps=2)
    assert len(plugin.records) == len(run.recorder.of("on_log")) // 2


def test_a_bad_choice_names_the_allowed_values():
    with pytest.raises(ConfigError, match="'all', 'eval'"):
        {cls}({cls}Settings(keep="some"))
'''

_README = '''\
# hooktrain-{dist}

{title} plugin for [hooktrain](https://pypi.org/project/hooktrain/).

    pip install hooktrain-{dist}

It is used by every run with `report_to="all"` (the default) or `report_to=["{name}"]`.
Configure it in the run's TOML file:

    [plugins.{name}]
    every_n_logs = 1
    keep = "all"        # or "eval"

Test it with `pip install -e '.[test]' && pytest`.
'''


def create_plugin(name: str, directory: str | Path = ".") -> Path:
    """Write ``hooktrain-<name>/`` under ``directory``; returns its path."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise ConfigError(
            f"Plugin name {name!r} must be lower case letters, digits and underscores, starting "
            "with a letter (it becomes the entry-point name and the module hooktrain_<name>)."
        )
    dist = name.replace("_", "-")
    cls = "".join(part.capitalize() for part in name.split("_")) + "Plugin"
    values = {"name": name, "dist": dist, "cls": cls, "title": cls[:-6], "env": name.upper()}
    root = Path(directory) / f"hooktrain-{dist}"
    if root.exists():
        raise ConfigError(f"{root} already exists; choose another name or directory.")
    files = {
        "pyproject.toml": _PYPROJECT,
        "README.md": _README,
        f"src/hooktrain_{name}/__init__.py": _MODULE,
        # no tests/conftest.py: pytest finds hooktrain's fixtures (run_training, ...) through
        # hooktrain's pytest11 entry point
        f"tests/test_{name}.py": _TEST,
    }
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**values), encoding="utf-8")
    return root
