"""MLflow tracking for hooktrain: parameters, batched metrics, checkpoints and the run's status.

Everything goes through one ``MlflowClient`` on the training thread, never MLflow's fluent API:
a failing server raises inside the hook, where hooktrain reports the plugin once and switches it
off while training finishes (HF's callback kills the run); every request is bounded by
``request_timeout`` / ``request_max_retries`` (MLflow's defaults, 120 s and 7 retries with
back-off, make a dead server cost minutes); and no fluent "active run" is left for MLflow's exit
handler to close as FINISHED after a crash: ``on_exception`` marks the run FAILED first.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from hooktrain import hookimpl
from hooktrain.errors import ConfigError
from hooktrain.integration import NumericFilter, run_config, save_model
from hooktrain.plugin_host.settings import from_environment

__all__ = ["MLflowPlugin", "MLflowSettings", "metric_name"]

logger = logging.getLogger("hooktrain")

_UNSAFE = re.compile(r"[^0-9A-Za-z_\-. :/]")


def metric_name(key: str) -> str:
    """HF's MLflow names: the key as logged (``loss``, ``eval_loss``), unsafe characters ``_``."""
    return _UNSAFE.sub("_", key)


@dataclass
class MLflowSettings:
    """The ``[plugins.mlflow]`` table; each field falls back to HF's environment variable."""

    #: Where runs go (``http://...``, ``sqlite:///...``); default MLflow's own tracking URI.
    tracking_uri: str | None = field(default=None, metadata={"env": "MLFLOW_TRACKING_URI"})
    #: Experiment (created when missing); default ``MLFLOW_EXPERIMENT_ID``, else "Default".
    experiment_name: str | None = field(default=None, metadata={"env": "MLFLOW_EXPERIMENT_NAME"})
    #: Extra run tags: a table, or a JSON object (``MLFLOW_TAGS``).
    tags: dict[str, Any] | str | None = field(default=None, metadata={"env": "MLFLOW_TAGS"})
    #: Start a child run of the active MLflow run instead of logging into it.
    nested_run: bool = field(default=False, metadata={"env": "MLFLOW_NESTED_RUN"})
    #: Log into this existing run, and end it at the end of training.
    run_id: str | None = field(default=None, metadata={"env": "MLFLOW_RUN_ID"})
    #: Log dict-valued parameters as ``key.subkey`` entries.
    flatten_params: bool = field(default=False, metadata={"env": "MLFLOW_FLATTEN_PARAMS"})
    #: Log at most this many parameters.
    max_log_params: int | None = field(default=None, metadata={"env": "MLFLOW_MAX_LOG_PARAMS"})
    #: Upload each checkpoint, when saved, as ``checkpoint-<step>/``.
    log_artifacts: bool = field(default=False, metadata={"env": "HF_MLFLOW_LOG_ARTIFACTS"})
    #: Upload the final model (``model/``: ``model.safetensors``, ``config.json``) at train end.
    log_model: bool = False
    #: Seconds per HTTP request, and retries, for this plugin's calls.
    request_timeout: int = field(default=15, metadata={"env": "MLFLOW_HTTP_REQUEST_TIMEOUT"})
    request_max_retries: int = field(default=2, metadata={"env": "MLFLOW_HTTP_REQUEST_MAX_RETRIES"})

    def __post_init__(self) -> None:
        tags = self.tags
        if isinstance(tags, str):
            try:
                self.tags = json.loads(tags)
            except ValueError:
                pass
        if self.tags is not None and not isinstance(self.tags, dict):
            raise ConfigError("tags (MLFLOW_TAGS) must be a JSON object such as "
                              f"'{{\"team\": \"nlp\"}}', got {tags!r}.")


