"""The checkpoint format: written atomically, checked before use, loaded without unpickling.

Layout of ``output_dir/checkpoint-<global_step>/`` (HF's names where HF has the file)::

    model.safetensors       model weights (safetensors)
    optimizer.pt            optimizer state      (torch.save; loaded with weights_only=True)
    scheduler.pt            scheduler state      (same)
    rng_state.pth           python, numpy, torch and CUDA RNG states (same; rank r > 0:
                            rng_state_<r>.pth)
    trainer_state.json      TrainerState, HF's format, plugin states in stateful_callbacks
    training_args.json      the TrainingArguments as JSON (HF pickles them; hooktrain never does)
    hooktrain_state.json    the loop's running loss sums, so resumed logs match exactly
    sharded/                under FSDP, in place of model.safetensors and optimizer.pt: a
                            Distributed Checkpoint, one file per rank plus .metadata
    manifest.json           written last: every other file with its size and sha256

A checkpoint is written into a hidden temporary directory, every file and the directory are
fsynced, then it is renamed into place: a crash leaves either the whole checkpoint or none. A
directory whose manifest is missing or disagrees with its files is *incomplete*.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import random
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hooktrain.errors import CheckpointError

logger = logging.getLogger("hooktrain")

PREFIX = "checkpoint"
MANIFEST = "manifest.json"
FORMAT = "hooktrain-checkpoint/1"
WEIGHTS = "model.safetensors"
OPTIMIZER = "optimizer.pt"
SCHEDULER = "scheduler.pt"
TRAINER_STATE = "trainer_state.json"
LOOP_STATE = "hooktrain_state.json"
ARGS = "training_args.json"
_CHECKPOINT_RE = re.compile(rf"^{PREFIX}-(\d+)$")


def rng_file(rank: int) -> str:
    return "rng_state.pth" if rank == 0 else f"rng_state_{rank}.pth"


# ---- writing -------------------------------------------------------------------------------


def new_staging(output_dir: str | Path, global_step: int) -> Path:
    """A fresh hidden directory to write ``checkpoint-<global_step>`` into (this process's)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = output_dir / f".tmp-{PREFIX}-{global_step}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    return staging


def write_checkpoint(
    output_dir: str | Path, global_step: int, writers: dict[str, Callable[[Path], None]],
    before: Callable[[Path], None] | None = None, staging: Path | None = None,
) -> Path:
    """Write ``checkpoint-<global_step>`` atomically; ``writers`` maps file name -> writer.

    ``before(directory)`` may write files of its own first (a ``save_model`` override); the
    writers' files replace any of the same name, and every file is in the manifest. A
    ``staging`` directory from :func:`new_staging` may already hold files (every rank's shard
    under FSDP); they are in the manifest too.
    """
    output_dir = Path(output_dir)
    final = output_dir / f"{PREFIX}-{global_step}"
    if staging is None:
        staging = new_staging(output_dir, global_step)
    if before is not None:
        before(staging)
    for name, write in writers.items():
        write(staging / name)
    files = {}
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        _fsync_file(path)
        files[path.relative_to(staging).as_posix()] = {"size": path.stat().st_size,
                                                       "sha256": _sha256(path)}
    manifest = staging / MANIFEST
    manifest.write_text(json.dumps({"format": FORMAT, "files": files}, indent=2) + "\n")
    _fsync_file(manifest)
    _fsync_dir(staging)
    if final.exists():  # saving the same step again (a resumed run that re-saves): replace it
        _remove(final)
    os.replace(staging, final)
    _fsync_dir(output_dir)
    return final


def save_json(data: Any) -> Callable[[Path], None]:
    return lambda path: path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_torch(obj: Any) -> Callable[[Path], None]:
    return lambda path: torch.save(obj, path)


def save_weights(model: torch.nn.Module) -> Callable[[Path], None]:
    from safetensors.torch import save_model

    return lambda path: save_model(model, str(path))


def collect_rng_state() -> dict[str, Any]:
    """Every RNG the loop touches, as plain data and tensors (no pickled objects)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
        "cpu": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- finding and checking ------------------------------------------------------------------


def checkpoint_step(path: Path) -> int | None:
    match = _CHECKPOINT_RE.match(path.name)
    return int(match.group(1)) if match else None


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Every ``checkpoint-N`` directory, oldest step first (complete or not)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=lambda p: checkpoint_step(p))  # type: ignore[arg-type,return-value]


def incomplete_reason(path: Path, *, check_hashes: bool = False) -> str | None:
    """Why ``path`` is not a complete checkpoint, or ``None`` when it is."""
    manifest = path / MANIFEST
    if not manifest.is_file():
        return (f"{manifest} is missing (the save was interrupted, or this is not a hooktrain "
                "checkpoint)")
    try:
        data = json.loads(manifest.read_text())
        files = data["files"]
    except (ValueError, KeyError, TypeError) as exc:
        return f"{manifest} is unreadable ({exc})"
    if data.get("format") != FORMAT:
        return f"{manifest} has format {data.get('format')!r}, expected {FORMAT!r}"
    for name, entry in files.items():
        file = path / name
        if not file.is_file():
            return f"{file} is missing"
        size = file.stat().st_size
        if size != entry["size"]:
            return f"{file} has {size} bytes, the manifest says {entry['size']} (truncated?)"
        if check_hashes and _sha256(file) != entry["sha256"]:
            return f"{file} does not match its sha256 in the manifest (corrupt)"
    return None


def newest_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest intact checkpoint; each newer incomplete or corrupt one is skipped, warned."""
    for path in reversed(list_checkpoints(output_dir)):
        reason = incomplete_reason(path, check_hashes=True)
        if reason is None:
            return path
        logger.warning("Skipping unusable checkpoint %s: %s.", path, reason)
    return None


def verify_checkpoint(path: str | Path) -> Path:
    """Raise :class:`CheckpointError` naming the bad file unless ``path`` is complete and intact."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"Checkpoint {path} does not exist or is not a directory.")
    reason = incomplete_reason(path, check_hashes=True)
    if reason is not None:
        raise CheckpointError(
            f"Checkpoint {path} cannot be used: {reason}. Pass another checkpoint, or "
            "resume_from_checkpoint=True to take the newest complete one."
        )
    return path


# ---- reading -------------------------------------------------------------------------------


def load_torch(path: Path, map_location: Any = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``: tensors and plain data only, never objects."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc):  # torch refused an object: do not repeat its hint
            raise CheckpointError(
                f"{path} is refused: it holds Python objects other than tensors and plain data, "
                "and loading them could run code. hooktrain loads checkpoints with "
                "weights_only=True only; take the checkpoint from a source you trust, or resume "
                "from another one."
            ) from None
        raise CheckpointError(f"Cannot load {path}: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable
        raise CheckpointError(f"Cannot load {path}: {type(exc).__name__}: {exc}") from exc


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"Cannot read {path}: {exc}") from exc


def load_weights(model: torch.nn.Module, checkpoint_dir: Path) -> None:
    from safetensors.torch import load_model

    path = checkpoint_dir / WEIGHTS
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"Cannot load model weights from {path}: {exc}") from exc
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not fit this model: missing keys {sorted(missing)}, unexpected keys "
            f"{sorted(unexpected)}. Was it saved from a different model?"
        )


# ---- rotation ------------------------------------------------------------------------------


def rotate_checkpoints(output_dir: str | Path, limit: int | None, keep: Iterable[Path]) -> None:
    """Delete the oldest complete checkpoints beyond ``limit``, never one in ``keep``.

    Incomplete directories are left for the user to inspect. A directory is renamed out of the
    ``checkpoint-*`` pattern before it is deleted, so a crash never leaves a half-deleted one
    that looks like a checkpoint.
    """
    if not limit or limit <= 0:
        return
    keep_set = {Path(k).resolve() for k in keep}
    complete = [p for p in list_checkpoints(output_dir) if incomplete_reason(p) is None]
    excess = len(complete) - max(limit, len(keep_set & {p.resolve() for p in complete}))
    for path in complete:
        if excess <= 0:
            break
        if path.resolve() in keep_set:
            continue
        _remove(path)
        excess -= 1


def remove_stale_temporaries(output_dir: str | Path) -> None:
    """Delete what crashed saves and rotations left behind (their process is gone)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return
    for path in output_dir.iterdir():
        if not (path.name.startswith(f".tmp-{PREFIX}-") or path.name.startswith(".deleting-")):
            continue
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and _process_alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a leftover of an earlier process that had this pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    doomed = path.with_name(f".deleting-{path.name}-{os.getpid()}")
    os.replace(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


# ---- helpers -------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
