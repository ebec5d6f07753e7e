"""Models, metrics and trainers shared by the Trainer test modules."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hooktrain import Trainer
from hooktrain.testing import RegressionDataset, TinyRegressor, tiny_args


def make_model(seed: int = 0, dropout: float = 0.0) -> TinyRegressor:
    torch.manual_seed(seed)
    return TinyRegressor(dropout=dropout)


def mae(prediction) -> dict[str, float]:
    return {"mae": float(np.abs(prediction.predictions - prediction.label_ids).mean())}


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict, b: dict, exact: bool = False) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if exact:
            assert torch.equal(a[key], b[key]), key
        else:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


def trainer_for(tmp_path, model=None, train_size=16, eval_size=8, callbacks=(), trainer_kw=None,
                **overrides) -> Trainer:
    return Trainer(
        model=model if model is not None else make_model(),
        args=tiny_args(tmp_path / "out", **overrides),
        train_dataset=RegressionDataset(train_size, seed=0) if train_size else None,
        eval_dataset=RegressionDataset(eval_size, seed=1) if eval_size else None,
        callbacks=list(callbacks),
        **(trainer_kw or {}),
    )
