"""``HooktrainPluginManager``: pluggy's manager plus what a training framework needs.

What it adds to :class:`pluggy.PluginManager`:

* **One registry for both plugin styles.** ``TrainerCallback`` objects are wrapped in a
  :class:`~hooktrain.plugin_host.bridge.TrainerCallbackBridge`; pluggy-style objects register as
  they are.
* **Hook names checked at registration.** A hook that does not exist (``on_stepend``) or an
  argument no hook provides is a :class:`~hooktrain.errors.HookNameError` naming the plugin, the
  hook and the closest real hook, instead of being ignored.
* **Order as a contract** (:meth:`ordered_impls`), whatever the registration sequence.
* **Records** per plugin: band, isolation (entry-point plugins are logging plugins whose errors
  never stop training), rank gating and a switch-off reason, which the dispatcher reads.
"""

from __future__ import annotations

import difflib
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import pluggy

from hooktrain import hookspecs
from hooktrain.errors import HookNameError, PluginError
from hooktrain.events import EVENT_NAMES
from hooktrain.markers import PROJECT_NAME, attribute, is_hookimpl
from hooktrain.plugin_host import discovery
from hooktrain.plugin_host.bridge import TrainerCallbackBridge, unknown_hook_message
from hooktrain.trainer_callback import is_trainer_callback

logger = logging.getLogger("hooktrain")


class Band(IntEnum):
    """Where a plugin runs in every event (docs/configuring-plugins.md, "Order"). Lower bands
    run first.

    Within a band, ``tryfirst`` impls run first and ``trylast`` last; ties keep registration order.
    """

    #: DefaultFlowCallback sets the flags; everything after it may read and override them.
    FLOW = 0
    #: Callbacks the user passed: constructor list, then add_callback calls.
    USER = 1
    #: Entry-point plugins, in report_to order ("all": sorted by name).
    ENTRY_POINT = 2
    #: Progress bar or printer last, so what it prints reflects every other plugin's changes.
    REPORTER = 3


@dataclass(eq=False)
class PluginRecord:
    """What the manager knows about one registered plugin."""

    name: str
    plugin: object  # what the user gave: a callback, a pluggy-style object or a module
    band: Band
    ordinal: int
    isolated: bool = False  # errors reported and the plugin switched off, training goes on
    all_ranks: bool = True  # False: only world rank zero calls it
    distribution: str | None = None
    nonblocking: bool = False  # hooks run on a worker thread (plugins/background.py)
    disabled_reason: str | None = None

    @property
    def label(self) -> str:
        """How messages name the plugin."""
        if self.distribution:
            return f"{self.name} ({self.distribution})"
        return self.name


@dataclass
class PluginFault:
    """A plugin switched off after raising, or one that could not be loaded."""

    plugin: str
    hook: str
    error: str


