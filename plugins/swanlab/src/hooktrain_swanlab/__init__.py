"""SwanLab logging for hooktrain: config, every numeric log value per step, the run's end state.

SwanLab's own default mode is the cloud, which needs an API key: without one and without a
terminal ``swanlab.init`` fails, and with a terminal it prompts. The plugin never leaves the mode
to that default: an explicit mode (setting, ``SWANLAB_MODE``, swanlab's own config files) is
used as given, with prompts switched off; otherwise the run goes to the cloud only when an API
key is configured, and is written offline (``swanlab sync`` uploads it later) when none is,
saying so once. The run is finished as ``success`` at train end and ``crashed`` (``aborted``
for Ctrl+C) on an exception; its id is kept in the checkpoint so a resumed run continues it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import traceback
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hooktrain import hookimpl
from hooktrain.errors import ConfigError
from hooktrain.integration import NumericFilter, rewrite_key, run_config, save_model
from hooktrain.plugin_host.settings import from_environment

__all__ = ["SwanLabPlugin", "SwanLabSettings"]

logger = logging.getLogger("hooktrain")

#: Runs some SwanLabPlugin opened (others are the user's): a leftover of an earlier Trainer's
#: ``evaluate()`` is finished, not adopted, when a new Trainer starts logging.
_OPENED: weakref.WeakSet[Any] = weakref.WeakSet()

_MODES = {"cloud": "online", "online": "online", "offline": "offline", "local": "local",
          "disabled": "disabled"}


@dataclass
class SwanLabSettings:
    """The ``[plugins.swanlab]`` table."""

    #: SwanLab project; default: swanlab's (the working directory's name), as in HF.
    project: str | None = field(default=None, metadata={"env": "SWANLAB_PROJECT"})
    #: ``cloud`` (``online``), ``offline``, ``local`` or ``disabled``; default: see the module doc.
    mode: str | None = field(default=None, metadata={"env": "SWANLAB_MODE"})
    #: Where run directories go; default: swanlab's (``./swanlog``).
    log_dir: str | None = field(default=None, metadata={"env": "SWANLAB_LOG_DIR"})
    #: Experiment name; default ``args.run_name`` (which defaults to ``output_dir``).
    name: str | None = None
    #: Cloud workspace (organisation); default: swanlab's (``SWANLAB_WORKSPACE`` or your user).
    workspace: str | None = None
    #: ``end``: the final model into the run's files; ``checkpoint``: every checkpoint; ``false``.
    log_model: bool | str = field(default=False, metadata={"env": "SWANLAB_LOG_MODEL"})

    def __post_init__(self) -> None:
        if self.mode is not None:
            mode = self.mode.strip().lower()
            if mode and mode not in _MODES:
                raise ConfigError(
                    f"[plugins.swanlab] mode (or $SWANLAB_MODE) must be one of cloud, online, "
                    f"offline, local, disabled; got {self.mode!r}."
                )
            self.mode = _MODES.get(mode)
        value = self.log_model
        if isinstance(value, str):
            value = value.strip().lower()
            value = {"": False, "0": False, "false": False, "no": False, "off": False,
                     "1": True, "true": True, "yes": True, "on": True}.get(value, value)
        if value is True:
            value = "end"
        if value not in (False, "end", "checkpoint"):
            raise ConfigError(
                f"[plugins.swanlab] log_model (or $SWANLAB_LOG_MODEL) must be end, checkpoint or "
                f"false, got {self.log_model!r}."
            )
        self.log_model = value


class SwanLabPlugin:
    """Logs the run with SwanLab under HF's names (``train/loss``, ``eval/loss``)."""

    settings = SwanLabSettings

    def __init__(self, settings: SwanLabSettings | None = None) -> None:
        self.config = settings or from_environment("swanlab", SwanLabSettings)
        #: The open ``swanlab.Run`` (``None`` before the first event that logs and after the end).
        self.run: Any = None
        #: The run's id: kept in checkpoints, reused by a resumed run or a later ``evaluate()``.
        self.run_id: str | None = None
        self._resume_id: str | None = None  # from the checkpoint, for the next train()
        self._trained = False  # this plugin has finished a run (a train() ended)
        self._owns_run = True
        self._told_offline = False
        self._numeric = NumericFilter("swanlab")

    # ---- resumable identity --------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id} if self.run_id else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume_id = state.get("run_id")

    # ---- hooks ---------------------------------------------------------------------------

    @hookimpl
    def on_train_begin(self, args: Any, model: Any) -> None:
        # a new train() is a new run, unless it resumes a checkpoint: then the checkpoint's run
        resume_id, self._resume_id = self._resume_id, None
        if self.run is not None and self._trained:  # reopened by evaluate() after a train()
            self._finish("success")
        self._open(args, resume_id).config.update(run_config(args, model))

    @hookimpl
    def on_log(self, args: Any, state: Any, logs: dict[str, Any]) -> None:
        values = {rewrite_key(k): v for k, v in self._numeric(logs).items()}
        if values:  # no run open: evaluate() before train() (new run) or after it (same run)
            self._open(args, self.run_id).log(values, step=state.global_step)

    @hookimpl
    def on_save(self, state: Any, checkpoint_dir: Path) -> None:
        if self.config.log_model == "checkpoint" and self.run is not None:
            self._save_files(checkpoint_dir, f"checkpoint-{state.global_step}")

    @hookimpl
    def on_train_end(self, args: Any, model: Any) -> None:
        if self.run is None:
            return
        if self.config.log_model == "end":
            with tempfile.TemporaryDirectory(prefix="hooktrain-swanlab-") as tmp:
                name = "best" if args.load_best_model_at_end else "last"
                self._save_files(save_model(model, Path(tmp) / name), f"model-{name}")
        self._finish("success")

    @hookimpl
    def on_exception(self, exception: BaseException) -> None:
        if self.run is not None:
            error = "".join(traceback.format_exception(exception)).strip()
            self._finish("aborted" if isinstance(exception, KeyboardInterrupt) else "crashed", error)

    # ---- the run -------------------------------------------------------------------------

    def _open(self, args: Any, run_id: str | None) -> Any:
        if self.run is not None:
            return self.run
        import swanlab

        if swanlab.has_run() and swanlab.get_run() in _OPENED:
            swanlab.get_run().finish()  # left open by an earlier Trainer's evaluate()
        if swanlab.has_run():  # started by the user: log into it, leave finishing it to them
            self.run, self._owns_run = swanlab.get_run(), False
            logger.info("swanlab: logging into the run you started (%s).", self.run.id)
        else:
            kwargs: dict[str, Any] = {"id": run_id, "resume": "allow"} if run_id else {}
            with _hf_variables_hidden():
                self.run = swanlab.init(
                    mode=self._mode(), project=self.config.project,
                    workspace=self.config.workspace, name=self.config.name or args.run_name,
                    log_dir=self.config.log_dir,
                    settings=swanlab.Settings(interactive=False),  # never prompt for a key
                    **kwargs,
                )
            self._owns_run = True
            _OPENED.add(self.run)
        self.run_id = self.run.id
        return self.run

    def _mode(self) -> str:
        """The explicit mode, else the cloud with an API key, else offline (said once)."""
        if self.config.mode:
            return self.config.mode
        import swanlab

        with _hf_variables_hidden():
            configured = swanlab.Settings()  # env, .env, swanlab.yaml, /etc/swanlab, .netrc
        if "mode" in configured.model_fields_set:
            return configured.mode
        if configured.api_key:
            return "online"
        if not self._told_offline:
            self._told_offline = True
            logger.info(
                "swanlab: no API key configured (SWANLAB_API_KEY or `swanlab login`): logging "
                "offline under %s; upload with `swanlab sync <run dir>`, or set mode.",
                self.config.log_dir or configured.log_dir,
            )
        return "offline"

    def _save_files(self, source: Path, name: str) -> None:
        """Copy ``source`` into ``<run dir>/files/<name>`` and record it with ``run.save``.

        A copy, not swanlab's default symlink: checkpoints are rotated away and the final model
        is written to a temporary directory. Uploaded at once in cloud mode, by ``swanlab sync``
        from offline runs.
        """
        if self.run.mode == "disabled":
            return
        files = Path(self.run.dir) / "files"
        shutil.copytree(source, files / name, dirs_exist_ok=True)
        if not self.run.save(str(files / name / "**"), base_path=str(files), policy="now"):
            raise RuntimeError(f"swanlab recorded none of the files in {files / name}.")

    def _finish(self, state: str, error: str | None = None) -> None:
        run, self.run, self._trained = self.run, None, True
        if self._owns_run and run.alive:
            run.finish(state=state, error=error)


@contextmanager
def _hf_variables_hidden() -> Iterator[None]:
    """Hide HF's ``SWANLAB_PROJECT`` and ``SWANLAB_MODE`` while swanlab reads its settings.

    The plugin has read both (its settings' fallbacks) and passes them to ``swanlab.init``
    itself. swanlab 0.10 also reads them, and fails on HF's values: ``SWANLAB_PROJECT`` as its
    nested ``project`` settings, which must be JSON (a plain name is left visible only in that
    form), and ``SWANLAB_MODE`` only in lower case.
    """
    hidden = {key: os.environ.pop(key) for key in ("SWANLAB_PROJECT", "SWANLAB_MODE")
              if key in os.environ}
    if hidden.get("SWANLAB_PROJECT", "").lstrip().startswith("{"):
        os.environ["SWANLAB_PROJECT"] = hidden.pop("SWANLAB_PROJECT")
    try:
        yield
    finally:
        for key, value in hidden.items():
            os.environ.setdefault(key, value)
