"""CodeCarbon emissions tracking for hooktrain: an offline tracker around every ``train()`` call.

One ``codecarbon.OfflineEmissionsTracker`` per ``train()``: built when the Trainer is (its
one-off hardware detection stays out of ``train_runtime``), started at train begin, stopped at
train()'s final summary log (which gets ``emissions_kg`` and ``energy_consumed_kwh`` through
``on_pre_log``, so every logging plugin records them) and on an exception. Each stop appends one
row to ``emissions.csv``. Offline whatever codecarbon's configuration says: the country comes
from the settings, the environment or codecarbon's files, never from the network, and the only
output is the CSV file.

This is a measurement, not a run of a tracking library, so it is no ``TrackerPlugin``: nothing is
logged at ``on_log``, ``evaluate()`` is not measured, the tracker stops at the summary log rather
than at train end, and a repeated ``train()`` keeps codecarbon's run id. codecarbon swallows its
own errors; the plugin raises when a tracker was not set up or recorded nothing, so hooktrain
reports the plugin once and training goes on. See docs/integrations/codecarbon.md.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any, Literal, get_args

from hooktrain.plugin import ConfigError, from_environment, hookimpl, setting

__all__ = ["CodeCarbonPlugin", "CodeCarbonSettings"]

logger = logging.getLogger("hooktrain")

LogLevel = Literal["debug", "info", "warning", "error", "critical"]


@dataclass
class CodeCarbonSettings:
    """The ``[plugins.codecarbon]`` table; each key falls back to codecarbon's own variable."""

    #: 3-letter ISO code of the country whose energy mix prices a kWh (``FRA``, ``USA``, ...).
    #: Unset: codecarbon's configuration files, else codecarbon's world average (475 g/kWh).
    country_iso_code: str | None = setting(None, env="CODECARBON_COUNTRY_ISO_CODE")
    #: A US state, Canadian province, ... for codecarbon's regional data (``california``).
    region: str | None = setting(None, env="CODECARBON_REGION")
    #: Where ``emissions.csv`` goes; default ``<output_dir>/codecarbon``.
    output_dir: str | None = setting(None, env="CODECARBON_OUTPUT_DIR")
    #: The ``project_name`` column; unset: codecarbon's configuration, else ``codecarbon``.
    project_name: str | None = setting(None, env="CODECARBON_PROJECT_NAME")
    #: codecarbon's own log level (its logger ``codecarbon``, printed to stderr).
    log_level: LogLevel = setting("warning", env="CODECARBON_LOG_LEVEL")

    def __post_init__(self) -> None:
        if self.country_iso_code is not None:
            self.country_iso_code = self.country_iso_code.strip().upper() or None
        # The config and the environment are checked against the Literal before this runs;
        # settings built in Python (CodeCarbonSettings(log_level="INFO")) are checked here.
        self.log_level = str(self.log_level).strip().lower()  # type: ignore[assignment]
        if self.log_level not in get_args(LogLevel):
            raise ConfigError(
                f"[plugins.codecarbon] log_level must be one of "
                f"{', '.join(map(repr, get_args(LogLevel)))}, got {self.log_level!r}."
            )


