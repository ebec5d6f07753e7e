"""``EarlyStoppingCallback``: stop when the monitored metric stops improving."""

from __future__ import annotations

import logging
from typing import Any

from hooktrain.errors import ConfigError
from hooktrain.trainer_callback import TrainerCallback
from hooktrain.trainer_state import ExportableState

logger = logging.getLogger("hooktrain")


class EarlyStoppingCallback(TrainerCallback, ExportableState):
    """Stops training after ``early_stopping_patience`` evaluations without improvement.

    Improvement is measured on ``args.metric_for_best_model`` against ``state.best_metric`` (HF's
    rule: better by more than ``early_stopping_threshold``, an absolute delta). The patience
    counter is saved in every checkpoint and restored on resume; two instances keep their own.

    Unlike HF, a ``metric_for_best_model`` that no evaluation produces is an error during
    training naming the available metrics, instead of silently disabling early stopping
    (HF #28530), and the set-up checks raise clear errors rather than bare ``assert``s.

    Args:
        early_stopping_patience: evaluations without improvement before stopping. Defaults to `1`.
        early_stopping_threshold: how much better a value must be to count. Defaults to `0.0`.
    """

    def __init__(self, early_stopping_patience: int = 1, early_stopping_threshold: float = 0.0):
        self.early_stopping_patience = early_stopping_patience
        self.early_stopping_threshold = early_stopping_threshold
        self.early_stopping_patience_counter = 0
        self._warned_missing = False

    @property
    def state_key(self) -> str:
        """Checkpoint key: two instances with different settings keep separate state."""
        return (
            f"EarlyStoppingCallback[patience={self.early_stopping_patience},"
            f"threshold={self.early_stopping_threshold}]"
        )

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not args.load_best_model_at_end:
            logger.warning(
                "Using EarlyStoppingCallback without load_best_model_at_end=True. Once training "
                "is finished, the best model will not be loaded automatically."
            )
        if args.metric_for_best_model is None:
            raise ConfigError(
                "EarlyStoppingCallback requires metric_for_best_model (for example 'loss')."
            )
        if args.eval_strategy == "no":
            raise ConfigError(
                "EarlyStoppingCallback requires an evaluation schedule: set eval_strategy to "
                "'steps' or 'epoch'."
            )

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any
    ) -> None:
        key = args.metric_for_best_model
        if key is None:
            return
        if not key.startswith("eval_"):
            key = f"eval_{key}"
        metrics = metrics or {}
        value = metrics.get(key)
        if value is None:
            # With several eval sets this fires once per set and only one holds the key; the
            # Trainer raises when no set produced it (see Checkpointer.update_best_metric).
            if not self._warned_missing:
                logger.warning(
                    "EarlyStoppingCallback watches %r but this evaluation produced only %s.",
                    key, sorted(metrics),
                )
                self._warned_missing = True
            return
        self.check_metric_value(args, state, control, value)
        if self.early_stopping_patience_counter >= self.early_stopping_patience:
            control.should_training_stop = True

    def check_metric_value(self, args: Any, state: Any, control: Any, metric_value: float) -> None:
        better = (lambda a, b: a > b) if args.greater_is_better else (lambda a, b: a < b)
        if state.best_metric is None or (
            better(metric_value, state.best_metric)
            and abs(metric_value - state.best_metric) > self.early_stopping_threshold
        ):
            self.early_stopping_patience_counter = 0
        else:
            self.early_stopping_patience_counter += 1

    def state(self) -> dict[str, Any]:
        return {
            "args": {
                "early_stopping_patience": self.early_stopping_patience,
                "early_stopping_threshold": self.early_stopping_threshold,
            },
            "attributes": {
                "early_stopping_patience_counter": self.early_stopping_patience_counter,
            },
        }
