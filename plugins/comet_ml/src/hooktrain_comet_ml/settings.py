"""The ``[plugins.comet_ml]`` table: HF's ``COMET_*`` variables as the fallbacks
(docs/integrations/comet_ml.md, Settings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hooktrain.plugin import setting


@dataclass
class CometSettings:
    """The ``[plugins.comet_ml]`` table."""

    #: HF's COMET_MODE: online | offline | disabled (deprecated in HF) or get | get_or_create |
    #: create (comet_ml.start's modes); unset: comet's own default (get_or_create).
    mode: Literal["online", "offline", "disabled", "get", "get_or_create", "create"] | None = \
        setting(None, env="COMET_MODE")
    #: Online (True) or offline archive (False); unset: online when an API key is configured.
    online: bool | None = setting(None, env="COMET_START_ONLINE")
    project_name: str | None = setting(None, env="COMET_PROJECT_NAME")
    workspace: str | None = setting(None, env="COMET_WORKSPACE")
    #: Where offline archives go; unset: comet's configured directory, else ``./.cometml-runs``.
    offline_directory: str | None = setting(None, env="COMET_OFFLINE_DIRECTORY")
    #: Upload every checkpoint (``on_save``'s directory) as assets ``checkpoint-<step>/...``.
    log_assets: bool = setting(False, env="COMET_LOG_ASSETS")
    #: Upload the final model (``model/model.safetensors``, ``model/config.json``) at train end.
    log_model: bool = False
    #: comet's environment details (packages, host, cloud metadata, CPU/GPU metrics); unset:
    #: comet's default online, off offline (they probe the network).
    log_env_details: bool | None = None
    #: Experiment tags.
    tags: list[str] = setting(default_factory=list)