class CodeCarbonPlugin:
    """Tracks the energy and emissions of every ``train()`` with codecarbon, offline."""

    settings = CodeCarbonSettings
    hooktrain_not_replayable = "it measures the machine's energy while training runs"

    def __init__(self, settings: CodeCarbonSettings | None = None) -> None:
        self.config = settings or from_environment("codecarbon", CodeCarbonSettings)
        import codecarbon  # noqa: F401 - importing it sets its logger's level from the environment

        # before codecarbon reads its configuration, which it reports at INFO
        logging.getLogger("codecarbon").setLevel(self.config.log_level.upper())
        #: The country every tracker uses (validated), or ``None`` for the world average.
        self.country_iso_code: str | None = self._country()
        #: The running tracker, between train begin and train end / an exception.
        self.tracker: Any = None
        #: codecarbon's ``EmissionsData`` of the last tracked ``train()`` (its CSV row).
        self.emissions_data: Any = None
        #: That row's totals under their names in the summary log.
        self.emissions: dict[str, float] = {}
        #: The directory of ``emissions.csv`` (known once the Trainer is built).
        self.output_dir: str | None = None
        self._ready: Any = None  # built and hardware detected at Trainer(), started in train()
        self._run_id: str | None = None
        self._said_world_average = False

    # ---- resumable identity: codecarbon's run_id --------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self._run_id} if self._run_id else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._run_id = state.get("run_id") or self._run_id

    # ---- hooks ----------------------------------------------------------------------------

    @hookimpl
    def on_init_end(self, args: Any) -> None:
        # The first tracker in a process costs ~3 s (pandas import, hardware detection): paid
        # here, in Trainer(), rather than inside train() and its train_runtime. Later ones ~10 ms.
        self._ready = self._tracker(args)
        self._ready.get_detected_hardware()

    @hookimpl
    def on_train_begin(self, args: Any) -> None:
        if self.tracker is not None:  # a train() that ended without on_train_end / on_exception
            self._stop()
        tracker, self._ready = self._ready or self._tracker(args), None
        if self._run_id is None:
            self._run_id = str(tracker.run_id)
        else:  # a resumed (or repeated) train(): its row carries the run's id
            tracker.run_id = uuid.UUID(self._run_id)
        self.tracker = tracker
        tracker.start()
        logger.info("codecarbon: tracking this run (%s) into %s.",
                    self.country_iso_code or "world average", self.output_dir)

    @hookimpl
    def on_pre_log(self, logs: dict[str, Any]) -> dict[str, float] | None:
        # train()'s final summary (train_runtime, ...): stop here, so the row covers what
        # train_runtime covers, and add the totals to that log for every logging plugin.
        if "train_runtime" not in logs or self.tracker is None:
            return None
        self._stop()
        return dict(self.emissions)

    @hookimpl
    def on_train_end(self) -> None:
        if self.tracker is not None:  # no summary came (a plugin registered mid-run, ...)
            self._stop()

    @hookimpl
    def on_exception(self) -> None:
        # codecarbon has no run status: the row written here covers the run up to the failure.
        if self.tracker is not None:
            self._stop()

    # ---- the tracker -----------------------------------------------------------------------

    def _country(self) -> str | None:
        from codecarbon.core.config import get_hierarchical_config
        from codecarbon.input import DataSource

        code = self.config.country_iso_code
        if code is None:  # codecarbon's .codecarbon.config files (the variable is the fallback)
            code = (get_hierarchical_config().get("country_iso_code") or "").strip().upper()
        if not code:
            return None
        with open(DataSource().global_energy_mix_data_path, encoding="utf-8") as handle:
            known = json.load(handle)
        if code not in known:
            raise ConfigError(
                f"[plugins.codecarbon] country_iso_code (or $CODECARBON_COUNTRY_ISO_CODE, or "
                f"codecarbon's config file) {code!r} is not a 3-letter ISO code codecarbon has "
                f"data for (e.g. USA, FRA, DEU, GBR, IND, CHN; codecarbon would silently use its "
                f"world average)."
            )
        return code

    def _tracker(self, args: Any) -> Any:
        from codecarbon import OfflineEmissionsTracker, OutputMethod
        from codecarbon.core.config import get_hierarchical_config

        config = self.config
        directory = (config.output_dir or get_hierarchical_config().get("output_dir")
                     or os.path.join(args.output_dir, "codecarbon"))
        os.makedirs(directory, exist_ok=True)  # codecarbon drops its CSV output without it
        self.output_dir = directory
        options: dict[str, Any] = {}
        if config.region:
            options["region"] = config.region
        if config.project_name:
            options["project_name"] = config.project_name
        if self.country_iso_code is None and not self._said_world_average:
            self._said_world_average = True
            logger.warning(
                "codecarbon: no country set ([plugins.codecarbon] country_iso_code or "
                "CODECARBON_COUNTRY_ISO_CODE); emissions use codecarbon's world-average carbon "
                "intensity (475 g CO2eq/kWh). The country is never looked up over the network."
            )
        tracker = OfflineEmissionsTracker(
            country_iso_code=self.country_iso_code, output_dir=directory,
            log_level=config.log_level,
            # offline whatever codecarbon's configuration says: the CSV file, nothing sent
            output_methods=[OutputMethod.CSV], emissions_endpoint=None,
            electricitymaps_api_token=None, **options,
        )
        if not hasattr(tracker, "run_id"):  # set last in codecarbon's (error-swallowing) __init__
            raise RuntimeError(
                "codecarbon could not set up its tracker (its log above, logger 'codecarbon', "
                "says why; e.g. allow_multiple_runs=false while another tracker runs)."
            )
        return tracker

    def _stop(self) -> None:
        tracker, self.tracker = self.tracker, None
        tracker.stop()
        data = getattr(tracker, "final_emissions_data", None)
        if data is None:  # codecarbon logged the error and returned None
            raise RuntimeError(
                "codecarbon's tracker stopped without recording emissions (its log above, "
                "logger 'codecarbon', says why; e.g. its output directory became unwritable)."
            )
        self.emissions_data = data
        self.emissions = {"emissions_kg": float(data.emissions),
                          "energy_consumed_kwh": float(data.energy_consumed)}
        logger.info("codecarbon: %.3g kg CO2eq, %.3g kWh over %.1f s (%s).",
                    data.emissions, data.energy_consumed, data.duration,
                    data.country_iso_code or "world average")
