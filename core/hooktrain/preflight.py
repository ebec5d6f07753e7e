"""Checks that run in ``Trainer(...)``, before any step: misconfiguration costs no training time.

Each failure is one :class:`~hooktrain.errors.ConfigError` naming the field and the fix.
:func:`check_argument_values` runs in ``TrainingArguments`` (values alone: a negative learning
rate); :func:`check_trainer_setup` in ``Trainer`` (the data sets and the file system). Importing
this module does not import torch.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

from hooktrain.errors import ConfigError


def check_argument_values(args: Any) -> None:
    """Numbers HF accepts and then fails on, or trains nonsense with."""
    if not math.isfinite(args.learning_rate) or args.learning_rate < 0:
        raise ConfigError(f"learning_rate must be a finite number >= 0, got {args.learning_rate}.")
    if not 0 <= args.warmup_ratio <= 1:
        raise ConfigError(f"warmup_ratio must be in [0, 1] (a fraction of the training steps), "
                          f"got {args.warmup_ratio}.")
    if args.weight_decay < 0:
        raise ConfigError(f"weight_decay must be >= 0, got {args.weight_decay}.")
    if args.max_steps <= 0 and args.num_train_epochs <= 0:
        raise ConfigError(f"num_train_epochs is {args.num_train_epochs} and max_steps is not set: "
                          "nothing would train. Set num_train_epochs > 0 or max_steps > 0.")
    if args.dataloader_num_workers < 0:
        raise ConfigError("dataloader_num_workers must be >= 0 (0 loads in the main process), "
                          f"got {args.dataloader_num_workers}.")


def check_trainer_setup(args: Any, eval_dataset: Any) -> None:
    """What ``Trainer(...)`` can know before training: evaluation data and the output folder."""
    if eval_dataset is None and (args.eval_strategy != "no" or args.load_best_model_at_end):
        field = (f"eval_strategy={args.eval_strategy!r}" if args.eval_strategy != "no"
                 else "load_best_model_at_end=True")
        raise ConfigError(f"{field} needs an eval_dataset: pass Trainer(eval_dataset=...), or set "
                          "eval_strategy='no'.")
    if args.should_save:
        check_output_dir(Path(args.output_dir), args.overwrite_output_dir)


def check_output_dir(output_dir: Path, overwrite: bool | None) -> None:
    """``output_dir`` must be a writable folder (or creatable), holding no checkpoint of others."""
    from hooktrain.checkpoint import MANIFEST, PREFIX  # torch: not at import (args imports us)

    existing = output_dir
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == output_dir else f"is under a file, {existing}"
        raise ConfigError(f"output_dir {output_dir} {where}: choose a folder for checkpoints "
                          "and logs.")
    if existing.is_dir() and not _writable(existing):
        raise ConfigError(f"output_dir {output_dir} is not writable ({existing} refuses new "
                          "files): choose another output_dir, or fix its permissions.")
    if output_dir.is_dir() and not overwrite:
        foreign = sorted(p.name for p in output_dir.glob(f"{PREFIX}-*")
                         if p.is_dir() and not (p / MANIFEST).is_file())
        if foreign:
            raise ConfigError(
                f"output_dir {output_dir} holds {', '.join(foreign)}, which hooktrain did not "
                f"write (no {MANIFEST}); saving the same step would replace it. Move it away, "
                "choose another output_dir, or set overwrite_output_dir=True to allow it."
            )


def _writable(folder: Path) -> bool:
    try:
        handle, name = tempfile.mkstemp(prefix=".hooktrain-write-check-", dir=folder)
    except OSError:
        return False
    os.close(handle)
    os.unlink(name)
    return True
