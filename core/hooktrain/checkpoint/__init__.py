"""Checkpoints: the on-disk format (:mod:`.format`) and the :class:`Checkpointer` that decides
when to save, what to resume from and which checkpoint is the best (:mod:`.checkpointer`).

See docs/checkpoints.md for the layout of a checkpoint directory.
"""

from hooktrain.checkpoint.checkpointer import Checkpointer
from hooktrain.checkpoint.format import (
    ARGS,
    FORMAT,
    LOOP_STATE,
    MANIFEST,
    OPTIMIZER,
    PREFIX,
    SCHEDULER,
    TRAINER_STATE,
    WEIGHTS,
    checkpoint_step,
    collect_rng_state,
    incomplete_reason,
    list_checkpoints,
    load_json,
    load_torch,
    load_weights,
    newest_complete_checkpoint,
    remove_stale_temporaries,
    restore_rng_state,
    rng_file,
    rotate_checkpoints,
    save_json,
    save_torch,
    save_weights,
    verify_checkpoint,
    write_checkpoint,
)

__all__ = [
    "ARGS", "FORMAT", "LOOP_STATE", "MANIFEST", "OPTIMIZER", "PREFIX", "SCHEDULER",
    "TRAINER_STATE", "WEIGHTS", "Checkpointer", "checkpoint_step", "collect_rng_state",
    "incomplete_reason", "list_checkpoints", "load_json", "load_torch", "load_weights",
    "newest_complete_checkpoint", "remove_stale_temporaries", "restore_rng_state", "rng_file",
    "rotate_checkpoints", "save_json", "save_torch", "save_weights", "verify_checkpoint",
    "write_checkpoint",
]
