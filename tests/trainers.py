"""The suite's one trainer factory, and the model and weight helpers the Trainer tests share.

:func:`hooktrain.testing.run_training` builds a trainer *and trains it* (with a recorder
added). Tests that need the trainer first (to register a plugin, call ``evaluate()``, resume,
subclass ``Trainer``) build it with :func:`make_trainer`: the same model, data and arguments,
the same parameter names, nothing trained and nothing added.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hooktrain import Trainer
from hooktrain.testing import RegressionDataset, TinyRegressor, tiny_args


def seeded_model(seed: int = 0, dropout: float = 0.0) -> TinyRegressor:
    """A :class:`TinyRegressor` built right after ``torch.manual_seed(seed)``: always the same."""
    torch.manual_seed(seed)
    return TinyRegressor(dropout=dropout)


def make_trainer(
    output_dir: str | Path,
    *,
    plugins: list[Any] | tuple[Any, ...] = (),
    model: nn.Module | None = None,
    model_seed: int | None = 0,
    dropout: float = 0.0,
    train_size: int = 16,
    eval_size: int = 8,
    compute_metrics: Callable[[Any], dict[str, float]] | None = None,
    trainer_class: type[Trainer] = Trainer,
    trainer_kwargs: dict[str, Any] | None = None,
    **arg_overrides: Any,
) -> Trainer:
    """A Trainer as ``run_training`` builds it, not trained yet.

    ``model`` defaults to :func:`seeded_model` (``model_seed``, ``dropout``; ``model_seed=None``:
    no seeding; ``seed`` is the ``TrainingArguments`` field, as in ``tiny_args``);
    data: ``RegressionDataset(train_size, seed=0)`` to train and ``RegressionDataset(eval_size,
    seed=1)`` to evaluate, none for a size 0; arguments: ``tiny_args(output_dir,
    **arg_overrides)``; ``plugins`` are the callbacks, in order. ``compute_metrics`` and
    ``trainer_kwargs`` go to ``trainer_class`` as they are (another ``eval_dataset``, ...).
    """
    if model is None:
        model = (seeded_model(model_seed, dropout) if model_seed is not None
                 else TinyRegressor(dropout=dropout))
    kwargs: dict[str, Any] = {
        "train_dataset": RegressionDataset(train_size, seed=0) if train_size else None,
        "eval_dataset": RegressionDataset(eval_size, seed=1) if eval_size else None,
        **(trainer_kwargs or {}),
    }
    return trainer_class(model=model, args=tiny_args(output_dir, **arg_overrides),
                         callbacks=list(plugins), compute_metrics=compute_metrics, **kwargs)


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
