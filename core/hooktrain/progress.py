"""``TrainingProgress``: the loop's running loss sums and the last step's figures, as one record.

The loop updates it every optimizer step, the logging step reads (and resets) the loss since the
last log, and the checkpointer saves and restores it whole (``hooktrain_state.json``, see
docs/checkpoints.md), so a resumed run logs exactly the means the uninterrupted one would have.
The loss is summed on the device; only :meth:`TrainingProgress.loss_since_log` reads it on the
host, and the loop calls that on logging steps only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from hooktrain import distributed
from hooktrain.loss_filter import LossFilter, reduced_sum


@dataclass
class TrainingProgress:
    """What the loop carries from step to step besides ``TrainerState``."""

    #: the sum of the micro-batch losses since the last log, on the device
    tr_loss: torch.Tensor
    #: the same losses, kept for HF's NaN/inf filter (``logging_nan_inf_filter``)
    loss_filter: LossFilter
    #: the sum of every logged loss so far, on the host (``train_loss`` at the end)
    total_loss_scalar: float = 0.0
    globalstep_last_logged: int = 0
    #: the last optimizer step's gradient norm (a device tensor) and learning rate
    last_grad_norm: Any = None
    last_learning_rate: Any = 0.0

    @classmethod
    def start(cls, device: torch.device, nan_inf_filter: bool) -> TrainingProgress:
        """The progress of a run that has not stepped yet."""
        return cls(torch.zeros((), device=device), LossFilter(nan_inf_filter))

    def loss_since_log(self) -> float:
        """The loss summed since the last log, averaged over processes, NaN/inf filtered as HF.

        A host sync (and a collective under torchrun): call it on logging steps only.
        """
        return reduced_sum(self.loss_filter, self.tr_loss, self.globalstep_last_logged,
                           distributed.mean_over_processes)

    def take_loss_since_log(self) -> float:
        """:meth:`loss_since_log`, then start the next sum from zero."""
        value = self.loss_since_log()
        self.tr_loss.zero_()
        self.loss_filter.reset()
        return value

    def grad_norm_value(self) -> float:
        """The last step's gradient norm as a number (a host sync: logging steps only). Under
        FSDP the norm is a replicated DTensor; its full tensor is this rank's own value."""
        norm = self.last_grad_norm
        if hasattr(norm, "full_tensor"):
            norm = norm.full_tensor()
        return float(norm)

    def to_saved(self) -> dict[str, Any]:
        """The checkpoint's ``hooktrain_state.json`` (a collective: every rank calls it)."""
        return {
            # the mean over processes: each rank restores it, so the logged means continue
            "tr_loss": self.loss_since_log(),
            "total_loss_scalar": self.total_loss_scalar,
            "globalstep_last_logged": self.globalstep_last_logged,
            # what the next training log reports if it comes before another step
            "last_grad_norm": None if self.last_grad_norm is None else self.grad_norm_value(),
            "last_learning_rate": float(self.last_learning_rate),  # a tensor lr is valid
        }

    def restore(self, saved: dict[str, Any], current_learning_rate: float) -> None:
        """Continue from :meth:`to_saved`'s record (checked by the checkpointer).

        Checkpoints older than ``last_grad_norm``/``last_learning_rate`` lack them: no grad norm
        is logged until the next step, and the learning rate is the scheduler's current one.
        """
        self.tr_loss.fill_(saved["tr_loss"])
        self.loss_filter.reset(base=saved["tr_loss"])
        self.total_loss_scalar = saved["total_loss_scalar"]
        self.globalstep_last_logged = saved["globalstep_last_logged"]
        self.last_grad_norm = saved.get("last_grad_norm")
        self.last_learning_rate = saved.get("last_learning_rate", current_learning_rate)
