"""Entry-point plugins: find, select, block before import, load.

Selection rules (docs/configuring-plugins.md, "Selecting plugins"):

* ``report_to="all"``: every installed plugin, sorted by entry-point name; ``"none"``: none; a
  list: those names, in that order. An unknown name is an error listing the installed ones.
* ``disable_plugins`` and ``HOOKTRAIN_DISABLE_PLUGINS=a,b`` block names before anything is
  imported; a blocked plugin that ``report_to`` names explicitly is skipped with one warning
  saying where the block came from. ``HOOKTRAIN_DISABLE_PLUGIN_AUTOLOAD=1`` turns ``"all"`` into
  no plugins; plugins named explicitly still load.
* A plugin that fails to import is a warning under ``"all"`` (the run goes on) and an error when
  named explicitly.

This module does not import torch: ``hooktrain plugins`` uses it.
"""

from __future__ import annotations

import difflib
import logging
import os
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from hooktrain.errors import ConfigError, PluginError
from hooktrain.markers import attribute, is_hookimpl
from hooktrain.plugin_host import settings

logger = logging.getLogger("hooktrain")

GROUP = "hooktrain.plugins"
DISABLE_ENV = "HOOKTRAIN_DISABLE_PLUGINS"
NO_AUTOLOAD_ENV = "HOOKTRAIN_DISABLE_PLUGIN_AUTOLOAD"


@dataclass
class InstalledPlugin:
    """One entry point of the ``hooktrain.plugins`` group."""

    name: str
    distribution: str
    version: str
    entry_point: metadata.EntryPoint = field(repr=False)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.distribution} {self.version})"


@dataclass
class Selection:
    """Which installed plugins a run uses, and why the others are left out."""

    selected: list[InstalledPlugin]
    explicit: bool
    disabled: dict[str, str]  # name -> where the block came from


def installed_plugins() -> dict[str, InstalledPlugin]:
    """Every plugin entry point, by name. Two distributions with one name is an error."""
    found: dict[str, InstalledPlugin] = {}
    for ep in metadata.entry_points(group=GROUP):
        dist = ep.dist
        plugin = InstalledPlugin(
            ep.name,
            dist.metadata["Name"] if dist is not None else "?",
            dist.version if dist is not None else "?",
            ep,
        )
        other = found.get(ep.name)
        if other is not None and other.distribution != plugin.distribution:
            raise PluginError(
                f"Two installed distributions provide the hooktrain plugin {ep.name!r}: "
                f"{other.distribution} and {plugin.distribution}. Uninstall one of them."
            )
        found[ep.name] = plugin
    return dict(sorted(found.items()))


def env_disabled() -> list[str]:
    return [n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()]


def autoload_disabled() -> bool:
    return os.environ.get(NO_AUTOLOAD_ENV, "").strip().lower() not in ("", "0", "false", "no")


def select(report_to: str | list[str], disable_plugins: list[str]) -> Selection:
    """Apply ``report_to`` and the disable lists to what is installed; nothing is imported."""
    installed = installed_plugins()
    disabled: dict[str, str] = {}
    for name in disable_plugins:
        disabled[name] = "disable_plugins"
    for name in env_disabled():
        disabled.setdefault(name, DISABLE_ENV)
    for name, source in disabled.items():
        if name not in installed:
            logger.warning(
                "%s names %r, which is not an installed hooktrain plugin (installed: %s).",
                source, name, ", ".join(installed) or "none",
            )
    if report_to == "none":
        return Selection([], False, disabled)
    if report_to == "all":
        names = [] if autoload_disabled() else list(installed)
        explicit = False
    else:
        names = list(report_to)
        explicit = True
        for name in names:
            if name not in installed:
                raise PluginError(unknown_plugin_message(name, installed))
    selected = []
    for name in names:
        if name in disabled:
            if explicit:
                logger.warning(
                    "Plugin %r is named in report_to but disabled by %s; it is not loaded.",
                    name, disabled[name],
                )
            continue
        selected.append(installed[name])
    return Selection(selected, explicit, disabled)


def unknown_plugin_message(name: str, installed: dict[str, InstalledPlugin]) -> str:
    close = difflib.get_close_matches(name, list(installed), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    choices = ", ".join(installed) or "none"
    return (
        f"Unknown plugin {name!r} in report_to.{hint} Installed hooktrain plugins: {choices}. "
        f"Install it (pip install hooktrain-{name.replace('_', '-')}) or remove it from "
        "report_to."
    )


def load(plugin: InstalledPlugin, *, explicit: bool) -> Any | None:
    """Import the entry point's object; ``None`` (with a warning) when it breaks under "all"."""
    try:
        return plugin.entry_point.load()
    except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the run
        message = (
            f'Error importing plugin "{plugin.name}" from distribution {plugin.distribution} '
            f"{plugin.version}: {type(exc).__name__}: {exc}"
        )
        if explicit:
            raise PluginError(
                f"{message}. Fix its installation, or remove it from report_to."
            ) from exc
        # one line; the traceback at debug level, or always with HOOKTRAIN_TRACE_PLUGINS=1
        logger.warning("%s. The run goes on without it; disable it with disable_plugins=[%r].",
                       message, plugin.name)
        trace = traceback.format_exc()
        if os.environ.get("HOOKTRAIN_TRACE_PLUGINS", "") not in ("", "0"):
            logger.warning("Traceback of plugin %r:\n%s", plugin.name, trace)
        else:
            logger.debug("Traceback of plugin %r:\n%s", plugin.name, trace)
        return None


def instantiate(obj: Any, name: str, table: dict[str, Any]) -> Any:
    """The plugin object for a run: a class is built once per Trainer, with its settings.

    A class with a ``settings`` dataclass gets ``cls(settings=...)`` resolved from ``table``
    and the environment; any other class ``cls()``. A module or instance is used as it is.
    """
    declared = settings.settings_class(obj)
    if not isinstance(obj, type):
        settings.check_keys(name, declared, table)
        return obj
    if declared is None:
        settings.check_keys(name, None, table)
        return obj()
    return obj(settings=settings.resolve(name, declared, table))


def hook_names(obj: Any) -> list[str]:
    """The hooks an entry point's object implements (marked with ``@hookimpl``)."""
    names = []
    for attr in dir(obj):
        if is_hookimpl(attribute(obj, attr)):
            names.append(attr)
    return names


def unknown_hooks(names: list[str]) -> list[str]:
    """Those of ``names`` that are no hooktrain hook (a misspelling such as ``on_stepend``)."""
    from hooktrain.events import EVENT_NAMES

    return [name for name in names if name not in EVENT_NAMES]


def check_plugin_tables(tables: dict[str, dict[str, Any]], disabled: list[str]) -> None:
    """Each ``[plugins.<name>]`` table must name an installed plugin and only keys its settings
    declare.

    A disabled plugin's table is left unchecked: checking means importing, and disabling
    happens before import.
    """
    if not tables:
        return
    installed = installed_plugins()
    blocked = set(disabled) | set(env_disabled())
    for name, table in tables.items():
        if name in blocked:
            continue
        if name not in installed:
            raise ConfigError(
                f"Settings given for plugin {name!r}, which is not installed. Installed "
                f"plugins: {', '.join(installed) or 'none'}."
            )
        obj = load(installed[name], explicit=True)
        settings.check_keys(name, settings.settings_class(obj), table)
