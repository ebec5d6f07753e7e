"""Comet logging for hooktrain: parameters, metrics, summary values and checkpoints, via comet_ml.

Online when comet finds an API key, else an offline archive (``comet upload`` sends it later).
comet's network side-shows (sentry, its online CO2 tracker, long retries; offline, environment
details) stay off unless the user asks for them. See docs/integrations/comet_ml.md.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hooktrain.plugin import (
    SUMMARY_KEYS,
    TrackerPlugin,
    hookimpl,
    rewrite_key,
    run_config,
    save_model,
    setting,
)

__all__ = ["CometPlugin", "CometSettings"]

logger = logging.getLogger("hooktrain")

START_MODES = ("get", "get_or_create", "create")  #: comet_ml.start's: new or existing experiment
#: Set in the environment before comet_ml is imported, where the user has not set them.
QUIET_DEFAULTS = {
    "COMET_ERROR_TRACKING_ENABLE": "false",  # else sentry resolves its ingest host
    "COMET_AUTO_LOG_CO2": "false",  # else codecarbon's *online* tracker probes geo services
    "COMET_HTTP_SESSION_RETRY_TOTAL": "1",  # a dead server: ~3 s at start, not ~30 s
    "COMET_GET_OR_ADD_EXPERIMENT_RETRY_TOTAL": "2",
}


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
    tags: list[str] = setting(default_factory=list)  #: Experiment tags.


class CometPlugin(TrackerPlugin):
    """Logs a hooktrain run as one Comet experiment, online or offline."""

    plugin_name = "comet_ml"
    settings = CometSettings
    run_id_key = "experiment_key"

    def __init__(self, settings: CometSettings | None = None) -> None:
        super().__init__(settings)
        self._training = False
        self._said_offline = False

    experiment_key = property(lambda self: self.run_id)  #: Kept in checkpoints (run_id_key).

    @hookimpl
    def on_train_begin(self, args: Any, state: Any, model: Any) -> None:
        with self.failing():
            self._training = True
            # not new=True: train() continues the experiment an evaluate() before it ended
            if (experiment := self.ensure_run(args, state, model)) is not None:
                experiment.log_parameters(run_config(args, model))

    @hookimpl
    def on_evaluate(self) -> None:
        if not self._training:  # evaluate() on its own: close what it logged, no outcome
            with self.failing():
                TrackerPlugin.end_run(self)

    @hookimpl
    def on_predict(self, args: Any, state: Any, model: Any, metrics: dict[str, Any]) -> None:
        with self.failing():
            values = self.numeric(metrics)
            if values and self.ensure_run(args, state, model) is not None:
                self.log_metrics(self.run, values, state)
            TrackerPlugin.end_run(self)

    @hookimpl
    def on_save(self, state: Any, checkpoint_dir: Path) -> None:
        if self.run is not None and self.config.log_assets:
            with self.failing():
                self.run.log_asset_folder(str(checkpoint_dir), step=state.global_step,
                                          log_file_name=True, recursive=True)

    def open_run(self, args: Any, state: Any, model: Any, run_id: str | None) -> Any:
        """Start (or reattach to) the experiment; ``None`` when COMET_MODE=disabled."""
        if self.config.mode == "disabled":
            logger.warning("comet_ml: mode is 'disabled' (COMET_MODE): nothing is logged to "
                           "Comet. Prefer disable_plugins=['comet_ml'].")
            return None
        for name, value in QUIET_DEFAULTS.items():
            os.environ.setdefault(name, value)
        if "comet_ml" not in sys.modules:
            # torch is already imported, so comet's framework auto-logging cannot hook in
            # anyway; this only silences its "import comet_ml before torch" warning.
            os.environ.setdefault("COMET_DISABLE_AUTO_LOGGING", "1")
        import comet_ml

        online, why_offline = self.config.online, ""
        if online is None and self.config.mode in ("online", "offline"):
            online = self.config.mode == "online"
        if online is not False and not comet_ml.config.get_api_key(None, comet_ml.get_config()):
            online, why_offline = False, "no Comet API key (COMET_API_KEY or `comet login`)"
        online = online is not False  # unset, with an API key: online
        experiment = self._start(comet_ml, args, online, run_id)
        if online and not experiment.alive:  # comet logged why; it would drop everything
            online, why_offline = False, "could not start an online experiment (see above)"
            experiment = self._start(comet_ml, args, online, run_id)
        if not online and not self._said_offline:
            self._said_offline = True
            logger.log(logging.WARNING if why_offline else logging.INFO,
                       "comet_ml: %slogging to an offline archive in %s; upload it with "
                       "`comet upload <archive>.zip`.",
                       f"{why_offline}: " if why_offline else "", experiment.offline_directory)
        return experiment

    def run_id_of(self, run: Any) -> str | None:
        return run.get_key()

    def log_metrics(self, run: Any, metrics: dict[str, float], state: Any) -> None:
        # HF's CometCallback names: eval/x, test/x, train/x (no comet context prefix).
        run.log_metrics({rewrite_key(k): v for k, v in metrics.items()},
                        step=state.global_step, epoch=state.epoch)
        if summary := {k: v for k, v in metrics.items() if k in SUMMARY_KEYS}:
            run.log_others(summary)

    def before_finish(self, run: Any, args: Any, state: Any, model: Any) -> None:
        if self.config.log_model:
            with tempfile.TemporaryDirectory() as tmp:  # offline, comet copies each file now
                run.log_asset_folder(str(save_model(model, Path(tmp) / "model")),
                                     step=state.global_step, log_file_name=True)

    def end_run(self, failure: BaseException | None = None) -> None:
        """The outcome is recorded on the experiment, the user's too (left running): the other
        ``status`` and, for a failure, comet's crash report (as its excepthook's: offline in the
        archive's experiment.json, online shown as crashed)."""
        experiment, self._training = self.run, False
        try:
            if experiment is not None:
                report = getattr(experiment, "_report_experiment_error", None)
                if failure is not None and callable(report):
                    report(f"{type(failure).__name__}: {failure}", has_crashed=True)
                experiment.log_other("status", "finished" if failure is None else "failed")
        finally:
            super().end_run(failure)

    def finish_run(self, run: Any, failure: BaseException | None) -> None:
        offline = hasattr(run, "offline_directory")
        before = _archives(run) if offline else set()
        run.end()  # offline: writes the archive
        # comet logs its own failures (a vanished temp directory, a full disk) and goes on;
        # a missing archive means everything logged is lost, which must not pass silently.
        if offline and not _archives(run) - before:
            raise RuntimeError(f"comet_ml: the offline archive of experiment {run.get_key()} "
                               f"was not written to {run.offline_directory} (see comet's errors "
                               "above); what this run logged to Comet is lost.")

    def _start(self, comet_ml: Any, args: Any, online: bool, key: str | None) -> Any:
        mode = self.config.mode if self.config.mode in START_MODES else None
        key = None if mode == "create" else key  # else resumed, or reopened: the same one
        mode = mode or ("get_or_create" if key else None)
        env_details = self.config.log_env_details
        config = comet_ml.ExperimentConfig(
            name=args.run_name, tags=list(self.config.tags) or None, auto_log_co2=False,
            offline_directory=self.config.offline_directory,
            log_env_details=env_details if env_details is not None or online else False)
        running = comet_ml.get_running_experiment()
        try:
            experiment = comet_ml.start(
                project_name=self.config.project_name, workspace=self.config.workspace,
                experiment_key=key, mode=mode, online=online, experiment_config=config)
        except Exception:
            # A constructor that fails half-way (a bad offline directory) leaves comet's global
            # "running experiment" set to the broken object; the next start would log into it.
            if comet_ml.get_running_experiment() not in (None, running):
                comet_ml.config.set_global_experiment(running)
            raise
        # comet_ml.start returns an experiment the user already runs when it matches: log
        # into it, but leave ending it to them.
        self.owns_run = experiment is not running
        return experiment


def _archives(experiment: Any) -> set[tuple[Path, int]]:
    """The experiment's offline archives, with their modification times."""
    found = Path(experiment.offline_directory).glob(f"{experiment.get_key()}*.zip")
    return {(path, path.stat().st_mtime_ns) for path in found}
