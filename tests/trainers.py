"""The model and weight helpers the Trainer tests share, and the suite's preset of the test kit.

Trainers are built by the public kit, :func:`hooktrain.testing.build_trainer` (and
:func:`~hooktrain.testing.run_training`, which also trains); :func:`make_trainer` is
``build_trainer`` with a seeded model, so two trainers of a test start from the same weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hooktrain import Trainer
from hooktrain.testing import TinyRegressor, build_trainer


def seeded_model(seed: int = 0, dropout: float = 0.0) -> TinyRegressor:
    """A :class:`TinyRegressor` built right after ``torch.manual_seed(seed)``: always the same."""
    torch.manual_seed(seed)
    return TinyRegressor(dropout=dropout)


def make_trainer(
    output_dir: str | Path,
    *,
    model: nn.Module | None = None,
    model_seed: int | None = 0,
    dropout: float = 0.0,
    **build: Any,
) -> Trainer:
    """:func:`hooktrain.testing.build_trainer` with the suite's default model: a
    :func:`seeded_model` (``model_seed``, ``dropout``; ``model_seed=None``: no seeding)."""
    if model is None:
        model = (seeded_model(model_seed, dropout) if model_seed is not None
                 else TinyRegressor(dropout=dropout))
    return build_trainer(output_dir, model=model, **build)


def mae(prediction: Any) -> dict[str, float]:
    """A ``compute_metrics``: mean absolute error."""
    return {"mae": float(np.abs(prediction.predictions - prediction.label_ids).mean())}


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``model``'s state dict."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict, b: dict, exact: bool = False) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if exact:
            assert torch.equal(a[key], b[key]), key
        else:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
