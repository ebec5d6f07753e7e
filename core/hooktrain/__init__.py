"""hooktrain: a PyTorch training loop whose every event is a pluggy hook.

``from hooktrain import hookimpl`` costs only pluggy; ``Trainer`` and the other classes that need
torch load on first use, so plugin modules and ``hooktrain plugins`` never import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hooktrain.markers import hookimpl, hookspec

__version__ = "0.2.0"

# public name -> module that defines it, imported on first attribute access
_LAZY = {
    "Trainer": "hooktrain.trainer",
    "TrainingArguments": "hooktrain.args",
    "TrainerCallback": "hooktrain.trainer_callback",
    "TrainerState": "hooktrain.trainer_state",
    "TrainerControl": "hooktrain.trainer_state",
    "ExportableState": "hooktrain.trainer_state",
    "DefaultFlowCallback": "hooktrain.callbacks",
    "ProgressCallback": "hooktrain.callbacks",
    "PrinterCallback": "hooktrain.callbacks",
    "EarlyStoppingCallback": "hooktrain.callbacks",
    "EvalPrediction": "hooktrain.outputs",
    "PredictionOutput": "hooktrain.outputs",
    "TrainOutput": "hooktrain.outputs",
    "set_seed": "hooktrain.trainer",
}

__all__ = ["__version__", "hookimpl", "hookspec", *_LAZY]

if TYPE_CHECKING:
    from hooktrain.args import TrainingArguments
    from hooktrain.callbacks import (
        DefaultFlowCallback,
        EarlyStoppingCallback,
        PrinterCallback,
        ProgressCallback,
    )
    from hooktrain.outputs import EvalPrediction, PredictionOutput, TrainOutput
    from hooktrain.trainer import Trainer, set_seed
    from hooktrain.trainer_callback import TrainerCallback
    from hooktrain.trainer_state import ExportableState, TrainerControl, TrainerState


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hooktrain' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
