"""``hooktrain replay``: a finished or stopped run fed through plugins installed afterwards.

The run's recorded arguments and ``log_history`` (:mod:`hooktrain.replay_input`) go through the
selected entry-point plugins' hooks in the order the live run fired them, so each tracker
records the run as if it had been installed during training (docs/replay.md):

* ``on_init_end``, then ``on_train_begin`` at step 0 (or where an earlier replay stopped);
* for each ``log_history`` entry, with ``state.global_step`` and ``state.epoch`` set to the
  entry's ``step`` and ``epoch``: ``on_log(logs)``; an evaluation's entry (it has an
  ``<prefix>_runtime`` other than ``train_runtime``) then ``on_evaluate(metrics)``, as
  ``evaluate()`` does;
* ``on_save(checkpoint_dir)`` for each intact checkpoint still on disk, where the live run saved
  it: after the entries of its step, before the train summary;
* ``on_train_end`` last; its ``model`` (every hook's) is a :class:`ReplayedModel` of the final
  weights, so plugins that upload the model get it without training code or torch.

No ``on_step_*``, ``on_epoch_*``, ``on_pre_log`` or ``on_prediction_step`` fires: the replay has
no steps and no batches. A plugin whose class sets ``hooktrain_not_replayable = "reason"`` (it
measures the live machine) is skipped with one line. What each plugin recorded (its run id, how
many entries) is kept in ``OUTPUT_DIR/replay_state.json``: replaying again continues that run
with the entries added since (a stopped run that went on), and refuses to send the same entries
twice unless ``new_run`` is given. A plugin with no run id (TensorBoard's event files) cannot
hold two copies apart, so a second copy is refused while the first one's files exist.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hooktrain.args import TrainingArguments, normalise_report_to
from hooktrain.errors import ConfigError
from hooktrain.plugin_host import HookDispatcher, HooktrainPluginManager
from hooktrain.replay_input import ReplayedModel, RunRecord, read_run
from hooktrain.trainer_state import TrainerState

__all__ = ["REPLAY_STATE", "ReplayResult", "ReplayedModel", "replay"]

logger = logging.getLogger("hooktrain")

REPLAY_STATE = "replay_state.json"
NOT_REPLAYABLE = "hooktrain_not_replayable"  # the class attribute a plugin refuses with


@dataclass
class ReplayResult:
    """What a replay did: the plugins it fed, those it skipped, and those that failed."""

    replayed: dict[str, str] = field(default_factory=dict)  # name -> "run <id>" or ""
    skipped: dict[str, str] = field(default_factory=dict)  # name -> reason
    failed: list[str] = field(default_factory=list)  # "<plugin>: <error> (in <hook>)"
    entries: int = 0
    first_step: int = 0
    last_step: int = 0


def replay(output_dir: str | Path, report_to: str | list[str], *, new_run: bool = False,
           plugin_settings: dict[str, dict[str, Any]] | None = None,
           say: Callable[[str], None] = print) -> ReplayResult:
    """Feed the run in ``output_dir`` through the plugins ``report_to`` selects."""
    record = read_run(output_dir)
    selection = normalise_report_to(report_to)
    if selection == "none":
        raise ConfigError("replay needs plugins to send the run to: --report-to NAME[,NAME] "
                          "or all.")
    args = _arguments(record, selection, plugin_settings or {})
    state = copy.deepcopy(record.state)
    history, state.log_history = state.log_history, []
    model = ReplayedModel(record.model_dir) if record.model_dir is not None else None

    manager = HooktrainPluginManager()
    hooks = HookDispatcher(manager, args.plugin_errors, args.plugin_timeout)
    hooks.set_context(args=args, state=state, model=model, processing_class=None,
                      optimizer=None, lr_scheduler=None)
    manager.load_entrypoint_plugins(args.report_to, args.disable_plugins, args.plugin_settings)
    result = ReplayResult()
    for plugin_record in manager.records():
        reason = getattr(manager.get_plugin(plugin_record.name), NOT_REPLAYABLE, None)
        if reason:
            manager.unregister_plugin(plugin_record)
            result.skipped[plugin_record.name] = str(reason)
            say(f"skipped {plugin_record.name}: it cannot be replayed ({reason})")
    plugins = {r.name: manager.get_plugin(r.name) for r in manager.records()}
    if not plugins:
        raise ConfigError("No plugin left to replay into"
                          + (" (every one selected was skipped)." if result.skipped else
                             ": install one (pip install hooktrain-mlflow) or name it in "
                             "--report-to."))
    stored = _load_replay_state(record.output_dir)
    start = _starting_entry(stored, plugins, history, new_run, record.output_dir)

    started = time.time()
    faults_before = len(manager.faults)
    state.global_step, state.epoch = 0, 0  # as a Trainer's fresh state
    hooks.on_init_end()
    if start:  # continuing: where the earlier replay stopped, as a resumed train() would be
        state.log_history = list(history[:start])
        _move_to(state, history[start - 1])
    hooks.on_train_begin()
    last_sent = history[start - 1]["step"] if start else -1
    pending = [(step, path) for step, path in record.checkpoints.items() if step > last_sent]
    for entry in history[start:]:
        summary = "train_runtime" in entry
        pending = _save_before(hooks, state, pending, entry.get("step", 0), summary)
        _move_to(state, entry)
        logs = {k: v for k, v in entry.items() if k != "step"}
        state.log_history.append(dict(entry))
        hooks.on_log(logs)
        if _is_evaluation(entry):
            hooks.on_evaluate(logs)
    _save_before(hooks, state, pending, record.state.global_step, True)
    state.global_step, state.epoch = record.state.global_step, record.state.epoch
    hooks.on_train_end()
    hooks.drain()

    faults = manager.faults[faults_before:]
    result.failed = [f"{f.plugin}: {f.error} (in {f.hook})" for f in faults]
    failed = {r.name for r in manager.records() if r.disabled_reason is not None}
    for name, plugin in plugins.items():
        if name in failed:
            continue
        entry_state = _plugin_state(plugin, started)
        entry_state.update(entries=len(history), last_step=history[-1].get("step", 0))
        stored[name] = entry_state
        run_id = entry_state.get("run_id")
        result.replayed[name] = f"run {run_id}" if run_id else ""
    _save_replay_state(record.output_dir, stored)
    result.entries = len(history) - start
    result.first_step = history[start].get("step", 0) if start < len(history) else 0
    result.last_step = history[-1].get("step", 0)
    return result


# ---- the run's arguments and state -------------------------------------------------------------


def _arguments(record: RunRecord, selection: str | list[str],
               settings: dict[str, dict[str, Any]]) -> TrainingArguments:
    """The recorded arguments, with the replay's plugins as ``report_to`` (what a tracker
    installed during training would have seen) and their settings."""
    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    values = {k: v for k, v in record.args.items() if k in known}
    names = None if selection == "all" else set(selection)
    recorded = values.get("plugin_settings") or {}
    tables = {name: dict(table) for name, table in recorded.items()
              if names is None or name in names}
    for name, table in settings.items():
        tables.setdefault(name, {}).update(table)
    values.update(report_to=selection, plugin_settings=tables)
    try:
        return TrainingArguments(**values)
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"The training arguments recorded in {record.output_dir} cannot be "
                          f"rebuilt by this hooktrain version: {exc}") from None


def _move_to(state: TrainerState, entry: dict[str, Any]) -> None:
    state.global_step = int(entry.get("step", state.global_step))
    if entry.get("epoch") is not None:
        state.epoch = entry["epoch"]


def _is_evaluation(entry: dict[str, Any]) -> bool:
    """An ``evaluate()`` logged it: its speed metrics name a prefix other than ``train``."""
    return any(key.endswith("_runtime") and key != "train_runtime" for key in entry)


def _save_before(hooks: HookDispatcher, state: TrainerState, pending: list[tuple[int, Path]],
                 step: int, inclusive: bool) -> list[tuple[int, Path]]:
    """``on_save`` for each checkpoint the live run saved before the entry at ``step``."""
    while pending and (pending[0][0] < step or (inclusive and pending[0][0] <= step)):
        saved_step, path = pending.pop(0)
        state.global_step = saved_step
        hooks.on_save(path)
    return pending


# ---- what earlier replays recorded ---------------------------------------------------------------


def _load_replay_state(output_dir: Path) -> dict[str, Any]:
    path = output_dir / REPLAY_STATE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}). It records what earlier replays "
                          "sent; delete it only if those runs were deleted too.") from None
    return data.get("plugins", {}) if isinstance(data, dict) else {}


def _save_replay_state(output_dir: Path, plugins: dict[str, Any]) -> None:
    path = output_dir / REPLAY_STATE
    path.write_text(json.dumps({"plugins": plugins}, indent=2, sort_keys=True) + "\n",
                    encoding="utf-8")


def _starting_entry(stored: dict[str, Any], plugins: dict[str, Any],
                    history: list[dict[str, Any]], new_run: bool, output_dir: Path) -> int:
    """The first log entry to send: 0, or where every plugin's earlier replay stopped (its run
    is then continued). Refuses to send an entry twice into one run."""
    starts = {}
    for name, plugin in plugins.items():
        earlier = stored.get(name)
        if earlier is None:
            starts[name] = 0
            continue
        left = [f for f in earlier.get("files", []) if Path(f).exists()]
        if new_run and earlier.get("state") is None and left:
            raise ConfigError(
                f"{name} was already replayed from {output_dir} and keeps no run id, so a second "
                f"copy would show every value twice in the same place. Delete the first copy "
                f"({', '.join(left)}), then replay again.")
        if new_run:
            starts[name] = 0
            continue
        sent = int(earlier.get("entries", 0))
        if sent >= len(history):
            where = f"run {earlier['run_id']}" if earlier.get("run_id") else (
                ", ".join(left) or "its earlier output")
            raise ConfigError(
                f"{name} already holds this run ({where}: {sent} log entries, recorded in "
                f"{output_dir / REPLAY_STATE}). Replaying again would record every value twice; "
                "pass --new-run to record a second copy.")
        starts[name] = sent
        if earlier.get("state") is not None and callable(getattr(plugin, "load_state_dict", None)):
            plugin.load_state_dict(earlier["state"])  # a TrackerPlugin reopens its run
    if len(set(starts.values())) > 1:
        raise ConfigError(
            "These plugins have been sent different parts of this run before ("
            + ", ".join(f"{n}: {s} entries" for n, s in starts.items())
            + "): replay them one at a time (--report-to NAME).")
    return next(iter(starts.values()), 0)


def _plugin_state(plugin: Any, started: float) -> dict[str, Any]:
    """What the next replay needs: the plugin's checkpoint state (a tracker's run id) and, for
    a plugin that writes into a directory (``log_dir``), the files this replay wrote there."""
    saver = getattr(plugin, "state_dict", None)
    state = saver() if callable(saver) else None
    record: dict[str, Any] = {"state": state, "run_id": getattr(plugin, "run_id", None)}
    log_dir = getattr(plugin, "log_dir", None)
    if isinstance(log_dir, (str, Path)) and Path(log_dir).is_dir():
        record["files"] = sorted(str(p.resolve()) for p in Path(log_dir).iterdir()
                                 if p.is_file() and p.stat().st_mtime >= started - 1)
    return record


def settings_from_command_line(config: str | None, overrides: list[str]
                               ) -> dict[str, dict[str, Any]]:
    """Plugin settings for ``hooktrain replay``: a config file's ``[plugins.NAME]`` tables, then
    ``--plugins.NAME.KEY VALUE`` flags (the only overrides a replay takes)."""
    import tomllib

    from hooktrain.config import parse_overrides

    tables: dict[str, dict[str, Any]] = {}
    if config is not None:
        try:
            with open(config, "rb") as handle:
                data = tomllib.load(handle)
        except OSError as exc:
            raise ConfigError(f"Cannot read config file {config}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config} is not valid TOML: {exc}") from None
        for name, table in data.get("plugins", {}).items():
            tables[name] = dict(table)
    for dotted, value in parse_overrides(overrides):
        parts = dotted.split(".")
        if len(parts) != 3 or parts[0] != "plugins":
            raise ConfigError(f"replay takes only plugin settings (--plugins.NAME.KEY VALUE), "
                              f"not --{dotted}: the run's training arguments are recorded.")
        tables.setdefault(parts[1], {})[parts[2]] = value
    return tables
