"""Comet logging for hooktrain: parameters, metrics, summary values and checkpoints, via comet_ml.

Online when comet finds an API key (``COMET_API_KEY``, ``~/.comet.config``), else an offline
archive (``<offline_directory>/<experiment key>*.zip``, uploadable later with ``comet upload``),
said once. Where the user has not set them, the plugin switches off comet's network side-shows
before comet_ml is imported: error tracking (sentry DNS lookups), its CO2 tracker (codecarbon's
online tracker probes geo services; also forced off per experiment) and long connection retries.
Offline, environment details (cloud-metadata probes of 169.254.169.254, a DNS lookup for the
host's IP, system-metric threads) are off unless ``log_env_details`` says so.

Calls are synchronous; comet queues messages for its own background thread. Errors comet raises
propagate, so hooktrain reports the plugin once, switches it off and training finishes.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hooktrain import hookimpl
from hooktrain.errors import ConfigError
from hooktrain.integration import SUMMARY_KEYS, NumericFilter, rewrite_key, run_config, save_model
from hooktrain.plugin_host.settings import from_environment

__all__ = ["CometPlugin", "CometSettings"]

logger = logging.getLogger("hooktrain")

#: COMET_MODE values with HF's meaning: the deprecated online/offline/disabled switch, and the
#: comet_ml.start() modes that decide between a new and an existing experiment.
MODES = ("online", "offline", "disabled", "get", "get_or_create", "create")
START_MODES = ("get", "get_or_create", "create")

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
    mode: str | None = field(default=None, metadata={"env": "COMET_MODE"})
    #: Online (True) or offline archive (False); unset: online when an API key is configured.
    online: bool | None = field(default=None, metadata={"env": "COMET_START_ONLINE"})
    project_name: str | None = field(default=None, metadata={"env": "COMET_PROJECT_NAME"})
    workspace: str | None = field(default=None, metadata={"env": "COMET_WORKSPACE"})
    #: Where offline archives go; unset: comet's configured directory, else ``./.cometml-runs``.
    offline_directory: str | None = field(default=None,
                                          metadata={"env": "COMET_OFFLINE_DIRECTORY"})
    #: Upload every checkpoint (``on_save``'s directory) as assets ``checkpoint-<step>/...``.
    log_assets: bool = field(default=False, metadata={"env": "COMET_LOG_ASSETS"})
    #: Upload the final model (``model/model.safetensors``, ``model/config.json``) at train end.
    log_model: bool = False
    #: comet's environment details (packages, host, cloud metadata, CPU/GPU metrics); unset:
    #: comet's default online, off offline (they probe the network).
    log_env_details: bool | None = None
    #: Experiment tags.
    tags: list[str] = field(default_factory=list)


class CometPlugin:
    """Logs a hooktrain run as one Comet experiment, online or offline."""

    settings = CometSettings

    def __init__(self, settings: CometSettings | None = None) -> None:
        self.config = settings or from_environment("comet_ml", CometSettings)
        self.mode = (self.config.mode or "").strip().lower() or None
        if self.mode not in (None, *MODES):
            raise ConfigError(
                f"[plugins.comet_ml] mode (or $COMET_MODE) is {self.config.mode!r}; valid: "
                f"{', '.join(MODES)}."
            )
        self.experiment: Any = None
        #: The experiment's key: kept in checkpoints, so a resumed run logs to the same one.
        self.experiment_key: str | None = None
        self._owned = False
        self._training = False
        self._said: set[str] = set()
        self._numeric = NumericFilter("comet_ml")

    # ---- checkpoint state ----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"experiment_key": self.experiment_key}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.experiment_key = state.get("experiment_key")

    # ---- hooks ---------------------------------------------------------------------------

    @hookimpl
    def on_train_begin(self, args: Any, model: Any) -> None:
        self._training = True
        if self._open(args):
            self.experiment.log_parameters(run_config(args, model))

    @hookimpl
    def on_log(self, args: Any, state: Any, logs: dict[str, Any]) -> None:
        self._log_metrics(args, state, logs)

    @hookimpl
    def on_evaluate(self) -> None:
        if not self._training:  # evaluate() on its own: close what it logged
            self._end(None)

    @hookimpl
    def on_predict(self, args: Any, state: Any, metrics: dict[str, Any]) -> None:
        self._log_metrics(args, state, metrics)
        self._end(None)

    @hookimpl
    def on_save(self, state: Any, checkpoint_dir: Path) -> None:
        if self.experiment is not None and self.config.log_assets:
            self.experiment.log_asset_folder(str(checkpoint_dir), step=state.global_step,
                                             log_file_name=True, recursive=True)

    @hookimpl
    def on_train_end(self, state: Any, model: Any) -> None:
        if self.experiment is not None and self.config.log_model:
            with tempfile.TemporaryDirectory() as tmp:  # offline, comet copies each file now
                self.experiment.log_asset_folder(str(save_model(model, Path(tmp) / "model")),
                                                 step=state.global_step, log_file_name=True)
        self._training = False
        self._end("finished")

    @hookimpl
    def on_exception(self, exception: BaseException) -> None:
        self._training = False
        experiment = self.experiment
        if experiment is None:
            return
        # Comet's own crash report (its excepthook uses it): offline it is stored in the
        # archive's experiment.json (customer_error_reported), online the experiment shows
        # as crashed. Also logged as the ``status`` other, as a visible and public record.
        report = getattr(experiment, "_report_experiment_error", None)
        if callable(report):
            report(f"{type(exception).__name__}: {exception}", has_crashed=True)
        self._end("failed")

    # ---- experiment ----------------------------------------------------------------------

    def _log_metrics(self, args: Any, state: Any, logs: dict[str, Any]) -> None:
        values = self._numeric(logs)
        if not values or not self._open(args):
            return
        # HF's CometCallback names: eval/x, test/x, train/x (no comet context prefix).
        self.experiment.log_metrics({rewrite_key(k): v for k, v in values.items()},
                                    step=state.global_step, epoch=state.epoch)
        summary = {k: v for k, v in values.items() if k in SUMMARY_KEYS}
        if summary:
            self.experiment.log_others(summary)

    def _open(self, args: Any) -> bool:
        """Start (or reattach to) the experiment; False when COMET_MODE=disabled."""
        if self.experiment is not None:
            return True
        if self.mode == "disabled":
            self._say_once("disabled", logging.WARNING,
                           "comet_ml: mode is 'disabled' (COMET_MODE): nothing is logged to "
                           "Comet. Prefer disable_plugins=['comet_ml'].")
            return False
        for name, value in QUIET_DEFAULTS.items():
            os.environ.setdefault(name, value)
        if "comet_ml" not in sys.modules:
            # torch is already imported, so comet's framework auto-logging cannot hook in
            # anyway; this only silences its "import comet_ml before torch" warning.
            os.environ.setdefault("COMET_DISABLE_AUTO_LOGGING", "1")
        import comet_ml

        online, why_offline = self._want_online(comet_ml)
        experiment = self._start(comet_ml, args, online)
        if online and not experiment.alive:  # comet logged why; it would drop everything
            online, why_offline = False, "could not start an online experiment (see above)"
            experiment = self._start(comet_ml, args, online)
        if not online:
            self._say_once("offline", logging.WARNING if why_offline else logging.INFO,
                           "comet_ml: %slogging to an offline archive in %s; upload it with "
                           "`comet upload <archive>.zip`.",
                           f"{why_offline}: " if why_offline else "",
                           experiment.offline_directory)
        self.experiment, self.experiment_key = experiment, experiment.get_key()
        return True

    def _want_online(self, comet_ml: Any) -> tuple[bool, str]:
        """Online or not, and why offline when nobody asked for it."""
        online = self.config.online
        if online is None and self.mode in ("online", "offline"):
            online = self.mode == "online"
        if online is False:
            return False, ""
        if not comet_ml.config.get_api_key(None, comet_ml.get_config()):
            return False, "no Comet API key (COMET_API_KEY or `comet login`)"
        return True, ""

    def _start(self, comet_ml: Any, args: Any, online: bool) -> Any:
        mode = self.mode if self.mode in START_MODES else None
        key = None
        if self.experiment_key is not None and mode != "create":  # resumed, or reopened
            key, mode = self.experiment_key, mode or "get_or_create"
        env_details = self.config.log_env_details
        config = comet_ml.ExperimentConfig(
            name=args.run_name, tags=list(self.config.tags) or None, auto_log_co2=False,
            offline_directory=self.config.offline_directory,
            log_env_details=env_details if env_details is not None or online else False,
        )
        running = comet_ml.get_running_experiment()
        try:
            experiment = comet_ml.start(
                project_name=self.config.project_name, workspace=self.config.workspace,
                experiment_key=key, mode=mode, online=online, experiment_config=config,
            )
        except Exception:
            # A constructor that fails half-way (a bad offline directory) leaves comet's
            # global "running experiment" set to the broken object; the next start would
            # log into it.
            if comet_ml.get_running_experiment() not in (None, running):
                comet_ml.config.set_global_experiment(running)
            raise
        # comet_ml.start returns an experiment the user already runs when it matches: log
        # into it, but leave ending it to them.
        self._owned = experiment is not running
        return experiment

    def _end(self, status: str | None) -> None:
        experiment, self.experiment = self.experiment, None
        if experiment is None:
            return
        if status is not None:
            experiment.log_other("status", status)
        if not self._owned:
            return
        offline = hasattr(experiment, "offline_directory")
        before = _archives(experiment) if offline else set()
        experiment.end()  # offline: writes the archive
        # comet logs its own failures (a vanished temp directory, a full disk) and goes on;
        # a missing archive means everything logged is lost, which must not pass silently.
        if offline and not _archives(experiment) - before:
            raise RuntimeError(
                f"comet_ml: the offline archive of experiment {experiment.get_key()} was not "
                f"written to {experiment.offline_directory} (see comet's errors above); what "
                "this run logged to Comet is lost."
            )

    def _say_once(self, what: str, level: int, message: str, *values: Any) -> None:
        if what not in self._said:
            self._said.add(what)
            logger.log(level, message, *values)


def _archives(experiment: Any) -> set[tuple[Path, int]]:
    """The experiment's offline archives, with their modification times."""
    found = Path(experiment.offline_directory).glob(f"{experiment.get_key()}*.zip")
    return {(path, path.stat().st_mtime_ns) for path in found}