class MLflowPlugin:
    """One MLflow run per ``train()``: parameters, metrics at ``global_step``, status."""

    settings: type = MLflowSettings
    plugin_name = "mlflow"

    def __init__(self, settings: MLflowSettings | None = None) -> None:
        self.config = settings or from_environment(self.plugin_name, self.settings)
        self.run_id: str | None = None
        self.tracking_uri: str | None = None
        self.client: Any = None
        self._open = False  # between the run's start and its end
        self._owned = False  # this plugin ends the run (not the user's run around train())
        self._off = False  # nothing to log to (a subclass without credentials)
        self._checkpoint_run_id: str | None = None
        self._numeric = NumericFilter(self.plugin_name)
        self._http_limits = {
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(self.config.request_timeout),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.config.request_max_retries),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": os.environ.get(
                "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
        }

    # ---- hooks ---------------------------------------------------------------------------

    @hookimpl
    def on_train_begin(self, args: Any, model: Any) -> None:
        if self.run_id is not None and not self._open:
            self.run_id = None  # an earlier train() of this Trainer ended its run: start anew
        self._start(args, model)

    @hookimpl
    def on_log(self, args: Any, state: Any, model: Any, logs: dict[str, Any]) -> None:
        from mlflow.entities import Metric
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH as BATCH

        if not self._start(args, model):
            return
        now = int(time.time() * 1000)
        metrics = [Metric(metric_name(key), value, now, state.global_step)
                   for key, value in self._numeric(logs).items()]
        with self.bounded():
            for i in range(0, len(metrics), BATCH):  # one request per on_log
                self.client.log_batch(self.run_id, metrics=metrics[i:i + BATCH], synchronous=True)

    @hookimpl
    def on_save(self, checkpoint_dir: Path) -> None:
        if self.config.log_artifacts and self.run_id is not None:
            with self.bounded():
                self.client.log_artifacts(self.run_id, str(checkpoint_dir),
                                          Path(checkpoint_dir).name)

    @hookimpl
    def on_train_end(self, model: Any) -> None:
        if self.run_id is not None and self.config.log_model:
            with tempfile.TemporaryDirectory() as tmp, self.bounded():
                self.client.log_artifacts(self.run_id, str(save_model(model, tmp)), "model")
        self._end("FINISHED")

    @hookimpl
    def on_exception(self) -> None:
        self._end("FAILED")

    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._checkpoint_run_id = state.get("run_id")

    # ---- for subclasses, then the run ------------------------------------------------------

    def resolve_tracking_uri(self) -> str | None:
        """The tracking URI to log to, or ``None`` to log nothing to MLflow."""
        import mlflow

        if self.config.tracking_uri:
            return self.config.tracking_uri
        uri = mlflow.get_tracking_uri()
        if not mlflow.is_tracking_uri_set():
            logger.warning("%s: no tracking URI set (tracking_uri / MLFLOW_TRACKING_URI); "
                           "logging to MLflow's local default %s.", self.plugin_name, uri)
        return uri

    def _start(self, args: Any, model: Any) -> bool:
        """Open or reattach the run unless one is there; ``False`` when there is no target."""
        if self.run_id is not None or self._off:
            return not self._off
        from mlflow import MlflowClient

        self.tracking_uri = self.resolve_tracking_uri()
        if self.tracking_uri is None:
            self._off = True
            return False
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        with self.bounded():
            self._open_run(args, self._params(args, model))
        self._open = True
        return True

    def _open_run(self, args: Any, params: dict[str, str]) -> None:
        """In order: ``run_id`` (HF's ``MLFLOW_RUN_ID``); the user's active run around
        ``train()`` (unless ``nested_run``: then a child of it); the checkpoint's run; a new one."""
        import mlflow
        from mlflow.exceptions import MlflowException
        from mlflow.tracking.context.registry import resolve_tags
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        given = self.config.tags if isinstance(self.config.tags, dict) else {}
        client, tags = self.client, {str(k): str(v) for k, v in given.items()}
        active = mlflow.active_run() if self.tracking_uri == mlflow.get_tracking_uri() else None
        run, owned = None, True
        if self.config.run_id:
            run = client.get_run(self.config.run_id)
        elif active is not None and not self.config.nested_run:
            run, owned = client.get_run(active.info.run_id), False
        elif self._checkpoint_run_id is not None:
            try:
                run = client.get_run(self._checkpoint_run_id)
            except MlflowException as exc:
                if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                    raise
            if run is None or run.info.lifecycle_stage == "deleted":
                logger.warning("%s: the checkpoint's run %s is not in %s (deleted, or another "
                               "store); starting a new run.", self.plugin_name,
                               self._checkpoint_run_id, self.tracking_uri)
                run = None
        self._checkpoint_run_id = None
        if run is not None:
            self._attach(run, params, tags, owned)
            return
        if active is not None:
            tags[MLFLOW_PARENT_RUN_ID] = active.info.run_id
        name = self.config.experiment_name
        if not name:
            experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID") or "0"
        else:
            found = client.get_experiment_by_name(name)
            experiment_id = found.experiment_id if found else client.create_experiment(name)
        run = client.create_run(experiment_id, tags=resolve_tags(tags), run_name=args.run_name)
        self.run_id, self._owned = run.info.run_id, True
        self._log_params(params, {})

    def _attach(self, run: Any, params: dict[str, str], tags: dict[str, str], owned: bool) -> None:
        self.run_id, self._owned = run.info.run_id, owned
        if owned and run.info.status != "RUNNING":
            self.client.update_run(self.run_id, status="RUNNING")
        logged = run.data.params
        changed = sorted(k for k, v in params.items() if k in logged and logged[k] != v)
        if changed:
            logger.warning("%s: run %s keeps the values it logged first for %s (MLflow parameters "
                           "cannot change).", self.plugin_name, self.run_id, ", ".join(changed))
        self._log_params({k: v for k, v in params.items() if k not in logged}, tags)

    def _params(self, args: Any, model: Any) -> dict[str, str]:
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

        params: dict[str, Any] = run_config(args, model)
        if self.config.flatten_params:  # from the unstringified values
            config = getattr(model, "config", None)
            to_dict = getattr(config, "to_dict", None)
            config = to_dict() if callable(to_dict) else config
            raw = {**args.to_dict(), **{f"model_config/{k}": v for k, v in (
                config.items() if isinstance(config, dict) else ())}}
            params = _flatten({k: raw.get(k, v) for k, v in params.items()})
        items = [(k, str(v)) for k, v in params.items()][:self.config.max_log_params]
        limit = MAX_PARAM_VAL_LENGTH  # 6000 characters in MLflow 3
        long = [k for k, v in items if len(v) > limit]
        if long:
            logger.warning("%s: parameter values longer than %d characters are truncated: %s.",
                           self.plugin_name, limit, ", ".join(long))
        return {k: v[:limit] for k, v in items}

    def _log_params(self, params: dict[str, str], tags: dict[str, str]) -> None:
        from mlflow.entities import Param, RunTag
        from mlflow.utils.validation import MAX_PARAMS_TAGS_PER_BATCH as BATCH

        items = list(params.items())
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in items[i:i + BATCH]],
                                  synchronous=True)
        if tags:
            self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()],
                                  synchronous=True)

    def _end(self, status: str) -> None:
        if self.run_id is not None and self._open:
            self._open = False
            if self._owned:
                with self.bounded():
                    self.client.set_terminated(self.run_id, status)

    @contextmanager
    def bounded(self) -> Iterator[None]:
        """MLflow reads its HTTP limits from the environment per request: ours, for our calls."""
        saved = {key: os.environ.get(key) for key in self._http_limits}
        os.environ.update(self._http_limits)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    del os.environ[key]
                else:
                    os.environ[key] = value


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """HF's ``flatten_dict``: nested dicts become ``outer.inner`` keys."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
