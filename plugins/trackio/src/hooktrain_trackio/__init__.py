"""Trackio logging for hooktrain: config, every numeric log value per step, artifacts on request.

Local by default (a SQLite database per project under ``TRACKIO_DIR``), or a Hugging Face Space.
trackio has no run status (a failure is an alert), its writer thread only warns when a write fails
(train end checks the database) and a resumed run reattaches by name (docs/integrations/trackio.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hooktrain.plugin import (
    ConfigError,
    TrackerPlugin,
    hookimpl,
    rewrite_key,
    run_config,
    save_model,
    setting,
    validate_settings,
)

__all__ = ["TrackioPlugin", "TrackioSettings"]

logger = logging.getLogger("hooktrain")


@dataclass
class TrackioSettings:
    """The ``[plugins.trackio]`` table."""

    #: Trackio project (one database, ``<dir>/<project>.db``); HF's ``args.project`` default.
    project: str = "huggingface"
    name: str | None = None  #: Run name; default ``args.run_name`` (default ``output_dir``).
    group: str | None = None  #: Run group shown in the dashboard.
    #: Where trackio keeps its databases; default trackio's (``$HF_HOME/trackio``).
    dir: str | None = setting(None, env="TRACKIO_DIR")
    #: Log to this Hugging Face Space instead of locally (needs a Hugging Face login).
    space_id: str | None = setting(None, env="TRACKIO_SPACE_ID")
    #: ``end`` (or ``true``): the final model as an artifact; ``checkpoint``: every checkpoint.
    log_model: bool | Literal["end", "checkpoint"] = False
    #: trackio's CPU/GPU monitor threads; ``None``: trackio decides (on when psutil is there).
    system_metrics: bool | None = None
    #: Seconds to wait for the Hugging Face Hub's user lookup (trackio's has no timeout).
    hub_timeout: float = 10.0

    def __post_init__(self) -> None:  # values passed in Python get the config's spellings
        with contextlib.suppress(ConfigError):  # (a bad one fails in the plugin)
            validate_settings("trackio", self)
        self.log_model = "end" if self.log_model is True else self.log_model


class TrackioPlugin(TrackerPlugin):
    """Logs the run with trackio under HF's names (``train/loss``, ``eval/loss``)."""

    plugin_name = "trackio"
    settings = TrackioSettings

    def __init__(self, settings: TrackioSettings | None = None) -> None:
        super().__init__(settings)
        #: ``{"project", "name", "id"}`` of the run: kept in checkpoints, reattached on resume.
        self.identity: dict[str, str] = {}
        self.trained = False  # this plugin has finished a run
        self._config: dict[str, Any] = {}  # every (re)opening passes it: trackio replaces it
        self._last_step: int | None = None

    def state_dict(self) -> dict[str, Any]:
        return dict(self.identity)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name"):
            self.identity, self.resume_id = dict(state), state.get("id") or state["name"]

    @hookimpl
    def on_train_begin(self, args: Any, state: Any, model: Any) -> None:
        with self.failing():
            resuming = self.resume_id is not None
            if self.run is not None and not self.trained:  # evaluate() before the first
                self.resume_id = self.resume_id or self.run_id  # train(): reopened with the
                self.end_run()  # config (after a train(), the base starts a new run)
            self._config = run_config(args, model)
            self.ensure_run(args, state, model, new=True)
            db = self._local_db(self.run) if resuming else None
            if db is not None and db.exists():  # drop the interrupted run's rows after the
                try:  # checkpoint's step: the resumed run logs them again (best effort)
                    with contextlib.closing(sqlite3.connect(db, timeout=30)) as con, con:
                        con.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?",
                                    (self.identity["id"], state.global_step))
                except sqlite3.Error as error:
                    logger.warning("trackio: could not drop the rows logged after step %d from "
                                   "%s (%s); those steps appear twice.", state.global_step, db,
                                   error)

    @hookimpl
    def on_save(self, state: Any, checkpoint_dir: Path) -> None:
        if self.config.log_model == "checkpoint" and self.run is not None:
            with self.failing():
                self.run.log_artifact(str(checkpoint_dir), name=f"checkpoint-{self.run.id}",
                                      type="model", aliases=[f"step-{state.global_step}"])

    def open_run(self, args: Any, state: Any, model: Any, run_id: str | None) -> Any:
        trackio = self._import()
        project = self.identity.get("project", self.config.project)
        name = self.identity.get("name") or self.config.name or args.run_name
        with _hub_bounded(self.config.hub_timeout, self.config.space_id):
            run = trackio.init(
                project=project, name=name, group=self.config.group,
                space_id=self.config.space_id, config=self._config,
                resume="allow" if run_id else "never", embed=False,
                auto_log_cpu=self.config.system_metrics, auto_log_gpu=self.config.system_metrics,
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
                run.log_artifact(str(path), name=f"model-{run.id}", type="model", aliases=[alias])

    def finish_run(self, run: Any, failure: BaseException | None) -> None:
        import trackio

        self.trained, db = True, self._local_db(run)
        try:
            if failure is not None:
                text = f"{type(failure).__name__}: {failure}"
                title, level = "Training failed", trackio.AlertLevel.ERROR
                if self.own_fault:  # a hook of this plugin raised; training goes on
                    title = "Logging stopped"
                    text = f"hooktrain-trackio stopped logging after {text}"
                elif isinstance(failure, KeyboardInterrupt):
                    title, level = "Training interrupted", trackio.AlertLevel.WARN
                run.alert(title=title, text=text, level=level)
        finally:
            if trackio.context_vars.current_run.get() is run:
                trackio.finish()  # also clears trackio's current run (else finished at exit)
            else:
                run.finish()  # flushes trackio's queue (waits at most 30 s)
        if failure is None and db is not None and self._last_step is not None:
            stored = trackio.SQLiteStorage.get_max_step_for_run(
                self.identity["project"], self.identity["name"], run_id=self.identity["id"])
            if stored is None or stored < self._last_step:  # a write failed: a plugin fault
                raise RuntimeError(f"trackio stored steps up to {stored} of {self._last_step} "
                                   f"in {db}: writes failed (see trackio's warnings).")

    def _import(self) -> Any:
        """``import trackio``, exporting the ``dir`` setting first: trackio reads it only then."""
        wanted = self.config.dir
        if wanted and "trackio" not in sys.modules:
            os.environ["TRACKIO_DIR"] = wanted
        import trackio

        if wanted and Path(wanted).resolve() != Path(trackio.TRACKIO_DIR).resolve():
            raise ConfigError(f"trackio: dir is {wanted}, but trackio was already imported with "
                              f"TRACKIO_DIR={trackio.TRACKIO_DIR} and writes there; set "
                              "TRACKIO_DIR before importing it.")
        return trackio

    def _local_db(self, run: Any) -> Path | None:
        """The run's SQLite database; ``None`` for a Space, a server or JSONL fragments."""
        import trackio

        if run is None or run.url or trackio.utils.get_storage_mode() != "sqlite":
            return None
        return Path(trackio.SQLiteStorage.get_project_db_path(self.identity["project"]))


@contextlib.contextmanager
def _hub_bounded(timeout: float, space_id: str | None) -> Iterator[None]:
    """Bound ``trackio.init``'s user lookup (``whoami``, no timeout): asked first on a thread, its
    cached answer makes trackio's return at once. Unanswered: a local run without the user name."""
    import huggingface_hub
    from huggingface_hub import constants

    answered = threading.Event()

    def ask() -> None:
        with contextlib.suppress(Exception):  # trackio takes a failure as "no user name"
            huggingface_hub.whoami(cache=True)
        answered.set()

    stalled = not constants.HF_HUB_OFFLINE and huggingface_hub.get_token() is not None
    if stalled:
        threading.Thread(target=ask, name="hooktrain-trackio-whoami", daemon=True).start()
        stalled = not answered.wait(timeout)
    if stalled:
        if space_id or os.environ.get("TRACKIO_SPACE_ID"):
            raise TimeoutError(f"trackio: the Hugging Face Hub did not answer within "
                               f"{timeout:g} s; cannot log to a Space.")
        logger.warning("trackio: the Hugging Face Hub did not answer within %g s; the local run "
                       "is created without your user name.", timeout)
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if stalled:
            constants.HF_HUB_OFFLINE = False
