"""Everything a plugin author imports, in one place (as ``tox.plugin`` and ``pytest`` are).

A plugin distribution under ``plugins/`` imports only ``hooktrain``, this module and, in its
tests, :mod:`hooktrain.testing`::

    from dataclasses import dataclass
    from typing import Literal

    from hooktrain.plugin import TrackerPlugin, hookimpl, rewrite_key, setting

    @dataclass
    class MySettings:
        project: str = setting("default", env="MYTRACKER_PROJECT")
        log_model: Literal["false", "end"] = setting("false", env="MYTRACKER_LOG_MODEL")

    class MyTrackerPlugin(TrackerPlugin):
        plugin_name = "mytracker"
        settings = MySettings

        def open_run(self, args, state, model, run_id): ...
        def log_metrics(self, run, metrics, state): ...
        def finish_run(self, run, failure): ...

What is here:

* the hook marker :data:`hookimpl` (and :data:`hookspec`, for plugins that add hooks);
* settings: :func:`setting` declares a field with its environment fallback, ``Literal[...]``
  annotations list the accepted values, :func:`from_environment` builds a plugin's settings
  outside a config file, :func:`validate_settings` checks a settings object built in Python
  (``TrackerPlugin`` does it for you), :func:`parse_bool` reads a boolean as the config does;
* the errors a plugin may raise: :class:`ConfigError` for a bad setting, :class:`PluginError`
  for a plugin that cannot work; and :class:`TrainingTerminated`, the exception ``on_exception``
  receives when SIGTERM stopped training (a preempted job: a tracker may record it apart);
* :class:`TrackerPlugin`, the run lifecycle of an experiment tracker;
* what every logging integration shares: HF's key names (:func:`rewrite_key`), numeric filtering
  (:class:`NumericFilter`), the run's configuration (:func:`run_config`, :func:`model_config`),
  the default log directory (:func:`default_run_dir`) and a final-model writer
  (:func:`save_model`).

Importing this module does not import torch. docs/plugins.md teaches writing a plugin.
"""

from __future__ import annotations

from hooktrain.errors import ConfigError, HooktrainError, PluginError, TrainingTerminated
from hooktrain.integration import (
    SUMMARY_KEYS,
    NumericFilter,
    default_run_dir,
    model_config,
    rewrite_key,
    run_config,
    save_model,
)
from hooktrain.markers import hookimpl, hookspec
from hooktrain.plugin_host.settings import from_environment, parse_bool, setting
from hooktrain.plugin_host.settings import validate as validate_settings
from hooktrain.tracker import TrackerPlugin

__all__ = [
    "SUMMARY_KEYS",
    "ConfigError",
    "HooktrainError",
    "NumericFilter",
    "PluginError",
    "TrackerPlugin",
    "TrainingTerminated",
    "default_run_dir",
    "from_environment",
    "hookimpl",
    "hookspec",
    "model_config",
    "parse_bool",
    "rewrite_key",
    "run_config",
    "save_model",
    "setting",
    "validate_settings",
]
