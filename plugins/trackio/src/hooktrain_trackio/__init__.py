"""Trackio logging for hooktrain: config, every numeric log value per step, artifacts on request.

Local by default: a SQLite database per project under ``TRACKIO_DIR``, which trackio resolves
when it is first imported (the ``dir`` setting is exported before the plugin's lazy import).
Writes happen on trackio's thread, which turns failures into warnings: at train end the plugin
checks that the last step reached the database. trackio has no run status, so an exception is
recorded as an ERROR alert before the run is finished. A resumed run reattaches by name
(``resume="allow"``) and drops the interrupted run's rows after the checkpoint's step.
The run lifecycle (open, resume, finish, fail) is ``TrackerPlugin``'s; :mod:`.hub` bounds
trackio's Hugging Face Hub lookup and :mod:`.storage` reads and corrects the local database.
See docs/integrations/trackio.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hooktrain.plugin import (
    ConfigError, TrackerPlugin, hookimpl, parse_bool, rewrite_key, run_config, save_model,
    setting,
)
from hooktrain_trackio.hub import hub_bounded
from hooktrain_trackio.storage import check_stored, rewind

__all__ = ["TrackioPlugin", "TrackioSettings"]

logger = logging.getLogger("hooktrain")


@dataclass
class TrackioSettings:
    """The ``[plugins.trackio]`` table."""

    #: Trackio project (one database, ``<dir>/<project>.db``); HF's ``args.project`` default.
    project: str = "huggingface"
    #: Run name; default ``args.run_name`` (which defaults to ``output_dir``).
    name: str | None = None
    #: Run group shown in the dashboard.
    group: str | None = None
    #: Where trackio keeps its databases; default trackio's (``$HF_HOME/trackio``).
    dir: str | None = setting(None, env="TRACKIO_DIR")
    #: Log to this Hugging Face Space instead of locally (needs a Hugging Face login).
    space_id: str | None = setting(None, env="TRACKIO_SPACE_ID")
    #: ``end`` (or ``true``): the final model as an artifact; ``checkpoint``: every checkpoint;
    #: ``false``.
    log_model: bool | Literal["end", "checkpoint"] = False
    #: trackio's CPU/GPU monitor threads; ``None``: trackio decides (on when psutil is there).
    system_metrics: bool | None = None
    #: Seconds to wait for the Hugging Face Hub's user lookup (trackio's has no timeout).
    hub_timeout: float = 10.0

    def __post_init__(self) -> None:
        # the config has checked and normalised table values; these lines give values passed
        # in Python the same spellings (a bad one fails in the plugin)
        if isinstance(self.log_model, str):
            self.log_model = self.log_model.strip().lower()
            with contextlib.suppress(ConfigError):  # "end" and "checkpoint" stay
                self.log_model = parse_bool(self.log_model)
        if self.log_model is True:
            self.log_model = "end"


class TrackioPlugin(TrackerPlugin):
    """Logs the run with trackio under HF's names (``train/loss``, ``eval/loss``)."""

    plugin_name = "trackio"
    settings = TrackioSettings

    def __init__(self, settings: TrackioSettings | None = None) -> None:
        super().__init__(settings)
        #: ``{"project", "name", "id"}`` of the run: kept in checkpoints, reattached on resume.
        self.identity: dict[str, str] = {}
        self.trained = False  # this plugin has finished a run: the next train() is a new run
        self._config: dict[str, Any] = {}  # every (re)opening passes it: trackio replaces it
        self._last_step: int | None = None
        self._crash: BaseException | None = None

    # trackio reattaches a run by project and name: the checkpoint keeps all three
    def state_dict(self) -> dict[str, Any]:
        return dict(self.identity)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name"):
            self.identity, self.resume_id = dict(state), state.get("id") or state["name"]

    # ---- hooks beyond the base's --------------------------------------------------------

    @hookimpl
    def on_train_begin(self, args: Any, state: Any, model: Any) -> None:
        with self.failing():
            resuming = self.resume_id is not None
            if self.run is not None:  # opened by evaluate(): before the first train() it is
                if not self.trained:  # reopened, now with the config; after one, a new run
                    self.resume_id = self.resume_id or self.run_id
                self.end_run()
            self._config = run_config(args, model)
            self.ensure_run(args, state, model, new=True)
            if resuming:
                rewind(self._local_db(self.run), self.identity["id"], state.global_step)

    @hookimpl
    def on_save(self, state: Any, checkpoint_dir: Path) -> None:
        if self.config.log_model == "checkpoint" and self.run is not None:
            with self.failing():
                self.run.log_artifact(str(checkpoint_dir), name=f"checkpoint-{self.run.id}",
                                      type="model", aliases=[f"step-{state.global_step}"])

    @hookimpl
    def on_exception(self, exception: BaseException) -> None:
        self._crash = exception  # finish_run tells it from an error of this plugin's hooks
        super().on_exception(exception)

    # ---- the run -------------------------------------------------------------------------

    def open_run(self, args: Any, state: Any, model: Any, run_id: str | None) -> Any:
        trackio = self._import()
        project = self.identity.get("project", self.config.project)
        name = self.identity.get("name") or self.config.name or args.run_name
        monitors = self.config.system_metrics
        with hub_bounded(self.config.hub_timeout, self.config.space_id):
            run = trackio.init(
                project=project, name=name, group=self.config.group,
                space_id=self.config.space_id, config=self._config,
                resume="allow" if run_id else "never", embed=False,
                auto_log_cpu=monitors, auto_log_gpu=monitors,
            )
        stored = self.identity.get("id")
        if run_id and stored and stored != run.id:
            logger.warning("trackio: run %r of project %r continues as id %s, not the "
                           "checkpoint's %s.", name, project, run.id, stored)
        self.identity = {"project": project, "name": run.name, "id": run.id}
        return run

    def log_metrics(self, run: Any, metrics: dict[str, float], state: Any) -> None:
        run.log({rewrite_key(k): v for k, v in metrics.items()}, step=state.global_step)
        self._last_step = state.global_step

    def before_finish(self, run: Any, args: Any, state: Any, model: Any) -> None:
        if self.config.log_model == "end":
            alias = "best" if args.load_best_model_at_end else "last"
            with tempfile.TemporaryDirectory(prefix="hooktrain-trackio-") as tmp:
                path = save_model(model, Path(tmp) / "model")
                run.log_artifact(str(path), name=f"model-{run.id}", type="model",
                                 aliases=[alias])

    def finish_run(self, run: Any, failure: BaseException | None) -> None:
        """trackio has no run status: a failure is an alert (ERROR; WARN for Ctrl+C) first."""
        import trackio
        from trackio import AlertLevel

        self.trained, db = True, self._local_db(run)
        try:
            if failure is not None:
                text, level = f"{type(failure).__name__}: {failure}", AlertLevel.ERROR
                if failure is not self._crash:  # a hook of this plugin raised
                    title = "Logging stopped"
                    text = f"hooktrain-trackio stopped logging after {text}"
                elif isinstance(failure, KeyboardInterrupt):
                    title, level = "Training interrupted", AlertLevel.WARN
                else:
                    title = "Training failed"
                run.alert(title=title, text=text, level=level)
        finally:
            if trackio.context_vars.current_run.get() is run:
                trackio.finish()  # also clears trackio's current run (else finished at exit)
            else:
                run.finish()  # flushes trackio's queue (waits at most 30 s)
        if failure is None and db is not None and self._last_step is not None:
            check_stored(db, self.identity, self._last_step)

    def _import(self) -> Any:
        """``import trackio``, exporting the ``dir`` setting first: trackio reads it only then."""
        wanted = self.config.dir
        if wanted and "trackio" not in sys.modules:
            os.environ["TRACKIO_DIR"] = wanted
        import trackio

        if wanted and Path(wanted).resolve() != Path(trackio.TRACKIO_DIR).resolve():
            raise ConfigError(
                f"trackio: dir is {wanted}, but trackio was already imported with TRACKIO_DIR="
                f"{trackio.TRACKIO_DIR} and writes there; set TRACKIO_DIR before importing it."
            )
        return trackio

    def _local_db(self, run: Any) -> Path | None:
        """The run's SQLite database; ``None`` for a Space, a server or JSONL fragments."""
        import trackio

        if run is None or run.url or trackio.utils.get_storage_mode() != "sqlite":
            return None
        return Path(trackio.SQLiteStorage.get_project_db_path(self.identity["project"]))