class HooktrainPluginManager(pluggy.PluginManager):
    """The one plugin manager of a :class:`~hooktrain.Trainer` (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self._records: dict[str, PluginRecord] = {}
        self._ordinals = itertools.count()
        self._listeners: list[Callable[[], None]] = []
        #: Every plugin that failed: at import, at registration or in a hook (the dispatcher
        #: records those). Read it as ``trainer.plugin_faults``.
        self.faults: list[PluginFault] = []

    # ---- registration --------------------------------------------------------------------

    def register_plugin(
        self,
        plugin: object,
        *,
        band: Band | None = None,
        name: str | None = None,
        isolated: bool = False,
        all_ranks: bool = True,
        distribution: str | None = None,
        nonblocking: bool | None = None,
    ) -> PluginRecord:
        """Register ``plugin`` (a ``TrainerCallback`` or a pluggy-style object) and validate it."""
        if band is None:
            band = default_band(plugin)
        ordinal = next(self._ordinals)
        if name is None:
            name = f"{_describe(plugin)}#{ordinal}"
        if name in self._records:
            raise PluginError(f"A plugin named {name!r} is already registered.")
        if is_trainer_callback(plugin):  # hooktrain's or transformers' TrainerCallback
            target: object = TrainerCallbackBridge(plugin)
        else:
            _check_unmarked_hooks(plugin, name)
            # pluggy refuses one object twice; HF's add_callback appends it again, so the second
            # registration goes through a stand-in that carries the same hook methods.
            target = _SecondRegistration(plugin) if self.is_registered(plugin) else plugin
        try:
            self.register(target, name=name)
        except pluggy.PluginValidationError as exc:
            if self.get_plugin(name) is not None:  # pluggy keeps the impls it added before failing
                self.unregister(name=name)
            raise HookNameError(f"Plugin {name!r} cannot be registered: {exc}") from None
        if nonblocking is None:
            nonblocking = bool(getattr(plugin, "hooktrain_nonblocking", False))
        record = PluginRecord(
            name, plugin, band, ordinal, isolated, all_ranks, distribution, nonblocking
        )
        self._records[name] = record
        try:
            self._check_impls(record)
        except PluginError:
            self.unregister_plugin(record)
            raise
        self._changed()
        return record

    def load_entrypoint_plugins(
        self, report_to: str | list[str], disable_plugins: list[str],
        tables: dict[str, dict[str, Any]],
    ) -> None:
        """Import, build and register the installed plugins ``report_to`` selects.

        pluggy's ``load_setuptools_entrypoints`` with hooktrain's rules
        (docs/configuring-plugins.md, "Selecting plugins"): a disabled plugin is never imported;
        each plugin class is built with its ``[plugins.<name>]`` table; under ``"all"`` a plugin
        that fails to import or to register is skipped with a warning and recorded in
        :attr:`faults`, while one named in ``report_to`` is an error.
        """
        discovery.check_plugin_tables(tables, disable_plugins)
        selection = discovery.select(report_to, disable_plugins)
        for installed in selection.selected:
            obj = discovery.load(installed, explicit=selection.explicit)
            if obj is None:  # broken under "all": warned already; listed in the summary too
                self.faults.append(
                    PluginFault(installed.label, "import", "failed to import (see the warning)"))
                continue
            table = dict(tables.get(installed.name, {}))
            nonblocking = table.pop("nonblocking", None)
            plugin = discovery.instantiate(obj, installed.name, table)
            try:
                self.register_plugin(
                    plugin, band=Band.ENTRY_POINT, name=installed.name, isolated=True,
                    all_ranks=bool(getattr(plugin, "hooktrain_all_ranks", False)),
                    distribution=f"{installed.distribution} {installed.version}",
                    nonblocking=None if nonblocking is None else bool(nonblocking),
                )
            except PluginError as exc:  # a bad hook name in a third-party wheel
                if selection.explicit:
                    raise
                # under "all" one bad wheel must not stop every run: skip it, as a broken import
                logger.warning("Skipping plugin %r from distribution %s %s: %s The run goes on "
                               "without it; disable it with disable_plugins=[%r].",
                               installed.name, installed.distribution, installed.version, exc,
                               installed.name)
                self.faults.append(PluginFault(installed.label, "register", str(exc)))

    def unregister_plugin(self, record: PluginRecord) -> None:
        self.unregister(name=record.name)
        self._records.pop(record.name, None)
        self._changed()

    def disable_plugin(self, record: PluginRecord, reason: str) -> None:
        """Stop calling ``record``'s hooks for the rest of the run (it stays listed)."""
        record.disabled_reason = reason
        self._changed()

    def _check_impls(self, record: PluginRecord) -> None:
        for caller in self.get_hookcallers(self.get_plugin(record.name)) or []:
            if caller.name not in EVENT_NAMES:
                raise HookNameError(unknown_hook_message(record.label, caller.name))
            for impl in caller.get_hookimpls():
                if impl.plugin_name == record.name and (impl.wrapper or impl.hookwrapper):
                    raise PluginError(
                        f"Plugin {record.label!r} marks {caller.name!r} as a hook wrapper; "
                        "hooktrain events do not support wrappers. Use tryfirst/trylast, or "
                        "split the work between two events."
                    )

    # ---- queries ---------------------------------------------------------------------------

    def records(self) -> list[PluginRecord]:
        """Every registered plugin in dispatch order."""
        return sorted(self._records.values(), key=lambda r: (r.band, r.ordinal))

    def ordered_impls(self, hook_name: str) -> list[tuple[PluginRecord, pluggy.HookImpl]]:
        """The enabled implementations of ``hook_name`` in contract order.

        pluggy itself calls the last registered first; hooktrain sorts by band, then
        tryfirst / plain / trylast, then registration order.
        """
        impls = []
        for impl in getattr(self.hook, hook_name).get_hookimpls():
            record = self._records[impl.plugin_name]
            if record.disabled_reason is None:
                impls.append((record, impl))

        def order(item: tuple[PluginRecord, pluggy.HookImpl]) -> tuple[int, int, int]:
            record, impl = item
            within = 0 if impl.tryfirst else 2 if impl.trylast else 1
            return (record.band, within, record.ordinal)

        return sorted(impls, key=order)

    def add_change_listener(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()


class _SecondRegistration:
    """Exposes an already registered plugin's hookimpls under another registration."""

    def __init__(self, plugin: object) -> None:
        for attr in dir(plugin):
            value = attribute(plugin, attr)
            if is_hookimpl(value):
                setattr(self, attr, value)


def default_band(plugin: object) -> Band:
    """``USER``, unless the plugin declares its band (the built-in flow and reporter callbacks)."""
    declared = attribute(plugin, "hooktrain_band")
    return Band[declared.upper()] if isinstance(declared, str) else Band.USER


def _describe(plugin: object) -> str:
    if isinstance(plugin, type(logging)):  # a module
        return plugin.__name__
    return type(plugin).__qualname__


def _check_unmarked_hooks(plugin: Any, name: str) -> None:
    """An ``on_*`` method without ``@hookimpl`` would never be called: refuse the plugin.

    With no method marked at all it is almost surely an HF-style callback missing its base
    class; beside marked ones, a hook left unmarked or a misspelled helper.
    """
    methods = [a for a in dir(plugin) if a.startswith("on_") and callable(attribute(plugin, a))]
    unmarked = [a for a in methods if not is_hookimpl(attribute(plugin, a))]
    if not unmarked:
        return
    if len(unmarked) == len(methods):
        hooks = [a for a in unmarked if a in EVENT_NAMES]
        if not hooks:
            return  # no hook-like method at all: pluggy reports an object with no hooks
        raise PluginError(
            f"Plugin {name!r} defines {', '.join(hooks)} but marks none with @hookimpl, so "
            "nothing would be called. Decorate them with `from hooktrain import hookimpl`, or "
            "subclass hooktrain.TrainerCallback for HF-style (args, state, control, **kwargs) "
            "methods."
        )
    described = []
    for method in unmarked:
        if method in EVENT_NAMES:
            described.append(f"{method} (a hook: mark it with @hookimpl)")
        else:
            close = difflib.get_close_matches(method, EVENT_NAMES, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            described.append(f"{method} ({hint}mark it with @hookimpl if it is a hook, or "
                             "rename it with a leading underscore if it is not)")
    raise PluginError(
        f"Plugin {name!r} marks some methods with @hookimpl but not these, which would never "
        f"be called: {'; '.join(described)}."
    )
