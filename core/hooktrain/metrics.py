"""Metric values as plain numbers (``Trainer.log``), and HF's metric helpers for the end of a
script (``trainer_pt_utils``): the bodies of ``Trainer.metrics_format``, ``log_metrics`` and
``save_metrics``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch


def plain_values(logs: dict[str, Any]) -> dict[str, Any]:
    """Tensors and numpy scalars in ``logs`` become Python numbers, in place (HF #10299)."""
    for key, value in logs.items():
        if isinstance(value, (torch.Tensor, np.generic)):
            logs[key] = value.item()
    return logs


def metrics_format(metrics: dict[str, float]) -> dict[str, Any]:
    """``metrics`` for printing: runtimes as ``h:mm:ss.ss``, ``total_flos`` in GF."""
    formatted: dict[str, Any] = dict(metrics)
    for key, value in formatted.items():
        if "_mem_" in key:
            formatted[key] = f"{value >> 20}MB"
        elif "_runtime" in key:
            formatted[key] = runtime(value)
        elif key == "total_flos":
            formatted[key] = f"{int(value) >> 30}GF"
        elif isinstance(value, float):
            formatted[key] = round(value, 4)
    return formatted


def print_metrics(split: str, formatted: dict[str, Any]) -> None:
    """Print formatted metrics as HF does (``***** train metrics *****``)."""
    print(f"***** {split} metrics *****")
    width = max((len(key) for key in formatted), default=0)
    for key in sorted(formatted):
        print(f"  {key: <{width}} = {formatted[key]:>9}")


def save_metrics(output_dir: str, split: str, metrics: dict[str, float], combined: bool) -> None:
    """Write ``{split}_results.json`` (and merge into ``all_results.json`` when combined)."""
    directory = Path(output_dir)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{split}_results.json").write_text(
        json.dumps(metrics, indent=4, sort_keys=True))
    if combined:
        path = directory / "all_results.json"
        everything = json.loads(path.read_text()) if path.exists() else {}
        everything.update(metrics)
        path.write_text(json.dumps(everything, indent=4, sort_keys=True))


def runtime(seconds: float) -> str:
    """Seconds as ``h:mm:ss.ss`` (HF's ``_secs2timedelta``)."""
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:05.2f}" if not math.isnan(seconds) else "nan"
