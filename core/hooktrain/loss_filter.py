"""HF's ``logging_nan_inf_filter`` without a device operation on steps that do not log.

HF checks every micro-batch's loss on the host (``torch.isnan(...)``: a sync per step) and adds,
in place of a NaN or infinite one, ``tr_loss / (1 + global_step - globalstep_last_logged)``.
hooktrain sums the losses on the device as usual and only keeps a reference to each micro-batch's
loss (no operation). When the sum read at a logging step is not finite, the filtered sum is
recomputed on the host from those losses with HF's formula, in the same order: the logged value
is HF's, and a run without a bad loss pays nothing.
"""

from __future__ import annotations

import math
from typing import Any

import torch


class LossFilter:
    """The micro-batch losses since the last log, to redo the sum when it is not finite."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.base = 0.0  # what the sum started from: a resumed run's saved running loss
        self._losses: list[tuple[torch.Tensor, int]] = []

    def record(self, loss: torch.Tensor, global_step: int) -> None:
        if self.enabled:
            self._losses.append((loss, global_step))

    def reset(self, base: float = 0.0) -> None:
        self.base = base
        self._losses.clear()

    def filtered_sum(self, last_logged: int) -> float:
        """HF's running sum over the recorded losses, a bad one replaced as HF replaces it."""
        if not self._losses:
            return self.base
        values = torch.stack([loss.float() for loss, _ in self._losses]).tolist()
        total = self.base
        for value, (_, step) in zip(values, self._losses):
            if math.isfinite(value):
                total += value
            else:
                total += total / (1 + step - last_logged)
        return total


def reduced_sum(tally: Any, device_sum: torch.Tensor, last_logged: int,
                mean_over_processes: Any) -> float:
    """The running loss, averaged over processes, with NaN/inf filtered as HF does.

    Under torchrun a bad loss on any process makes the mean non-finite, so every process then
    takes the slow path together and the filtered sums are averaged in a second collective.
    """
    value = mean_over_processes(device_sum).item()
    if math.isfinite(value) or not tally.enabled:
        return value
    local = torch.tensor(tally.filtered_sum(last_logged), device=device_sum.device,
                         dtype=torch.float64)
    return mean_over_processes(local).item()
