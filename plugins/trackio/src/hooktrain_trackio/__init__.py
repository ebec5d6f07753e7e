"""Trackio logging for hooktrain: config, every numeric log value per step, artifacts on request.

Local by default: a SQLite database per project under ``TRACKIO_DIR``, which trackio resolves
when it is first imported (the ``dir`` setting is exported before the plugin's lazy import).
Writes happen on trackio's thread, which turns failures into warnings: at train end the plugin
checks that the last step reached the database. trackio has no run status, so an exception is
recorded as an ERROR alert before the run is finished. A resumed run reattaches by name
(``resume="allow"``) and drops the interrupted run's rows after the checkpoint's step.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hooktrain import hookimpl
from hooktrain.errors import ConfigError
from hooktrain.integration import NumericFilter, rewrite_key, run_config, save_model
from hooktrain.plugin_host.settings import from_environment

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
    dir: str | None = field(default=None, metadata={"env": "TRACKIO_DIR"})
    #: Log to this Hugging Face Space instead of locally (needs a Hugging Face login).
    space_id: str | None = field(default=None, metadata={"env": "TRACKIO_SPACE_ID"})
    #: ``end``: the final model as an artifact; ``checkpoint``: every checkpoint; ``false``.
    log_model: bool | str = False
    #: trackio's CPU/GPU monitor threads; ``None``: trackio decides (on when psutil is there).
    system_metrics: bool | None = None
    #: Seconds to wait for the Hugging Face Hub's user lookup (trackio's has no timeout).
    hub_timeout: float = 10.0

    def __post_init__(self) -> None:
        value = self.log_model
        if isinstance(value, str):
            value = value.strip().lower()
            value = {"": False, "0": False, "false": False, "no": False, "off": False,
                     "1": True, "true": True, "yes": True, "on": True}.get(value, value)
        self.log_model = "end" if value is True else value
        if self.log_model not in (False, "end", "checkpoint"):
            raise ConfigError(f"[plugins.trackio] log_model must be end, checkpoint or false, "
                              f"got {value!r}.")


class TrackioPlugin:
    """Logs the run with trackio under HF's names (``train/loss``, ``eval/loss``)."""

    settings = TrackioSettings

    def __init__(self, settings: TrackioSettings | None = None) -> None:
        self.config = settings or from_environment("trackio", TrackioSettings)
        #: The open ``trackio.Run`` (``None`` before the first event that logs and after the end).
        self.run: Any = None
        #: ``{"project", "name", "id"}`` of the run: kept in checkpoints, reattached on resume.
        self.identity: dict[str, str] = {}
        self._resuming = False
        self._trained = False  # this plugin has finished a run (a train() ended)
        self._config: dict[str, Any] = {}  # every (re)opening passes it: trackio replaces it
        self._last_step: int | None = None
        self._numeric = NumericFilter("trackio")

    # ---- resumable identity --------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return dict(self.identity)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name"):
            self.identity, self._resuming = dict(state), True

    # ---- hooks ---------------------------------------------------------------------------

    @hookimpl
    def on_train_begin(self, args: Any, state: Any, model: Any) -> None:
        resuming, self._resuming = self._resuming, False
        # evaluate() before the first train() opened the run: reopened, now with the config
        reattach = resuming or (self.run is not None and not self._trained)
        if self.run is not None:
            self._finish()
        self._config = run_config(args, model)
        self._open(args, resume=reattach)
        if resuming:
            self._rewind(state.global_step)

    @hookimpl
    def on_log(self, args: Any, state: Any, logs: dict[str, Any]) -> None:
        values = {rewrite_key(k): v for k, v in self._numeric(logs).items()}
        if values:
            self._open(args, resume=bool(self.identity)).log(values, step=state.global_step)
            self._last_step = state.global_step

    @hookimpl
    def on_save(self, state: Any, checkpoint_dir: Path) -> None:
        if self.config.log_model == "checkpoint" and self.run is not None:
            self.run.log_artifact(str(checkpoint_dir), name=f"checkpoint-{self.run.id}",
                                  type="model", aliases=[f"step-{state.global_step}"])

    @hookimpl
    def on_train_end(self, args: Any, model: Any) -> None:
        if self.run is None:
            return
        if self.config.log_model == "end":
            alias = "best" if args.load_best_model_at_end else "last"
            with tempfile.TemporaryDirectory(prefix="hooktrain-trackio-") as tmp:
                path = save_model(model, Path(tmp) / "model")
                self.run.log_artifact(str(path), name=f"model-{self.run.id}", type="model",
                                      aliases=[alias])
        db = self._local_db()
        self._finish()
        self._check_stored(db)

    @hookimpl
    def on_exception(self, exception: BaseException) -> None:
        if self.run is None:
            return
        import trackio

        interrupted = isinstance(exception, KeyboardInterrupt)
        self.run.alert(title="Training interrupted" if interrupted else "Training failed",
                       text=f"{type(exception).__name__}: {exception}",
                       level=trackio.AlertLevel.WARN if interrupted else trackio.AlertLevel.ERROR)
        self._finish()

    # ---- the run -------------------------------------------------------------------------

    def _open(self, args: Any, resume: bool) -> Any:
        if self.run is not None:
            return self.run
        trackio = self._import()
        project = self.identity.get("project", self.config.project)
        name = self.identity.get("name") or self.config.name or args.run_name
        monitors = self.config.system_metrics
        with self._hub_bounded():
            self.run = trackio.init(
                project=project, name=name, group=self.config.group,
                space_id=self.config.space_id, config=self._config,
                resume="allow" if resume else "never", embed=False,
                auto_log_cpu=monitors, auto_log_gpu=monitors,
            )
        stored = self.identity.get("id")
        if resume and stored and stored != self.run.id:
            logger.warning("trackio: run %r of project %r continues as id %s, not the "
                           "checkpoint's %s.", name, project, self.run.id, stored)
        self.identity = {"project": project, "name": self.run.name, "id": self.run.id}
        return self.run

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

    @contextlib.contextmanager
    def _hub_bounded(self) -> Iterator[None]:
        """Bound the user lookup (huggingface_hub's ``whoami``, no timeout) of ``trackio.init``.

        Asked first on a daemon thread for at most ``hub_timeout`` s; the answer is cached, so
        trackio's own call returns at once. Unanswered: a Space is an error, a local run is
        created with huggingface_hub's offline switch on (no user name in its config).
        """
        import huggingface_hub
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE or huggingface_hub.get_token() is None:
            yield
            return
        answered = threading.Event()

        def ask() -> None:
            with contextlib.suppress(Exception):  # trackio takes a failure as "no user name"
                huggingface_hub.whoami(cache=True)
            answered.set()

        threading.Thread(target=ask, name="hooktrain-trackio-whoami", daemon=True).start()
        if answered.wait(self.config.hub_timeout):
            yield
            return
        if self.config.space_id or os.environ.get("TRACKIO_SPACE_ID"):
            raise TimeoutError(f"trackio: the Hugging Face Hub did not answer within "
                               f"{self.config.hub_timeout:g} s; cannot log to a Space.")
        logger.warning("trackio: the Hugging Face Hub did not answer within %g s; the local run "
                       "is created without your user name.", self.config.hub_timeout)
        constants.HF_HUB_OFFLINE = True
        try:
            yield
        finally:
            constants.HF_HUB_OFFLINE = False

    def _local_db(self) -> Path | None:
        """The run's SQLite database; ``None`` for a Space, a server or JSONL fragments."""
        import trackio

        if self.run is None or self.run.url or trackio.utils.get_storage_mode() != "sqlite":
            return None
        return Path(trackio.SQLiteStorage.get_project_db_path(self.identity["project"]))

    def _rewind(self, step: int) -> None:
        """Drop the rows the interrupted run logged after ``step``: the resumed run logs them
        again. Best effort: a database trackio cannot open either is reported by trackio."""
        db = self._local_db()
        if db is None or not db.exists():
            return
        try:
            with contextlib.closing(sqlite3.connect(db, timeout=30)) as con, con:
                con.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?",
                            (self.identity["id"], step))
        except sqlite3.Error as error:
            logger.warning("trackio: could not drop the rows logged after step %d from %s (%s); "
                           "those steps appear twice.", step, db, error)

    def _finish(self) -> None:
        import trackio

        run, self.run, self._trained = self.run, None, True
        if trackio.context_vars.current_run.get() is run:
            trackio.finish()  # also clears trackio's current run (else finished again at exit)
        else:
            run.finish()  # flushes trackio's queue (waits at most 30 s)

    def _check_stored(self, db: Path | None) -> None:
        """Trackio warns and goes on when a write fails: make a lost tail a plugin fault."""
        if db is None or self._last_step is None:
            return
        import trackio

        stored = trackio.SQLiteStorage.get_max_step_for_run(
            self.identity["project"], self.identity["name"], run_id=self.identity["id"])
        if stored is None or stored < self._last_step:
            raise RuntimeError(f"trackio stored steps up to {stored} of {self._last_step} in "
                               f"{db}: writes failed (see trackio's warnings).")
