"""What ``hooktrain replay`` reads from a finished or stopped run, without importing torch.

A run directory holds ``checkpoint-N/`` directories (each with ``training_args.json``,
``trainer_state.json`` and ``model.safetensors``, docs/checkpoints.md) and, when the script
called ``trainer.save_state()`` after ``train()``, its own ``trainer_state.json`` with the whole
``log_history`` (the checkpoints' stop at their step, before the final train summary).

The files are found here by name and checked against the checkpoint's manifest (size and
sha256 of the files read), so reading a run costs neither torch nor the checkpoint loader.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hooktrain.errors import ConfigError
from hooktrain.trainer_state import TrainerState

logger = logging.getLogger("hooktrain")

ARGS_FILE = "training_args.json"
STATE_FILE = "trainer_state.json"
WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class ReplayedModel:
    """The ``model`` argument hooks receive during a replay: the run's final weights on disk.

    No training code runs and no model class is known, so this is not a ``torch.nn.Module``.
    It has what logging plugins use: ``config`` (the checkpoint's ``config.json``, or ``None``),
    :meth:`save_to` (the weights file copied, which :func:`hooktrain.plugin.save_model` uses)
    and :meth:`state_dict` (the tensors, loaded on first use: only then is torch imported).
    """

    def __init__(self, checkpoint_dir: Path) -> None:
        self.checkpoint_dir = checkpoint_dir
        self.weights = checkpoint_dir / WEIGHTS_FILE
        config_file = checkpoint_dir / "config.json"
        self.config: dict[str, Any] | None = (
            _read_json(config_file) if config_file.is_file() else None)
        self._tensors: dict[str, Any] | None = None

    def save_to(self, directory: Path) -> None:
        """Write the weights (and ``config.json``) into ``directory``, as ``save_model`` does."""
        import shutil

        shutil.copyfile(self.weights, directory / WEIGHTS_FILE)
        if self.config:
            (directory / "config.json").write_text(json.dumps(self.config, indent=2) + "\n")

    def state_dict(self) -> dict[str, Any]:
        """The weights as tensors (imports torch, once)."""
        if self._tensors is None:
            from safetensors.torch import load_file

            self._tensors = load_file(str(self.weights))
        return dict(self._tensors)

    def __repr__(self) -> str:
        return f"ReplayedModel({self.weights})"


@dataclass
class RunRecord:
    """One run directory, read: its arguments, its final state and its checkpoints."""

    output_dir: Path
    args: dict[str, Any]
    state: TrainerState
    state_path: Path
    #: intact checkpoints by step, oldest first
    checkpoints: dict[int, Path] = field(default_factory=dict)
    #: the checkpoint whose weights are the run's final model, or ``None``
    model_dir: Path | None = None

    @property
    def finished(self) -> bool:
        """Whether ``log_history`` ends with the train summary (``train_runtime``)."""
        history = self.state.log_history
        return bool(history) and "train_runtime" in history[-1]


def read_run(output_dir: str | Path) -> RunRecord:
    """Read a run directory; a :class:`ConfigError` naming the file and the fix otherwise."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise ConfigError(f"{output_dir} is not a directory: pass the output_dir of a run.")
    checkpoints = intact_checkpoints(output_dir)
    newest = checkpoints[max(checkpoints)] if checkpoints else None
    args_path = _first_file(output_dir / ARGS_FILE, newest and newest / ARGS_FILE)
    state_path = _first_file(output_dir / STATE_FILE, newest and newest / STATE_FILE)
    if args_path is None or state_path is None:
        missing = ARGS_FILE if args_path is None else STATE_FILE
        raise ConfigError(
            f"{output_dir} is not a run directory: no {missing} in it or in an intact "
            "checkpoint-N/ inside it. Pass the output_dir of a run that saved at least one "
            "checkpoint (save_strategy other than 'no').")
    args = _read_json(args_path)
    if not isinstance(args, dict):
        raise ConfigError(f"{args_path} is not a JSON object of training arguments.")
    state = _read_state(state_path)
    if newest is not None and state_path.parent == output_dir:
        saved = _read_state(newest / STATE_FILE)
        if saved.global_step > state.global_step:  # a save_state() from an earlier train()
            logger.warning("%s stops at step %d, %s at step %d: replaying the newer one.",
                           state_path, state.global_step, newest / STATE_FILE, saved.global_step)
            state, state_path = saved, newest / STATE_FILE
    if not state.log_history:
        raise ConfigError(f"{state_path} has an empty log_history: the run logged nothing "
                          "to replay.")
    best = state.best_model_checkpoint
    model_dir = newest
    if args.get("load_best_model_at_end") and best and Path(best).name in {
            p.name for p in checkpoints.values()}:
        model_dir = output_dir / Path(best).name  # train() ended by loading the best weights
    if model_dir is not None and not (model_dir / WEIGHTS_FILE).is_file():
        model_dir = None
    return RunRecord(output_dir, args, state, state_path, checkpoints, model_dir)


def intact_checkpoints(output_dir: Path) -> dict[int, Path]:
    """``checkpoint-N`` directories whose manifest matches the files a replay reads."""
    found = {}
    for path in output_dir.iterdir():
        match = _CHECKPOINT.match(path.name)
        if not match or not path.is_dir():
            continue
        reason = _damage(path)
        if reason is None:
            found[int(match.group(1))] = path
        else:
            logger.warning("Skipping checkpoint %s: %s.", path, reason)
    return dict(sorted(found.items()))


def _damage(checkpoint: Path) -> str | None:
    """Why ``checkpoint`` cannot be read, or ``None``: the JSON files are hashed, the weights
    only sized (hashing them would cost as much as reading them)."""
    manifest = checkpoint / MANIFEST_FILE
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{manifest} is missing or unreadable ({type(exc).__name__})"
    for name in (ARGS_FILE, STATE_FILE, WEIGHTS_FILE):
        entry, file = files.get(name), checkpoint / name
        if entry is None:
            continue
        if not file.is_file() or file.stat().st_size != entry["size"]:
            return f"{file} is missing or not the size its manifest says"
        if name != WEIGHTS_FILE and hashlib.sha256(file.read_bytes()).hexdigest() != entry[
                "sha256"]:
            return f"{file} does not match its sha256 in the manifest (corrupt)"
    return None


def _first_file(*candidates: Path | None) -> Path | None:
    return next((path for path in candidates if path is not None and path.is_file()), None)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); it is corrupt or truncated. "
                          "Replay another run, or restore the file.") from None
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc}") from None


def _read_state(path: Path) -> TrainerState:
    data = _read_json(path)
    history = data.get("log_history") if isinstance(data, dict) else None
    if not isinstance(history, list) or not all(isinstance(e, dict) for e in history):
        raise ConfigError(f"{path} is not a trainer_state.json: it needs a log_history list "
                          "of log entries.")
    known = {f.name for f in dataclasses.fields(TrainerState)}
    return TrainerState(**{k: v for k, v in data.items() if k in known})
