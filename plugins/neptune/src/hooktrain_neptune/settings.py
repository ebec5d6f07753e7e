"""HF's ``NeptuneCallback`` arguments as settings (docs/integrations/neptune.md, Settings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from hooktrain.plugin import ConfigError, setting

#: ``init_run`` arguments the plugin decides (each has its own setting, or is the run's identity).
RESERVED = ("mode", "project", "api_token", "custom_run_id", "with_id")


@dataclass
class NeptuneSettings:
    """The ``[plugins.neptune]`` table; neptune's own variables are the fallbacks."""

    #: ``workspace/project``; needed online.
    project: str | None = setting(None, env="NEPTUNE_PROJECT")
    #: The API token; needed online.
    api_token: str | None = setting(None, env="NEPTUNE_API_TOKEN")
    #: ``async``, ``sync``, ``offline`` or ``debug``; default async, offline without credentials.
    mode: Literal["async", "sync", "offline", "debug"] | None = setting(None, env="NEPTUNE_MODE")
    #: The run's name (``sys/name``); default ``run_name`` from the training arguments.
    name: str | None = None
    #: neptune's custom run id (runs sharing one log into the same run, online).
    custom_run_id: str | None = setting(None, env="NEPTUNE_CUSTOM_RUN_ID")
    #: The namespace everything is logged under (HF's ``base_namespace``); ``""``: the top level.
    base_namespace: str = "finetuning"
    #: Log the training arguments and the model's config (HF's ``log_parameters``).
    log_parameters: bool = True
    #: HF's ``log_checkpoints``: ``same`` (every checkpoint), ``last``, ``best``; unset (also
    #: ``none`` and ``false``, as a TOML boolean too): none.
    log_checkpoints: Literal["same", "last", "best", "false"] | None = None
    #: More keyword arguments for ``neptune.init_run`` (``tags``, ``capture_stdout``, ...).
    init_run: dict[str, Any] = setting(default_factory=dict)
    #: Seconds ``run.stop()`` waits for uploads; the rest stays on disk for ``neptune sync``.
    stop_timeout: float | None = 60.0

    def __post_init__(self) -> None:
        # Runs before the Literal check of settings built in Python: compare in any case.
        if str(self.log_checkpoints).strip().lower() == "false":
            self.log_checkpoints = None
        self.base_namespace = self.base_namespace.strip("/")
        taken = sorted(set(self.init_run) & set(RESERVED))
        if taken:
            raise ConfigError(f"[plugins.neptune] init_run may not set {', '.join(taken)}: "
                              f"use the settings of the same name (with_id comes from the "
                              f"checkpoint on resume).")
