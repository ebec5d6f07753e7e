"""What ``train``, ``evaluate`` and ``predict`` return, with HF's names."""

from __future__ import annotations

import time
from typing import Any, NamedTuple


class EvalPrediction:
    """What ``compute_metrics`` receives: numpy arrays (or tuples of them).

    As HF's: it unpacks as ``predictions, label_ids`` (``logits, labels = eval_pred``), with
    ``inputs`` and then ``losses`` added to the items only when they are given; indexing and the
    named attributes work alike.
    """

    def __init__(self, predictions: Any, label_ids: Any, inputs: Any = None,
                 losses: Any = None) -> None:
        self.predictions = predictions
        self.label_ids = label_ids
        self.inputs = inputs
        self.losses = losses
        elements: tuple[Any, ...] = (predictions, label_ids)
        if inputs is not None:
            elements += (inputs,)
        if losses is not None:
            elements += (losses,)
        self.elements = elements

    def __iter__(self) -> Any:
        return iter(self.elements)

    def __len__(self) -> int:
        return len(self.elements)

    def __getitem__(self, index: int) -> Any:
        if isinstance(index, int) and not 0 <= index < len(self.elements):
            raise IndexError("tuple index out of range")
        return self.elements[index]

    def __repr__(self) -> str:
        return (f"EvalPrediction(predictions={self.predictions!r}, label_ids={self.label_ids!r}, "
                f"inputs={self.inputs!r}, losses={self.losses!r})")


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
