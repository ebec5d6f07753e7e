"""What the plugin-manager tests (``test_plugin_manager*.py``) share."""

from __future__ import annotations

from hooktrain import Trainer
from hooktrain.testing import RegressionDataset, TinyRegressor, tiny_args


def make_trainer(tmp_path, callbacks=(), **overrides):
    return Trainer(
        model=TinyRegressor(),
        args=tiny_args(tmp_path / "out", **overrides),
        train_dataset=RegressionDataset(8),
        callbacks=list(callbacks),
    )
