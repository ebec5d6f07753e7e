"""What the HF callback-compatibility tests (``test_callback_compat*.py``) share."""

from __future__ import annotations

from hooktrain import Trainer
from hooktrain.testing import RegressionDataset, TinyRegressor, tiny_args


def make_trainer(tmp_path, callbacks=(), **overrides):
    return Trainer(
        model=TinyRegressor(),
        args=tiny_args(tmp_path / "out", **overrides),
        train_dataset=RegressionDataset(16, seed=0),
        eval_dataset=RegressionDataset(8, seed=1),
        callbacks=list(callbacks),
    )
