"""MLflow tracking for hooktrain: parameters, batched metrics, checkpoints and the run's status.

Everything goes through one ``MlflowClient`` on the training thread, never the fluent API: a
failing server raises inside the hook (hooktrain switches the plugin off), requests are bounded
by ``request_timeout`` / ``request_max_retries`` (MLflow's 120 s and 7 retries make a dead server
cost minutes), and no fluent "active run" is left for MLflow's exit handler to close as FINISHED
after a crash. docs/integrations/mlflow.md has more.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hooktrain.plugin import ConfigError, TrackerPlugin, hookimpl, run_config, save_model, setting

__all__ = ["MLflowPlugin", "MLflowSettings", "metric_name"]

logger = logging.getLogger("hooktrain")

def metric_name(key: str) -> str:
    """HF's MLflow names: the key as logged (``loss``, ``eval_loss``), unsafe characters ``_``."""
    return re.sub(r"[^0-9A-Za-z_\-. :/]", "_", key)


@dataclass
class MLflowSettings:
    """The ``[plugins.mlflow]`` table (docs/integrations/mlflow.md), with HF's variables."""

    tracking_uri: str | None = setting(None, env="MLFLOW_TRACKING_URI")  # default: MLflow's
    experiment_name: str | None = setting(None, env="MLFLOW_EXPERIMENT_NAME")  # made if missing
    tags: dict[str, Any] | str | None = setting(None, env="MLFLOW_TAGS")  # table, or JSON object
    nested_run: bool = setting(False, env="MLFLOW_NESTED_RUN")  # a child of the active run
    run_id: str | None = setting(None, env="MLFLOW_RUN_ID")  # log into (and end) this run
    flatten_params: bool = setting(False, env="MLFLOW_FLATTEN_PARAMS")  # dicts as key.subkey
    max_log_params: int | None = setting(None, env="MLFLOW_MAX_LOG_PARAMS")
    log_artifacts: bool = setting(False, env="HF_MLFLOW_LOG_ARTIFACTS")  # each checkpoint saved
    log_model: bool = setting(False)  # the final model as ``model/`` at train end
    request_timeout: int = setting(15, env="MLFLOW_HTTP_REQUEST_TIMEOUT")  # seconds per request
    request_max_retries: int = setting(2, env="MLFLOW_HTTP_REQUEST_MAX_RETRIES")

    def __post_init__(self) -> None:
        tags = self.tags  # HF reads MLFLOW_TAGS as JSON; the config's parser knows only TOML
        with contextlib.suppress(TypeError, ValueError):  # TypeError: not a string
            self.tags = json.loads(tags)
        if self.tags is not None and not isinstance(self.tags, dict):
            raise ConfigError("tags (MLFLOW_TAGS) must be a JSON object such as "
                              f"'{{\"team\": \"nlp\"}}', got {tags!r}.")


