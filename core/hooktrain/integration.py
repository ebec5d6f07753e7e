"""Helpers every logging integration shares: HF's key rewrite, numeric filtering, run config.

Integration plugins (``plugins/<name>/``) import these instead of copying them, so every backend
names metrics the same way. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import numbers
from pathlib import Path
from typing import Any

from hooktrain.errors import PluginError
from hooktrain.fsdp import is_sharded

logger = logging.getLogger("hooktrain")

#: Final-log values that backends with a run summary store there (HF's list).
SUMMARY_KEYS = frozenset({
    "train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss",
    "total_flos",
})


def rewrite_key(key: str) -> str:
    """HF's naming: ``eval_x`` -> ``eval/x``, ``test_x`` -> ``test/x``, anything else
    ``train/x``."""
    for prefix in ("eval_", "test_"):
        if key.startswith(prefix):
            return f"{prefix[:-1]}/{key[len(prefix):]}"
    return f"train/{key}"


class NumericFilter:
    """Keeps the numeric values of a ``logs`` dict; warns once per key about the others.

    Booleans are not numbers here. One instance per plugin remembers which keys it has already
    warned about, so a string logged every step warns once, not every step.
    """

    def __init__(self, plugin_name: str) -> None:
        self.plugin_name = plugin_name
        self._warned: set[str] = set()

    def __call__(self, logs: dict[str, Any]) -> dict[str, float]:
        numeric = {}
        for key, value in logs.items():
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                numeric[key] = float(value)
            elif key not in self._warned:
                self._warned.add(key)
                logger.warning(
                    "%s: not logging %r: its value %r is a %s, not a number (warned once).",
                    self.plugin_name, key, value, type(value).__name__,
                )
        return numeric


def run_config(args: Any, model: Any) -> dict[str, Any]:
    """The training arguments plus ``model_config/...`` entries when the model has a config."""
    config = dict(args.to_sanitized_dict())
    for key, value in model_config(model).items():
        config[f"model_config/{key}"] = value
    return config


def model_config(model: Any) -> dict[str, Any]:
    """The model's configuration as plain values: HF's ``config.to_dict()``, a dataclass or dict."""
    config = getattr(model, "config", None)
    if config is None:
        return {}
    if hasattr(config, "to_dict"):
        data = config.to_dict()
    elif dataclasses.is_dataclass(config) and not isinstance(config, type):
        data = dataclasses.asdict(config)
    elif isinstance(config, dict):
        data = dict(config)
    else:
        return {}
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in data.items()}


def default_run_dir(args: Any) -> Path:
    """``<output_dir>/runs/<run name>``: the last part of ``run_name`` (output_dir by default)."""
    name = Path(str(args.run_name or args.output_dir)).name or "run"
    return Path(args.output_dir) / "runs" / name


def save_model(model: Any, directory: str | Path, weights: dict[str, Any] | None = None) -> Path:
    """Write ``model`` for upload: ``model.safetensors`` plus ``config.json`` when it has one.

    This is the "save the model to a directory" service integrations use for a final-model
    artifact, instead of building a second Trainer as HF's W&B and DVCLive callbacks do.
    Returns the directory. A model that writes itself (``save_to(directory)``: the weights on
    disk that ``hooktrain replay`` passes) does so, without torch. ``weights``: the full state
    dict to write instead of the model's own (FSDP gathers it on every rank first).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if callable(getattr(model, "save_to", None)) and not hasattr(model, "parameters"):
        model.save_to(directory)
        return directory
    if weights is not None:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in weights.items()},
                  str(directory / "model.safetensors"), metadata={"format": "pt"})
    elif is_sharded(model):
        raise PluginError(
            f"{type(model).__name__} is sharded across processes (FSDP), so one process cannot "
            "write it: the final weights are written by trainer.save_model(), which every "
            "process calls; log that directory instead.")
    else:
        from safetensors.torch import save_model as save_safetensors

        save_safetensors(model, str(directory / "model.safetensors"))
    write_config(model, directory / "config.json")
    return directory


def write_config(model: Any, path: Path) -> None:
    """The model's config as ``from_pretrained`` reads it back: a transformers config writes
    itself (``to_json_file``, as ``save_pretrained`` does; ``None`` and lists stay JSON); any
    other config is written from :func:`model_config`'s plain values."""
    config = getattr(model, "config", None)
    if callable(getattr(config, "to_json_file", None)):
        config.to_json_file(str(path))
        return
    plain = model_config(model)
    if plain:
        path.write_text(json.dumps(plain, indent=2) + "\n")
