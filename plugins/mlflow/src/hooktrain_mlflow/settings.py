"""``MLflowSettings``: the ``[plugins.mlflow]`` table, each field falling back to HF's variable."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hooktrain.plugin import ConfigError, setting


@dataclass
class MLflowSettings:
    """The ``[plugins.mlflow]`` table; each field falls back to HF's environment variable."""

    #: Where runs go (``http://...``, ``sqlite:///...``); default MLflow's own tracking URI.
    tracking_uri: str | None = setting(None, env="MLFLOW_TRACKING_URI")
    #: Experiment (created when missing); default ``MLFLOW_EXPERIMENT_ID``, else "Default".
    experiment_name: str | None = setting(None, env="MLFLOW_EXPERIMENT_NAME")
    #: Extra run tags: a table, or a JSON object (``MLFLOW_TAGS``).
    tags: dict[str, Any] | str | None = setting(None, env="MLFLOW_TAGS")
    #: Start a child run of the active MLflow run instead of logging into it.
    nested_run: bool = setting(False, env="MLFLOW_NESTED_RUN")
    #: Log into this existing run, and end it at the end of training.
    run_id: str | None = setting(None, env="MLFLOW_RUN_ID")
    #: Log dict-valued parameters as ``key.subkey`` entries.
    flatten_params: bool = setting(False, env="MLFLOW_FLATTEN_PARAMS")
    #: Log at most this many parameters.
    max_log_params: int | None = setting(None, env="MLFLOW_MAX_LOG_PARAMS")
    #: Upload each checkpoint, when saved, as ``checkpoint-<step>/``.
    log_artifacts: bool = setting(False, env="HF_MLFLOW_LOG_ARTIFACTS")
    #: Upload the final model (``model/``: ``model.safetensors``, ``config.json``) at train end.
    log_model: bool = setting(False)
    #: Seconds per HTTP request, and retries, for this plugin's calls.
    request_timeout: int = setting(15, env="MLFLOW_HTTP_REQUEST_TIMEOUT")
    request_max_retries: int = setting(2, env="MLFLOW_HTTP_REQUEST_MAX_RETRIES")

    def __post_init__(self) -> None:
        # HF reads MLFLOW_TAGS as JSON; the config's typed parser only knows TOML literals.
        tags = self.tags
        if isinstance(tags, str):
            try:
                self.tags = json.loads(tags)
            except ValueError:
                pass
        if self.tags is not None and not isinstance(self.tags, dict):
            raise ConfigError("tags (MLFLOW_TAGS) must be a JSON object such as "
                              f"'{{\"team\": \"nlp\"}}', got {tags!r}.")