class MLflowPlugin(TrackerPlugin):
    """One MLflow run per ``train()``; the run the base class holds (:attr:`run`) is its id."""

    plugin_name = "mlflow"
    settings: type = MLflowSettings
    config: MLflowSettings

    def __init__(self, settings: MLflowSettings | None = None) -> None:
        super().__init__(settings)
        self.tracking_uri: str | None = None
        self.client: Any = None
        self._http_limits = {
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(self.config.request_timeout),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.config.request_max_retries),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": os.environ.get(
                "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
        }

    def resolve_tracking_uri(self) -> str | None:
        """The tracking URI to log to, or ``None`` to log nothing to MLflow (for subclasses)."""
        import mlflow

        uri = self.config.tracking_uri or mlflow.get_tracking_uri()
        if not self.config.tracking_uri and not mlflow.is_tracking_uri_set():
            logger.warning("%s: no tracking URI set (tracking_uri / MLFLOW_TRACKING_URI); "
                           "logging to MLflow's local default %s.", self.plugin_name, uri)
        return uri

    def run_id_of(self, run: str) -> str:
        return run

    def open_run(self, args: Any, state: Any, model: Any, run_id: str | None) -> str | None:
        if run_id is not None and run_id != self.resume_id:
            self.owns_run = False  # evaluate() after train(): the run train() ended, status kept
            return run_id
        self.tracking_uri = self.resolve_tracking_uri()
        if self.tracking_uri is None:
            return None
        with self.bounded():
            return self._open_or_attach(args, self._params(args, model), run_id)

    def _open_or_attach(self, args: Any, params: dict[str, str], checkpoint_id: str | None) -> str:
        """In order: ``run_id`` (HF's ``MLFLOW_RUN_ID``); the user's active run around
        ``train()`` (unless ``nested_run``: then a child of it); the checkpoint's run; a new one.
        A reattached run keeps its parameters (MLflow's cannot change), gets the missing ones."""
        import mlflow
        from mlflow.entities import Param, RunTag
        from mlflow.exceptions import MlflowException
        from mlflow.tracking.context.registry import resolve_tags
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
        from mlflow.utils.validation import MAX_PARAMS_TAGS_PER_BATCH

        client = self.client = mlflow.MlflowClient(tracking_uri=self.tracking_uri)
        tags = {str(k): str(v) for k, v in (self.config.tags or {}).items()}
        active = mlflow.active_run() if self.tracking_uri == mlflow.get_tracking_uri() else None
        run = None
        if self.config.run_id:
            run = client.get_run(self.config.run_id)
        elif active is not None and not self.config.nested_run:
            run, self.owns_run = client.get_run(active.info.run_id), False  # the user's
        elif checkpoint_id is not None:
            try:
                run = client.get_run(checkpoint_id)
            except MlflowException as exc:
                if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                    raise
            if run is None or run.info.lifecycle_stage == "deleted":
                logger.warning("%s: the checkpoint's run %s is not in %s (deleted, or another "
                               "store); starting a new run.", self.plugin_name, checkpoint_id,
                               self.tracking_uri)
                run = None
        if run is None:
            if active is not None:
                tags[MLFLOW_PARENT_RUN_ID] = active.info.run_id
            if name := self.config.experiment_name:
                found = client.get_experiment_by_name(name)
                experiment_id = found.experiment_id if found else client.create_experiment(name)
            else:
                experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID") or "0"
            run = client.create_run(experiment_id, tags=resolve_tags(tags), run_name=args.run_name)
            tags = {}
        elif self.owns_run and run.info.status != "RUNNING":
            client.update_run(run.info.run_id, status="RUNNING")
        run_id, logged = run.info.run_id, run.data.params
        if changed := sorted(k for k, v in params.items() if k in logged and logged[k] != v):
            logger.warning("%s: run %s keeps the values it logged first for %s (MLflow "
                           "parameters cannot change).", self.plugin_name, run_id,
                           ", ".join(changed))
        self._log_batch(run_id, MAX_PARAMS_TAGS_PER_BATCH,
                        params=[Param(k, v) for k, v in params.items() if k not in logged],
                        tags=[RunTag(k, v) for k, v in tags.items()])
        return run_id

    def _params(self, args: Any, model: Any) -> dict[str, str]:
        """HF's parameters: flattened when ``flatten_params`` (from the raw values), at most
        ``max_log_params``, each cut to MLflow's length limit (HF drops long ones silently)."""
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH as LIMIT  # 6000 in MLflow 3

        params: dict[str, Any] = run_config(args, model)
        if self.config.flatten_params:
            raw = getattr(model, "config", None)
            raw = raw.to_dict() if callable(getattr(raw, "to_dict", None)) else raw
            raw = {**args.to_dict(), **{f"model_config/{k}": v for k, v in (
                raw.items() if isinstance(raw, dict) else ())}}
            params = _flatten({k: raw.get(k, v) for k, v in params.items()})
        items = [(k, str(v)) for k, v in params.items()][:self.config.max_log_params]
        if long := [k for k, v in items if len(v) > LIMIT]:
            logger.warning("%s: parameter values longer than %d characters are truncated: %s.",
                           self.plugin_name, LIMIT, ", ".join(long))
        return {k: v[:LIMIT] for k, v in items}

    def _log_batch(self, run_id: str, size: int, **lists: list[Any]) -> None:
        """Each list in requests of at most ``size`` items (MLflow's per-request limits)."""
        for key, items in lists.items():
            for i in range(0, len(items), size):
                self.client.log_batch(run_id, **{key: items[i:i + size]}, synchronous=True)

    def log_metrics(self, run: str, metrics: dict[str, float], state: Any) -> None:
        from mlflow.entities import Metric
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH

        now = int(time.time() * 1000)
        with self.bounded():  # one request per on_log
            self._log_batch(run, MAX_METRICS_PER_BATCH, metrics=[
                Metric(metric_name(k), v, now, state.global_step) for k, v in metrics.items()])

    def before_finish(self, run: str, args: Any, state: Any, model: Any) -> None:
        if self.config.log_model:
            with tempfile.TemporaryDirectory() as tmp, self.bounded():
                self.client.log_artifacts(run, str(save_model(model, tmp)), "model")

    def finish_run(self, run: str, failure: BaseException | None) -> None:
        with self.bounded(quick=self.own_fault):  # our request failed: one quick try
            self.client.set_terminated(run, "FINISHED" if failure is None else "FAILED")

    @hookimpl
    def on_save(self, checkpoint_dir: Path) -> None:
        if self.config.log_artifacts and self.run is not None:
            with self.failing(), self.bounded():
                self.client.log_artifacts(self.run, str(checkpoint_dir), Path(checkpoint_dir).name)

    @contextlib.contextmanager
    def bounded(self, quick: bool = False) -> Iterator[None]:
        """MLflow reads its HTTP limits from the environment per request: ours, for our calls."""
        saved = {key: os.environ.get(key) for key in self._http_limits}
        os.environ.update(self._http_limits)
        if quick:
            os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="5")
        try:
            yield
        finally:
            os.environ.update({k: v for k, v in saved.items() if v is not None})
            for key in [k for k, v in saved.items() if v is None]:
                del os.environ[key]


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """HF's ``flatten_dict``: nested dicts become ``outer.inner`` keys (an empty one stays)."""
    return {k: v for key, value in values.items() for k, v in (
        _flatten(value, f"{prefix}{key}.").items() if isinstance(value, dict) and value
        else [(f"{prefix}{key}", value)])}
