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
requires-python = ">=3.10"
dependencies = ["hooktrain"]

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

from dataclasses import dataclass, field
from typing import Any

from hooktrain import hookimpl
from hooktrain.plugin_host.settings import from_environment


@dataclass
class {cls}Settings:
    """Settings from the [plugins.{name}] table of a config file (env var as fallback)."""

    every_n_logs: int = field(default=1, metadata={{"env": "{env}_EVERY_N_LOGS"}})


class {cls}:
    """Collects every logged value; replace the body with calls to your backend."""

    settings = {cls}Settings

    def __init__(self, settings: {cls}Settings | None = None) -> None:
        # built by hand (not from a config file): the environment variables still apply
        self.config = settings or from_environment("{name}", {cls}Settings)
        self.records: list[dict[str, Any]] = []
        self._seen = 0

    @hookimpl
    def on_log(self, state: Any, logs: dict[str, Any]) -> None:
        self._seen += 1
        if self._seen % self.config.every_n_logs == 0:
            self.records.append({{"step": state.global_step, **logs}})

    @hookimpl
    def on_train_end(self, state: Any) -> None:
        pass  # flush and close your backend here

    @hookimpl
    def on_exception(self, exception: BaseException) -> None:
        pass  # mark your backend's run as failed here
'''

_TEST = '''\
from hooktrain_{name} import {cls}, {cls}Settings


def test_plugin_receives_every_log(run_training):
    plugin = {cls}()
    run = run_training(plugins=[plugin], logging_steps=2)
    logged = [entry for entry in run.trainer.state.log_history if "loss" in entry]
    assert [r["step"] for r in plugin.records if "loss" in r] == [e["step"] for e in logged]
    assert run.recorder.events.count("on_log") == len(plugin.records)


def test_settings_thin_out_the_logs(run_training):
    plugin = {cls}({cls}Settings(every_n_logs=2))
    run = run_training(plugins=[plugin], logging_steps=2)
    assert len(plugin.records) == len(run.recorder.of("on_log")) // 2
'''

_README = '''\
# hooktrain-{dist}

{title} plugin for [hooktrain](https://pypi.org/project/hooktrain/).

    pip install hooktrain-{dist}

It is used by every run with `report_to="all"` (the default) or `report_to=["{name}"]`.
Configure it in the run's TOML file:

    [plugins.{name}]
    every_n_logs = 1

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
        f"tests/test_{name}.py": _TEST,
        "tests/conftest.py": 'pytest_plugins = ["hooktrain.testing"]\n',
    }
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**values), encoding="utf-8")
    return root
