"""Training inside a TrainJob of the tests' own: the variables its controller injects
(:func:`configure`), the tests' throttle and a pace to span it, and the metric values a status
should carry (:func:`latest_values`) against those it did (:func:`logged_metrics`)."""

from __future__ import annotations

import math
import time
from pathlib import Path

from status_server import Received, StatusServer

from hooktrain import TrainerCallback
from hooktrain.testing import run_training

INTERVAL = 0.2  # the tests' throttle; the default is 5 s


class Pace(TrainerCallback):
    """Makes each step take ``seconds``, so a run spans several throttle intervals.

    Sleeping in ``on_step_begin`` also gives the sender thread time to take the train-begin
    status before the first step's status supersedes it.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_step_begin(self, args, state, control, **kwargs):
        time.sleep(self.seconds)


def configure(monkeypatch, server: StatusServer | None, pki=None, token: Path | None = None,
              url: str | None = None) -> None:
    """The variables a TrainJob's controller injects."""
    monkeypatch.setenv("KUBEFLOW_TRAINER_SERVER_URL", url or server.url)
    if token is not None:
        monkeypatch.setenv("KUBEFLOW_TRAINER_SERVER_TOKEN", str(token))
    if pki is not None:
        monkeypatch.setenv("KUBEFLOW_TRAINER_SERVER_CA_CERT", str(pki.ca_cert))


def train(**kwargs):
    kwargs.setdefault("output_dir", "out")
    kwargs.setdefault("report_to", ["kubeflow"])
    kwargs.setdefault("plugin_settings", {"kubeflow": {"interval": INTERVAL}})
    return run_training(**kwargs)


def latest_values(log_history: list[dict], up_to: float = math.inf) -> dict[str, float]:
    """The last value of every numeric key logged at a step <= up_to."""
    latest: dict[str, float] = {}
    for entry in log_history:
        if entry["step"] <= up_to:
            latest.update({k: v for k, v in entry.items() if k != "step"
                           and isinstance(v, (int, float)) and not isinstance(v, bool)})
    return latest


def logged_metrics(received: Received) -> dict[str, float]:
    return {k: float(v) for k, v in received.metrics.items()
            if k not in ("current_step", "total_steps", "current_epoch")}
