"""The Flyte task the Trainer runs in, and restoring a retried task's previous checkpoint.

:func:`restore_checkpoint` reads a hooktrain checkpoint by its documented on-disk layout
(docs/checkpoints.md: ``<output_dir>/checkpoint-<global_step>/`` with HF's
``trainer_state.json``), the same layout HF's Trainer writes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import weakref
from pathlib import Path
from typing import Any

logger = logging.getLogger("hooktrain")

#: A checkpoint's directory is ``<CHECKPOINT_PREFIX>-<global_step>`` (docs/checkpoints.md).
CHECKPOINT_PREFIX = "checkpoint"
#: The file of a checkpoint that holds ``global_step`` (HF's ``TrainerState``).
TRAINER_STATE = "trainer_state.json"
#: Task checkpoints restore_checkpoint has handled -> the directory it returned (or None).
restored: weakref.WeakKeyDictionary[Any, Path | None] = weakref.WeakKeyDictionary()


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

    Call it in the task before ``trainer.train``: in a retried task it downloads the checkpoint
    the failed attempt synced (``current_context().checkpoint.restore()``) and returns its
    directory, for ``resume_from_checkpoint=`` (``True`` finds it too). Returns ``None`` when
    there is nothing to resume: the first attempt, a previous attempt that saved no checkpoint,
    or no Flyte task at all. An existing ``checkpoint-<step>`` of the same step is kept as it is.
    Calling it again in the same task returns the same directory.
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
            step = int(json.loads((source / TRAINER_STATE).read_text())["global_step"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("flyte: the task's previous checkpoint is not a hooktrain checkpoint "
                           "(%s: %s); starting afresh.", TRAINER_STATE, exc)
            restored[checkpoint] = None
            return None
        target = output_dir / f"{CHECKPOINT_PREFIX}-{step}"
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


class Task:
    """The Flyte task a Trainer was built in: its ``ExecutionParameters`` and checkpoint.

    Held in this object rather than as plugin attributes: ``ExecutionParameters`` answers any
    attribute it lacks with an ``AssertionError``, which breaks ``hasattr`` probes of the
    plugin's attributes.
    """

    __slots__ = ("params", "checkpoint")

    def __init__(self, params: Any) -> None:
        self.params = params
        self.checkpoint = task_checkpoint(params)  # None when the platform gives none
