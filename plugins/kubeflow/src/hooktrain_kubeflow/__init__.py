"""Kubeflow Trainer progress for hooktrain: the TrainJob status protocol over stdlib HTTPS.

Hooks put the latest ``trainerStatus`` into one pending slot that a daemon thread POSTs at most
once per ``interval`` (each request bounded by ``timeout``): training never waits on the network.
Refusals that retrying cannot fix are raised at the next hook; an outage costs one warning. A
TrainJob has no run to open or resume: no ``TrackerPlugin``. See docs/integrations/kubeflow.md.
"""

from __future__ import annotations

import atexit
import http.client
import json
import logging
import math
import numbers
import ssl
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hooktrain.plugin import ConfigError, NumericFilter, from_environment, hookimpl, setting

__all__ = ["KubeflowPlugin", "KubeflowSettings", "KubeflowStatusError"]

logger = logging.getLogger("hooktrain")
_SAID_OFF: set[bool] = set()  # "switched off" said this process: disabled (True) / no URL (False)


class KubeflowStatusError(RuntimeError):
    """A setting the plugin cannot use, or a refusal from the server that retrying cannot fix."""


@dataclass
class KubeflowSettings:
    """The ``[plugins.kubeflow]`` table (docs/integrations/kubeflow.md)."""

    url: str | None = setting(None, env="KUBEFLOW_TRAINER_SERVER_URL")  # none: switched off
    #: A file holding the bearer token, read for every request (projected tokens rotate).
    token_file: str | None = setting(None, env="KUBEFLOW_TRAINER_SERVER_TOKEN")
    ca_cert: str | None = setting(None, env="KUBEFLOW_TRAINER_SERVER_CA_CERT")  # else system's
    interval: float = 5.0  # at most one POST per interval (the final status goes at once)
    timeout: float = 5.0  # seconds for connecting, and for each read, of one request
    disabled: bool = setting(False, env="DISABLE_KUBEFLOW_INTEGRATION")  # HF's: post nothing

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
    hooktrain_not_replayable = "it reports a running TrainJob's progress, and a replay has none"

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
        self._offer(state)

    @hookimpl
    def on_step_end(self, state: Any) -> None:
        self._offer(state)

    @hookimpl
    def on_log(self, state: Any, logs: dict[str, Any]) -> None:
        if self._sender is not None:
            self._remember(logs)
        self._offer(state)

    @hookimpl
    def on_train_end(self, state: Any) -> None:
        self._offer(state, end="finished")

    @hookimpl
    def on_exception(self, state: Any) -> None:
        self._offer(state, end="failed")

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the final status is delivered (or given up); ``False`` on timeout."""
        return self._sender is None or self._sender.join(timeout)

    def _offer(self, state: Any, end: str | None = None) -> None:
        if self._sender is not None:
            self._sender.offer(self._status(state, end), final=end is not None)

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
        status["lastUpdatedTime"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
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


def _classify(exc: BaseException) -> tuple[str, bool]:
    """The error in a line, and whether trying again may help (down, slow, 5xx, 429)."""
    if isinstance(exc, urllib.error.HTTPError):
        detail = exc.read(300).decode("utf-8", "replace").strip() if exc.fp else ""
        message = f"HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail else "")
        return message, exc.code == 429 or exc.code >= 500
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    transient = isinstance(reason, (OSError, http.client.HTTPException))  # not TLS, token, bugs
    return f"{type(reason).__name__}: {reason}", transient and not isinstance(reason, ssl.SSLError)


class Sender:
    """One daemon thread and one pending slot: the latest status, posted once per interval."""

    def __init__(self, post: Callable[[dict[str, Any]], None], config: Any,
                 previous: Sender | None) -> None:
        self._post, self._config, self._url = post, config, config.url
        self._previous = previous  # an earlier train()'s final status goes first
        self.exit_bound = 2 * config.timeout + 1  # the request in flight, then the final one
        self._cond = threading.Condition()
        self._pending: dict[str, Any] | None = None
        self._error: str | None = None  # a refusal for the training thread to raise
        self.closing = False  # the pending status is the last; later offers are ignored
        self._warned = self._down = False
        self._thread = threading.Thread(target=self._run, name="hooktrain-kubeflow", daemon=True)
        self._thread.start()
        _OPEN.add(self)

    def offer(self, status: dict[str, Any], final: bool = False) -> None:
        """Replace the pending status (training thread; never waits on the network)."""
        with self._cond:
            if self._error is not None:
                error, self._error, self.closing = self._error, None, True
                raise KubeflowStatusError(error)
            if not self.closing:
                self._pending, self.closing = status, final
                self._cond.notify()

    def join(self, timeout: float | None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _next(self, last: float) -> tuple[dict[str, Any], bool] | None:
        """Wait for a pending status and its turn (``interval`` after the last POST ended)."""
        with self._cond:
            while True:
                if self._pending is None:
                    if self.closing:
                        return None
                    self._cond.wait()
                    continue
                delay = 0.0 if self.closing else last + self._config.interval - time.monotonic()
                if delay <= 0:
                    status, self._pending = self._pending, None
                    return status, self.closing
                self._cond.wait(delay)

    def _run(self) -> None:
        if (previous := self._previous) is not None:
            self._previous = None
            previous.join(previous.exit_bound)
        last = -math.inf
        while (item := self._next(last)) is not None:
            status, final = item
            try:
                self._post(status)
            except Exception as exc:  # noqa: BLE001 - classified: raised later or reported
                (message, transient), config = _classify(exc), self._config
                if not transient:
                    return self._fail(
                        f"kubeflow: POST {self._url} failed: {message} (CA: "
                        f"{config.ca_cert or 'system trust store'}, token: {config.token_file})")
                self._outage(message, status, final)
            else:
                if self._down:
                    logger.info("kubeflow: the status server at %s answers again.", self._url)
                self._down = False
            last = time.monotonic()

    def _outage(self, message: str, status: dict[str, Any], final: bool) -> None:
        """One warning per run; later outages (once each) and the final status at INFO."""
        if final or not self._down:
            logger.log(logging.INFO if self._warned else logging.WARNING,
                       "kubeflow: could not post %s to %s (%s). Training goes on%s.",
                       "the final status" if final else "the training status", self._url, message,
                       "" if final else "; the latest status is tried again every "
                       f"{self._config.interval:g} s")
        self._warned = self._down = True
        with self._cond:
            if self._pending is None and not self.closing:
                self._pending = status  # nothing newer arrived: retry this one

    def _fail(self, message: str) -> None:
        with self._cond:
            if not self.closing:  # raised on the training thread at its next hook
                self._error = message
                return
        logger.error("%s. Nothing more is posted.", message)  # no hook comes after the last


_OPEN: weakref.WeakSet[Sender] = weakref.WeakSet()


@atexit.register
def _deliver_at_exit() -> None:
    """Give a final status still in flight its bounded time before the interpreter exits."""
    for sender in list(_OPEN):
        if sender.closing:
            sender.join(sender.exit_bound)
