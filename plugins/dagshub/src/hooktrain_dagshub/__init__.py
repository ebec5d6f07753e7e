"""DagsHub for hooktrain: the MLflow plugin on a repository's hosted MLflow, plus DagsHub's files.

Where runs go, first match wins: the ``repo_owner`` / ``repo_name`` settings, through
``dagshub.init`` (it checks the repository over DagsHub's web API, creating it when missing, and
sets MLflow's URI and credentials, as a user calling it would); else ``tracking_uri`` /
``MLFLOW_TRACKING_URI`` as ``dagshub.init`` left it (what HF's ``DagsHubCallback`` requires).
Without a DagsHub token (``DAGSHUB_USER_TOKEN`` or ``dagshub login``), or with neither setting,
nothing goes to DagsHub and one warning says so: ``dagshub`` would start an interactive login.

DagsHub's own logger (``DAGsHubLogger``) writes ``metrics.csv`` and ``params.yml`` next to the
checkpoints either way; a resumed run appends to ``metrics.csv`` instead of truncating it.
Runs, status, resume and faults are the MLflow plugin's. docs/integrations/dagshub.md has more.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hooktrain.plugin import ConfigError, hookimpl, run_config, setting
from hooktrain_mlflow import MLflowPlugin, MLflowSettings, metric_name

__all__ = ["DagsHubPlugin", "DagsHubSettings"]

logger = logging.getLogger("hooktrain")


@dataclass
class DagsHubSettings(MLflowSettings):
    """The ``[plugins.dagshub]`` table: every MLflow setting, plus DagsHub's."""

    #: The repository to log to; ``dagshub.init`` sets the tracking URI and credentials from it.
    repo_owner: str | None = setting(None)
    repo_name: str | None = setting(None)
    #: DagsHub's address (a self-hosted instance); default dagshub's own (https://dagshub.com).
    host: str | None = setting(None, env="DAGSHUB_CLIENT_HOST")
    #: At train end, upload the final model (``model/``) and the logger files (``dagshub/``).
    log_model: bool = setting(False, env="HF_DAGSHUB_LOG_ARTIFACTS")
    #: Write DagsHub's logger files ``metrics.csv`` and ``params.yml``.
    log_files: bool = setting(True)
    #: Where those files go; default ``output_dir``.
    files_dir: str | None = setting(None)

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.repo_owner is None) != (self.repo_name is None):
            raise ConfigError(
                "[plugins.dagshub] needs both repo_owner and repo_name, or neither (got "
                f"repo_owner={self.repo_owner!r}, repo_name={self.repo_name!r}).")


class DagsHubPlugin(MLflowPlugin):
    """MLflow on DagsHub (parameters, metrics, status, artifacts) and DagsHub's logger files."""

    settings: type = DagsHubSettings
    plugin_name = "dagshub"
    config: DagsHubSettings

    def __init__(self, settings: DagsHubSettings | None = None) -> None:
        super().__init__(settings)
        self.files: Any = None  # the open DAGsHubLogger
        self.files_dir: Path | None = None
        self._append = False  # metrics.csv continues (resumed, or reopened after train end)

    # ---- the files, written with or without a connection to DagsHub ---------------------------

    @hookimpl
    def on_train_begin(self, args: Any, state: Any, model: Any) -> None:
        with self.failing():
            if self._open_files(args):
                self.files.log_hyperparams(run_config(args, model))
        super().on_train_begin(args, state, model)

    @hookimpl
    def on_log(self, args: Any, state: Any, model: Any, logs: dict[str, Any]) -> None:
        with self.failing():
            if self._open_files(args):
                values = {metric_name(k): v for k, v in self.numeric(logs).items()}
                self.files.log_metrics(values, step_num=state.global_step)
                self.files.metrics_file.flush()
        super().on_log(args, state, model, logs)

    @hookimpl
    def on_train_end(self, args: Any, state: Any, model: Any) -> None:
        with self.failing():
            self._close_files()  # complete before before_finish uploads them
        super().on_train_end(args, state, model)

    def before_finish(self, run: str, args: Any, state: Any, model: Any) -> None:
        if self.config.log_model and self.files_dir is not None:
            with self.bounded():
                for name in ("metrics.csv", "params.yml"):
                    if (self.files_dir / name).exists():
                        self.client.log_artifact(run, str(self.files_dir / name), "dagshub")
        super().before_finish(run, args, state, model)

    def end_run(self, failure: BaseException | None = None) -> None:
        self._close_files()  # also when training or a hook failed, with or without a run
        super().end_run(failure)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._append = True

    def _open_files(self, args: Any) -> bool:
        """Open DagsHub's logger unless it is open; ``False`` when ``log_files`` is off."""
        if self.files is None and self.config.log_files:
            self.files_dir = Path(self.config.files_dir or args.output_dir)
            self.files = _logger(self.files_dir, append=self._append)
            self._append = True
        return self.files is not None

    def _close_files(self) -> None:
        files, self.files = self.files, None
        if files is not None:
            files.close()

    # ---- where MLflow runs go -------------------------------------------------------------

    def resolve_tracking_uri(self) -> str | None:
        config = self.config
        if config.repo_owner and config.repo_name:
            import dagshub
            from dagshub.auth import get_token
            from dagshub.common import config as dagshub_config

            if config.host:
                dagshub_config.set_host(config.host)  # as dagshub.init does, before its token
            try:  # never the OAuth flow dagshub starts when it finds no token
                get_token(host=dagshub_config.host, fail_if_no_token=True)
            except RuntimeError as exc:
                if "No valid tokens" not in str(exc):
                    raise
                self._nothing_to_dagshub("no DagsHub token (set DAGSHUB_USER_TOKEN or run "
                                         "`dagshub login`)")
                return None
            dagshub.init(repo_name=config.repo_name, repo_owner=config.repo_owner,
                         host=dagshub_config.host, mlflow=True, dvc=False, patch_mlflow=False)
            return os.environ["MLFLOW_TRACKING_URI"]
        if config.tracking_uri:
            return config.tracking_uri
        self._nothing_to_dagshub("no repository (repo_owner / repo_name) and no "
                                 "MLFLOW_TRACKING_URI (from dagshub.init())")
        return None

    def _nothing_to_dagshub(self, why: str) -> None:
        where = f"only {self.files_dir}/metrics.csv and params.yml are written" if (
            self.files_dir is not None) else "nothing is logged"
        logger.warning("dagshub: %s; nothing goes to DagsHub, %s.", why, where)


def _logger(directory: Path, append: bool) -> Any:
    """A ``DAGsHubLogger`` writing ``directory/metrics.csv``, appended to when ``append``."""
    from dagshub.logger import DAGsHubLogger

    class FilesLogger(DAGsHubLogger):
        def init_metrics_file(self) -> None:
            if append and os.path.exists(self.metrics_path):
                self.metrics_file = open(self.metrics_path, "a", newline="")  # noqa: SIM115
                self.metrics_csv_writer = csv.writer(self.metrics_file,
                                                     quoting=csv.QUOTE_NONNUMERIC)
            else:
                super().init_metrics_file()

    # Not eager at construction, which would truncate metrics.csv and empty params.yml.
    files = FilesLogger(metrics_path=str(directory / "metrics.csv"),
                        hparams_path=str(directory / "params.yml"), eager_logging=False)
    files.eager_logging = True
    return files
