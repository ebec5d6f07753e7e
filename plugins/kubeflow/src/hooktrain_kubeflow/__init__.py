"""Kubeflow Trainer progress for hooktrain: the TrainJob status protocol over stdlib HTTPS.

Hooks put the latest ``trainerStatus`` (progress, ETA, metrics) into one pending slot; a daemon
thread of the plugin's own POSTs it at most once per ``interval``, each request bounded by
``timeout``: the training thread never waits on the network, and nothing is lost but superseded
progress (each status carries every metric logged so far). Refusals that retrying cannot fix are
raised at the next hook, so hooktrain isolates the plugin; an outage costs one warning. The
thread is :mod:`hooktrain_kubeflow.sender`; this module builds the statuses.

A TrainJob has no run to open or resume (no run id to checkpoint): the plugin reports progress of
the job it runs in, so it is no ``TrackerPlugin``. See docs/integrations/kubeflow.md.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import ssl
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hooktrain.plugin import ConfigError, NumericFilter, from_environment, hookimpl, setting

from hooktrain_kubeflow.sender import KubeflowStatusError, Sender

__all__ = ["KubeflowPlugin", "KubeflowSettings", "KubeflowStatusError"]

logger = logging.getLogger("hooktrain")
_SAID_OFF: set[bool] = set()  # "switched off" said this process: disabled (True) / no URL (False)


@dataclass
class KubeflowSettings:
    """The ``[plugins.kubeflow]`` table."""

    #: The TrainJob status endpoint; without it the plugin switches itself off with a warning.
    url: str | None = setting(None, env="KUBEFLOW_TRAINER_SERVER_URL")
    #: A file holding the bearer token, read for every request (projected tokens rotate).
    token_file: str | None = setting(None, env="KUBEFLOW_TRAINER_SERVER_TOKEN")
    #: CA bundle that signs the server's certificate; default: the system's trust store.
    ca_cert: str | None = setting(None, env="KUBEFLOW_TRAINER_SERVER_CA_CERT")
    #: At most one POST per this many seconds (the final status at train end goes at once).
    interval: float = 5.0
    #: Seconds allowed for connecting and for each read of one request.
    timeout: float = 5.0
    #: HF's ``DISABLE_KUBEFLOW_INTEGRATION=TRUE``: post nothing.
    disabled: bool = setting(False, env="DISABLE_KUBEFLOW_INTEGRATION")

    def __post_init__(self) -> None:
        if self.url is not None and not self.url.startswith(("https://", "http://")):
            raise ConfigError(f"[plugins.kubeflow] url (or $KUBEFLOW_TRAINER_SERVER_URL) must be "
                              f"an https:// or http:// URL, got {self.url!r}.")
        if not (self.interval >= 0 and self.timeout > 0):
            raise ConfigError(f"[plugins.kubeflow] needs interval >= 0 and timeout > 0, got "
                              f"interval={self.interval!r}, timeout={self.timeout!r}.")


class KubeflowPlugin:
    """Posts progress, an ETA and the latest metrics to the Kubeflow Trainer status server."""

    settings = KubeflowSettings

    def __init__(self, settings: KubeflowSettings | None = None) -> None:
        self.config = settings or from_environment("kubeflow", KubeflowSettings)
        self._numeric = NumericFilter("kubeflow")
        self._metrics: dict[str, int | float] = {}
        self._sender: Sender | None = None
        self._start, self._start_step = 0.0, 0

    @hookimpl
    def on_train_begin(self, state: Any) -> None:
        config = self.config
        if config.disabled or not config.url:
            if config.disabled not in _SAID_OFF:  # said once per process
                _SAID_OFF.add(config.disabled)
                logger.log(logging.INFO if config.disabled else logging.WARNING,
                           "kubeflow: %s, so the plugin is switched off for this run.",
                           "disabled (DISABLE_KUBEFLOW_INTEGRATION)" if config.disabled else
                           "no status server configured (KUBEFLOW_TRAINER_SERVER_URL, which a "
                           "Kubeflow TrainJob sets, or [plugins.kubeflow] url)")
            return
        try:
            context = ssl.create_default_context(cafile=config.ca_cert)
        except OSError as exc:  # ssl.SSLError included
            raise KubeflowStatusError(f"kubeflow: cannot load the CA certificate {config.ca_cert} "
                                      f"(KUBEFLOW_TRAINER_SERVER_CA_CERT): {exc}") from exc
        if not self._token():  # an unreadable token file raises here, on the training thread
            logger.info("kubeflow: no token (KUBEFLOW_TRAINER_SERVER_TOKEN); posting without "
                        "an Authorization header.")
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
        self._metrics = {}
        for entry in state.log_history:  # a resumed run starts from the checkpoint's values
            self._remember({k: v for k, v in entry.items() if k != "step"})
        self._start, self._start_step = time.monotonic(), state.global_step
        self._sender = Sender(lambda status: self._post(opener, status), config, self._sender)
        self._sender.offer(self._status(state))

    @hookimpl
    def on_step_end(self, state: Any) -> None:
        if self._sender is not None:
            self._sender.offer(self._status(state))

    @hookimpl
    def on_log(self, state: Any, logs: dict[str, Any]) -> None:
        if self._sender is not None:
            self._remember(logs)
            self._sender.offer(self._status(state))

    @hookimpl
    def on_train_end(self, state: Any) -> None:
        if self._sender is not None:
            self._sender.offer(self._status(state, end="finished"), final=True)

    @hookimpl
    def on_exception(self, state: Any) -> None:
        if self._sender is not None:
            self._sender.offer(self._status(state, end="failed"), final=True)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the final status is delivered (or given up); ``False`` on timeout."""
        return self._sender is None or self._sender.join(timeout)

    def _remember(self, logs: dict[str, Any]) -> None:
        for key in self._numeric(logs):
            value = logs[key]  # ints stay ints: "total_flos": "0"
            self._metrics[key] = int(value) if isinstance(value, numbers.Integral) else float(value)

    def _status(self, state: Any, end: str | None = None) -> dict[str, Any]:
        """The ``trainerStatus`` for the state now; ``end``: ``"finished"`` or ``"failed"``."""
        step, total = state.global_step, state.max_steps
        status: dict[str, Any] = {}
        if end == "finished":
            status["progressPercentage"], status["estimatedRemainingSeconds"] = 100, 0
        elif total and total > 0:
            status["progressPercentage"] = max(0, min(99, step * 100 // total))  # 100 = done
            done, elapsed = step - self._start_step, time.monotonic() - self._start
            if done > 0 and end is None:  # this run's pace, so a resumed run's ETA is right
                eta = math.ceil(elapsed / done * max(0, total - step))
                status["estimatedRemainingSeconds"] = min(eta, 2**31 - 1)  # int32
        metrics: dict[str, int | float] = {**self._metrics, "current_step": step}
        if total and total > 0:
            metrics["total_steps"] = total
        if state.epoch is not None:
            metrics["current_epoch"] = round(state.epoch, 2)
        # values travel as strings; repr() round-trips a float exactly
        status["metrics"] = [{"name": k, "value": str(v) if isinstance(v, int) else repr(v)}
                             for k, v in metrics.items()]
        status["lastUpdatedTime"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return status

    def _token(self) -> str:
        path = self.config.token_file
        try:
            return Path(path).read_text(encoding="utf-8").strip() if path else ""
        except OSError as exc:
            raise KubeflowStatusError(f"kubeflow: cannot read the token file {path} "
                                      f"(KUBEFLOW_TRAINER_SERVER_TOKEN): {exc}") from exc

    def _post(self, opener: urllib.request.OpenerDirector, status: dict[str, Any]) -> None:
        """One bounded POST, on the sender thread."""
        token, headers = self._token(), {"Content-Type": "application/json"}
        headers.update({"Authorization": f"Bearer {token}"} if token else {})
        body = json.dumps({"trainerStatus": status}).encode("utf-8")
        request = urllib.request.Request(str(self.config.url), body, headers, method="POST")
        with opener.open(request, timeout=self.config.timeout) as response:
            response.read()
