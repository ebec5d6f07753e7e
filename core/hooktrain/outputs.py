"""What ``train``, ``evaluate`` and ``predict`` return, with HF's names."""

from __future__ import annotations

import time
from typing import Any, NamedTuple


class EvalPrediction(NamedTuple):
    """What ``compute_metrics`` receives: numpy arrays (or tuples of them)."""

    predictions: Any
    label_ids: Any
    inputs: Any = None


class EvalLoopOutput(NamedTuple):
    predictions: Any
    label_ids: Any
    metrics: dict[str, float]
    num_samples: int


class PredictionOutput(NamedTuple):
    predictions: Any
    label_ids: Any
    metrics: dict[str, float]


class TrainOutput(NamedTuple):
    global_step: int
    training_loss: float
    metrics: dict[str, float]


def speed_metrics(
    split: str, start_time: float, num_samples: int | None = None, num_steps: int | None = None
) -> dict[str, float]:
    """``{split}_runtime`` and throughput, rounded as HF rounds them."""
    runtime = time.time() - start_time
    result = {f"{split}_runtime": round(runtime, 4)}
    if runtime == 0:
        return result
    if num_samples is not None:
        result[f"{split}_samples_per_second"] = round(num_samples / runtime, 3)
    if num_steps is not None:
        result[f"{split}_steps_per_second"] = round(num_steps / runtime, 3)
    return result
