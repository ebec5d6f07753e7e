"""Flyte for hooktrain: the log history as a task deck, checkpoints synced to the task's checkpoint.

As HF's ``FlyteCallback``, inside a Flyte ``@task``: each checkpoint is copied to
``current_context().checkpoint`` (``sync_checkpoints``), and at train end ``state.log_history``
becomes the "Log History" deck (``save_log_history``) beside a "Training Arguments" deck. A
retried task resumes with ``trainer.train(resume_from_checkpoint=restore_checkpoint(output_dir))``.
Outside a task the plugin is off. Flyte has no run to open, resume or finish, so this is no
``TrackerPlugin``. See docs/integrations/flyte.md.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hooktrain.plugin import hookimpl, run_config

__all__ = ["FlytePlugin", "FlyteSettings", "restore_checkpoint"]

logger = logging.getLogger("hooktrain")

LOG_HISTORY_DECK = "Log History"
ARGUMENTS_DECK = "Training Arguments"
_said: set[str] = set()  # messages said once per process
#: Task checkpoints restore_checkpoint has handled -> the directory it returned (or None).
restored: weakref.WeakKeyDictionary[Any, Path | None] = weakref.WeakKeyDictionary()


@dataclass
class FlyteSettings:
    """The ``[plugins.flyte]`` table (HF's ``FlyteCallback`` arguments; HF reads no variables)."""

    save_log_history: bool = True  # the log history (and training arguments) as task decks
    sync_checkpoints: bool = True  # each checkpoint to current_context().checkpoint


def _say_once(key: str, message: str) -> None:
    if key not in _said:
        _said.add(key)
        logger.warning(message)


def task_params() -> Any:
    """The running Flyte task's ``ExecutionParameters`` (``current_context()``), else ``None``."""
    if "flytekit" not in sys.modules:  # a Flyte task runs inside flytekit: none is running
        return None
    from flytekit.core.context_manager import FlyteContextManager

    state = FlyteContextManager.current_context().execution_state
    if state is None or state.mode is None or state.user_space_params is None:
        return None
    return state.user_space_params


def task_checkpoint(params: Any) -> Any:
    try:
        return params.checkpoint
    except NotImplementedError:  # flytekit's "Checkpointing is not available" (old platforms)
        return None


def restore_checkpoint(output_dir: str | os.PathLike[str]) -> Path | None:
    """Put the previous attempt's checkpoint into ``output_dir`` as ``checkpoint-<step>``.

    In a retried task, before ``trainer.train``: downloads what the failed attempt synced and
    returns its directory, for ``resume_from_checkpoint=``; ``None`` when there is nothing to
    resume. An existing ``checkpoint-<step>`` is kept; a second call returns the same directory.
    The step is read by the documented layout (docs/checkpoints.md, as HF writes it).
    """
    params = task_params()
    checkpoint = task_checkpoint(params) if params is not None else None
    if checkpoint is None:
        logger.info("flyte: no Flyte task checkpoint here; nothing to restore.")
        return None
    if checkpoint in restored:
        found = restored[checkpoint]
        return found if found is None or found.is_dir() else None
    if not checkpoint.prev_exists():  # the first attempt
        restored[checkpoint] = None
        return None
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".flyte-restore-", dir=output_dir))
    try:
        from flytekit.exceptions.user import FlyteDataNotFoundException

        try:  # flytekit downloads once per task; task code may have called restore() itself
            source = Path(checkpoint.restore(staging) or staging)
        except FlyteDataNotFoundException:  # the previous attempt's location was never written
            source = staging
        if not any(source.iterdir()):
            logger.warning("flyte: the previous attempt synced no checkpoint; starting afresh.")
            restored[checkpoint] = None
            return None
        try:
            step = int(json.loads((source / "trainer_state.json").read_text())["global_step"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("flyte: the task's previous checkpoint is not a hooktrain checkpoint "
                           "(trainer_state.json: %s); starting afresh.", exc)
            restored[checkpoint] = None
            return None
        target = output_dir / f"checkpoint-{step}"
        if target.exists():
            logger.info("flyte: %s exists already; keeping it.", target)
        else:
            if source == staging:
                staging.rename(target)
            else:  # flytekit's own download, which the task code may still use
                shutil.copytree(source, target)
            logger.info("flyte: restored the previous attempt's checkpoint to %s.", target)
        restored[checkpoint] = target
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class FlytePlugin:
    """Syncs checkpoints to the Flyte task's checkpoint and saves the log history as a deck."""

    settings = FlyteSettings
    hooktrain_not_replayable = "it writes into the Flyte task that runs the training"

    def __init__(self, settings: FlyteSettings | None = None) -> None:
        self.config = settings or FlyteSettings()
        self._decks: dict[str, Any] = {}  # our Deck objects, replaced when written again
        self._training = False
        # Found once, on the task's thread (flytekit's context is per thread). Held in a namespace:
        # ExecutionParameters answers a missing attribute with AssertionError, breaking hasattr.
        params = task_params()
        self._task = None if params is None else SimpleNamespace(
            params=params, checkpoint=task_checkpoint(params))  # checkpoint: None if none given
        if self._task is None:
            _say_once("outside", "flyte: not inside a Flyte task (flytekit's current_context() "
                      "has no task checkpoint), so the flyte plugin is off for this run; it syncs "
                      "checkpoints and saves the Log History deck only inside an @task.")
            return
        if self._task.checkpoint is None and self.config.sync_checkpoints:
            _say_once("no-checkpoint", "flyte: this Flyte task has no checkpoint location "
                      "(the platform gives none); checkpoints are not synced.")
        if self.config.save_log_history and not params.enable_deck:
            _say_once("no-deck", "flyte: the task does not enable decks, so no Log History deck "
                      "is saved; use @task(enable_deck=True).")

    @property
    def in_task(self) -> bool:
        """Whether the Trainer was built inside a Flyte task (else every hook does nothing)."""
        return self._task is not None

    @hookimpl
    def on_load_checkpoint(self, checkpoint_dir: Path) -> None:
        # A resumed attempt's own checkpoint location is empty until its first save: fill it
        # now, so a retry of this attempt still finds the checkpoint it resumed from.
        self.on_save(checkpoint_dir)

    @hookimpl
    def on_train_begin(self, state: Any) -> None:
        self._training = True
        cp = self._task.checkpoint if self._task is not None else None
        if cp is not None and state.global_step == 0 and cp.prev_exists() and cp not in restored:
            logger.warning(
                "flyte: this task attempt has a previous attempt's checkpoint, but training "
                "starts from step 0. Resume from it with trainer.train(resume_from_checkpoint="
                "hooktrain_flyte.restore_checkpoint(args.output_dir)).")

    @hookimpl
    def on_log(self, args: Any, state: Any, model: Any) -> None:
        if not self._training:  # evaluate() before or after train(): the deck follows
            self._write_decks(args, state, model)

    @hookimpl
    def on_save(self, checkpoint_dir: Path) -> None:
        if self._task and self._task.checkpoint is not None and self.config.sync_checkpoints:
            logger.info("flyte: syncing %s to the task's checkpoint.", checkpoint_dir)
            self._task.checkpoint.save(Path(checkpoint_dir))

    @hookimpl
    def on_train_end(self, args: Any, state: Any, model: Any) -> None:
        self._write_decks(args, state, model)

    @hookimpl
    def on_exception(self, args: Any, state: Any, model: Any) -> None:
        self._write_decks(args, state, model)  # Flyte renders a failed task's decks too

    def _write_decks(self, args: Any, state: Any, model: Any) -> None:
        self._training = False  # training ended, or evaluate() logs outside it
        task = self._task
        if task is None or not (self.config.save_log_history and task.params.enable_deck):
            return
        import pandas as pd
        from flytekit import Deck
        from flytekitplugins.deck.renderer import TableRenderer

        history = state.log_history
        columns = list(dict.fromkeys(key for entry in history for key in entry))
        rows = [[_cell(entry[c]) if c in entry else "" for c in columns] for entry in history]
        arguments = [[key, _cell(value)] for key, value in run_config(args, model).items()]
        tables = {
            LOG_HISTORY_DECK: pd.DataFrame(rows, columns=columns, dtype=object),
            ARGUMENTS_DECK: pd.DataFrame(arguments, columns=["argument", "value"], dtype=object),
        }
        decks = task.params.decks  # the task's list, rendered when the task ends
        for name, frame in tables.items():
            if (old := self._decks.get(name)) is not None and old in decks:
                decks.remove(old)
            self._decks[name] = Deck(name, TableRenderer().to_html(frame), auto_add_to_deck=False)
            decks.append(self._decks[name])


def _cell(value: Any) -> Any:
    """Floats in full (``repr``; pandas would round to 6 digits), everything else as it is."""
    return repr(value) if isinstance(value, float) else value
