"""Flyte for hooktrain: the log history as a task deck, checkpoints synced to the task's checkpoint.

What HF's ``FlyteCallback`` promises, inside a Flyte ``@task``: every checkpoint the Trainer saves
is copied to ``current_context().checkpoint`` (``sync_checkpoints``), so a retried task can
resume from it, and at the end of training ``state.log_history`` becomes the "Log History" deck
(``save_log_history``), next to a "Training Arguments" deck. A retried task gets the previous
attempt's checkpoint back with :func:`restore_checkpoint`, before ``trainer.train``::

    trainer.train(resume_from_checkpoint=restore_checkpoint(args.output_dir))

Outside a Flyte task (no ``current_context().checkpoint``) the plugin switches itself off with
one message per process. flytekit is never imported for that check: when nothing has imported it
yet, no Flyte task is running. Finding the task and :func:`restore_checkpoint` are in
:mod:`hooktrain_flyte.task`; this module is the plugin and its decks.

Flyte has no run to open, resume or finish (no run id, no status but the task's own), so this is
no ``TrackerPlugin``: it reports to the task it was built in. See docs/integrations/flyte.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hooktrain.plugin import hookimpl, run_config

from hooktrain_flyte.task import Task, restore_checkpoint, restored, task_params

__all__ = ["FlytePlugin", "FlyteSettings", "restore_checkpoint"]

logger = logging.getLogger("hooktrain")

LOG_HISTORY_DECK = "Log History"
ARGUMENTS_DECK = "Training Arguments"
_said: set[str] = set()  # messages said once per process


@dataclass
class FlyteSettings:
    """The ``[plugins.flyte]`` table (HF's ``FlyteCallback`` arguments; HF reads no variables)."""

    #: Save ``state.log_history`` (and the training arguments) as decks of the task.
    save_log_history: bool = True
    #: Copy each checkpoint to the task's checkpoint (``current_context().checkpoint.save``).
    sync_checkpoints: bool = True


def _say_once(key: str, message: str, *args: Any) -> None:
    if key not in _said:
        _said.add(key)
        logger.warning(message, *args)


class FlytePlugin:
    """Syncs checkpoints to the Flyte task's checkpoint and saves the log history as a deck."""

    settings = FlyteSettings

    def __init__(self, settings: FlyteSettings | None = None) -> None:
        self.config = settings or FlyteSettings()
        self._decks: dict[str, Any] = {}  # our Deck objects, replaced when written again
        self._training = False
        # Found once, here: the Trainer is built inside the task, on the task's thread (flytekit
        # keeps its context per thread), and the hooks use what was found even off that thread.
        params = task_params()
        self._task = Task(params) if params is not None else None
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

    # ---- hooks ---------------------------------------------------------------------------

    @hookimpl
    def on_load_checkpoint(self, checkpoint_dir: Path) -> None:
        # A resumed attempt's own checkpoint location is empty until its first save: fill it
        # now, so a retry of this attempt still finds the checkpoint it resumed from.
        self._sync(checkpoint_dir)

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
        self._sync(checkpoint_dir)

    @hookimpl
    def on_train_end(self, args: Any, state: Any, model: Any) -> None:
        self._training = False
        self._write_decks(args, state, model)

    @hookimpl
    def on_exception(self, args: Any, state: Any, model: Any) -> None:
        # Flyte renders the decks of a failed task too: the history up to the failure.
        self._training = False
        self._write_decks(args, state, model)

    # ---- Flyte ---------------------------------------------------------------------------

    def _sync(self, checkpoint_dir: Path) -> None:
        if self._task and self._task.checkpoint is not None and self.config.sync_checkpoints:
            logger.info("flyte: syncing %s to the task's checkpoint.", checkpoint_dir)
            self._task.checkpoint.save(Path(checkpoint_dir))

    def _write_decks(self, args: Any, state: Any, model: Any) -> None:
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
            old = self._decks.get(name)
            if old is not None and old in decks:
                decks.remove(old)
            self._decks[name] = Deck(name, TableRenderer().to_html(frame), auto_add_to_deck=False)
            decks.append(self._decks[name])


def _cell(value: Any) -> Any:
    """Floats in full (``repr``; pandas would round to 6 digits), everything else as it is."""
    return repr(value) if isinstance(value, float) else value
