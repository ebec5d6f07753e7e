"""MLflow tracking for hooktrain: parameters, batched metrics, checkpoints and the run's status.

The run lifecycle (open or resume at ``train()``'s start, the id in the checkpoint, FINISHED at
the end, FAILED when training or one of the plugin's hooks raises) is
:class:`~hooktrain.plugin.TrackerPlugin`'s; what is MLflow's is here. Everything goes through
one ``MlflowClient`` on the training thread, never MLflow's fluent API: a failing server raises
inside the hook, where hooktrain reports the plugin once and switches it off while training
finishes; every request is bounded by ``request_timeout`` / ``request_max_retries`` (MLflow's
defaults, 120 s and 7 retries with back-off, make a dead server cost minutes); and no fluent
"active run" is left for MLflow's exit handler to close as FINISHED after a crash.
docs/integrations/mlflow.md has more.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from hooktrain.plugin import TrackerPlugin, hookimpl, save_model
from hooktrain_mlflow.params import log_missing_params, log_params, run_params
from hooktrain_mlflow.settings import MLflowSettings

__all__ = ["MLflowPlugin", "MLflowSettings", "metric_name"]

logger = logging.getLogger("hooktrain")

_UNSAFE = re.compile(r"[^0-9A-Za-z_\-. :/]")


def metric_name(key: str) -> str:
    """HF's MLflow names: the key as logged (``loss``, ``eval_loss``), unsafe characters ``_``."""
    return _UNSAFE.sub("_", key)


class MLflowPlugin(TrackerPlugin):
    """One MLflow run per ``train()``: parameters, metrics at ``global_step``, status.

    The run the base class holds (:attr:`run`) is the MLflow run's id."""

    plugin_name = "mlflow"
    settings: type = MLflowSettings
    config: MLflowSettings

    def __init__(self, settings: MLflowSettings | None = None) -> None:
        super().__init__(settings)
        self.tracking_uri: str | None = None
        self.client: Any = None
        self._after_train = False  # the open run is the one the last train() ended
        self._http_limits = {
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(self.config.request_timeout),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.config.request_max_retries),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": os.environ.get(
                "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
        }

    # ---- the run -------------------------------------------------------------------------

    def resolve_tracking_uri(self) -> str | None:
        """The tracking URI to log to, or ``None`` to log nothing to MLflow (for subclasses)."""
        import mlflow

        if self.config.tracking_uri:
            return self.config.tracking_uri
        uri = mlflow.get_tracking_uri()
        if not mlflow.is_tracking_uri_set():
            logger.warning("%s: no tracking URI set (tracking_uri / MLFLOW_TRACKING_URI); "
                           "logging to MLflow's local default %s.", self.plugin_name, uri)
        return uri

    def run_id_of(self, run: str) -> str:
        return run

    def open_run(self, args: Any, state: Any, model: Any, run_id: str | None) -> str | None:
        self._after_train = run_id is not None and run_id != self.resume_id
        if self._after_train:
            # evaluate() after train(): into the run train() ended, its status left alone
            self.owns_run = False
            return run_id
        from mlflow import MlflowClient

        self.tracking_uri = self.resolve_tracking_uri()
        if self.tracking_uri is None:
            return None
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        with self.bounded():
            return self._open_or_attach(args, run_params(args, model, self.config,
                                                         self.plugin_name), run_id)

    def _open_or_attach(self, args: Any, params: dict[str, str], checkpoint_id: str | None) -> str:
        """In order: ``run_id`` (HF's ``MLFLOW_RUN_ID``); the user's active run around
        ``train()`` (unless ``nested_run``: then a child of it); the checkpoint's run; a new one."""
        import mlflow
        from mlflow.tracking.context.registry import resolve_tags
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        client = self.client
        tags = {str(k): str(v) for k, v in (self.config.tags or {}).items()}
        active = mlflow.active_run() if self.tracking_uri == mlflow.get_tracking_uri() else None
        run = None
        if self.config.run_id:
            run = client.get_run(self.config.run_id)
        elif active is not None and not self.config.nested_run:
            run, self.owns_run = client.get_run(active.info.run_id), False  # the user's
        elif checkpoint_id is not None:
            run = self._checkpoint_run(checkpoint_id)
        if run is not None:
            if self.owns_run and run.info.status != "RUNNING":
                client.update_run(run.info.run_id, status="RUNNING")
            log_missing_params(client, run, params, tags, self.plugin_name)
            return run.info.run_id
        if active is not None:
            tags[MLFLOW_PARENT_RUN_ID] = active.info.run_id
        name = self.config.experiment_name
        if not name:
            experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID") or "0"
        else:
            found = client.get_experiment_by_name(name)
            experiment_id = found.experiment_id if found else client.create_experiment(name)
        run_id = client.create_run(experiment_id, tags=resolve_tags(tags),
                                   run_name=args.run_name).info.run_id
        log_params(client, run_id, params, {})
        return run_id

    def _checkpoint_run(self, run_id: str) -> Any:
        """The checkpoint's run, or ``None`` (one warning) when this store does not have it."""
        from mlflow.exceptions import MlflowException

        run = None
        try:
            run = self.client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                raise
        if run is None or run.info.lifecycle_stage == "deleted":
            logger.warning("%s: the checkpoint's run %s is not in %s (deleted, or another "
                           "store); starting a new run.", self.plugin_name, run_id,
                           self.tracking_uri)
            return None
        return run

    def log_metrics(self, run: str, metrics: dict[str, float], state: Any) -> None:
        from mlflow.entities import Metric
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH as BATCH

        now = int(time.time() * 1000)
        items = [Metric(metric_name(key), value, now, state.global_step)
                 for key, value in metrics.items()]
        with self.bounded():
            for i in range(0, len(items), BATCH):  # one request per on_log
                self.client.log_batch(run, metrics=items[i:i + BATCH], synchronous=True)

    def before_finish(self, run: str, args: Any, state: Any, model: Any) -> None:
        if self.config.log_model:
            with tempfile.TemporaryDirectory() as tmp, self.bounded():
                self.client.log_artifacts(run, str(save_model(model, tmp)), "model")

    def finish_run(self, run: str, failure: BaseException | None) -> None:
        with self.bounded():
            self.client.set_terminated(run, "FINISHED" if failure is None else "FAILED")

    # ---- hooks beyond the base's ---------------------------------------------------------

    @hookimpl
    def on_train_begin(self, args: Any, state: Any, model: Any) -> None:
        if self._after_train:
            self.run = None  # let go of the run evaluate() logged into: a new train(), a new run
        super().on_train_begin(args, state, model)

    @hookimpl
    def on_save(self, checkpoint_dir: Path) -> None:
        with self.failing():
            if self.config.log_artifacts and self.run is not None:
                with self.bounded():
                    self.client.log_artifacts(self.run, str(checkpoint_dir),
                                              Path(checkpoint_dir).name)

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
