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

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import traceback
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hooktrain.plugin import (
    ConfigError,
    TrackerPlugin,
    hookimpl,
    parse_bool,
    rewrite_key,
    run_config,
    save_model,
    setting,
)

__all__ = ["SwanLabPlugin", "SwanLabSettings"]

logger = logging.getLogger("hooktrain")

#: Runs some SwanLabPlugin opened (others are the user's): a leftover of an earlier Trainer's
#: ``evaluate()`` is finished, not adopted, when a new Trainer starts logging.
_OPENED: weakref.WeakSet[Any] = weakref.WeakSet()


@dataclass
class SwanLabSettings:
    """The ``[plugins.swanlab]`` table."""

    #: SwanLab project; default: swanlab's (the working directory's name), as in HF.
    project: str | None = setting(None, env="SWANLAB_PROJECT")
    #: ``cloud`` (or its other name ``online``), ``offline``, ``local`` or ``disabled``; default:
    #: see the module doc.
    mode: Literal["cloud", "online", "offline", "local", "disabled"] | None = setting(
        None, env="SWANLAB_MODE")
    #: Where run directories go; default: swanlab's (``./swanlog``).
    log_dir: str | None = setting(None, env="SWANLAB_LOG_DIR")
    #: Experiment name; default ``args.run_name`` (which defaults to ``output_dir``).
    name: str | None = None
    #: Cloud workspace (organisation); default: swanlab's (``SWANLAB_WORKSPACE`` or your user).
    workspace: str | None = None
    #: ``end`` (or ``true``, HF's spelling): the final model into the run's files;
    #: ``checkpoint``: every checkpoint; ``false``.
    log_model: bool | Literal["end", "checkpoint"] = setting(
        False, env="SWANLAB_LOG_MODEL")

    def __post_init__(self) -> None:
        # values passed in Python get the config's spellings (a bad one fails in the plugin)
        if isinstance(self.mode, str):
            self.mode = self.mode.strip().lower()
        if self.mode == "cloud":  # swanlab's name for it
            self.mode = "online"
        if isinstance(self.log_model, str):
            self.log_model = self.log_model.strip().lower()
            with contextlib.suppress(ConfigError):  # "end" and "checkpoint" stay
                self.log_model = parse_bool(self.log_model)
        if self.log_model is True:
            self.log_model = "end"


class SwanLabPlugin(TrackerPlugin):
    """Logs the run with SwanLab under HF's names (``train/loss``, ``eval/loss``)."""

    plugin_name = "swanlab"
    settings = SwanLabSettings

    def __init__(self, settings: SwanLabSettings | None = None) -> None:
        super().__init__(settings)
        self.trained = False  # this plugin has closed a run: the next train() is a new run
        self._told_offline = False

    # ---- hooks beyond the base's --------------------------------------------------------

    @hookimpl
    def on_train_begin(self, args: Any, state: Any, model: Any) -> None:
        with self.failing():
            if self.trained:  # reopened by evaluate() after a train(): this train() is new
                self.end_run()
            # a run evaluate() opened before the first train() goes on; else a new run, or the
            # checkpoint's when resuming
            self.ensure_run(args, state, model, new=True).config.update(run_config(args, model))

    @hookimpl
    def on_save(self, state: Any, checkpoint_dir: Path) -> None:
        if self.config.log_model == "checkpoint" and self.run is not None:
            with self.failing():
                self._save_files(checkpoint_dir, f"checkpoint-{state.global_step}")

    def open_run(self, args: Any, state: Any, model: Any, run_id: str | None) -> Any:
        import swanlab

        if swanlab.has_run() and swanlab.get_run() in _OPENED:
            swanlab.get_run().finish()  # left open by an earlier Trainer's evaluate()
        if swanlab.has_run():  # started by the user: log into it, leave finishing it to them
            self.owns_run = False
            logger.info("swanlab: logging into the run you started (%s).", swanlab.get_run().id)
            return swanlab.get_run()
        kwargs: dict[str, Any] = {"id": run_id, "resume": "allow"} if run_id else {}
        with _hf_variables_hidden():
            run = swanlab.init(
                mode=self._mode(), project=self.config.project, workspace=self.config.workspace,
                name=self.config.name or args.run_name, log_dir=self.config.log_dir,
                settings=swanlab.Settings(interactive=False),  # never prompt for a key
                **kwargs,
            )
        _OPENED.add(run)
        return run

    def log_metrics(self, run: Any, metrics: dict[str, float], state: Any) -> None:
        run.log({rewrite_key(k): v for k, v in metrics.items()}, step=state.global_step)

    def before_finish(self, run: Any, args: Any, state: Any, model: Any) -> None:
        if self.config.log_model == "end":
            with tempfile.TemporaryDirectory(prefix="hooktrain-swanlab-") as tmp:
                name = "best" if args.load_best_model_at_end else "last"
                self._save_files(save_model(model, Path(tmp) / name), f"model-{name}")

    def finish_run(self, run: Any, failure: BaseException | None) -> None:
        self.trained = True
        if not run.alive:  # finished behind the plugin's back (swanlab's Ctrl+C handler, user)
            return
        if failure is None:
            run.finish(state="success", error=None)
        else:
            run.finish(state="aborted" if isinstance(failure, KeyboardInterrupt) else "crashed",
                       error="".join(traceback.format_exception(failure)).strip())
        _unloop_standard_streams()

    def detach_run(self, run: Any) -> None:
        self.trained = True

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


def _unloop_standard_streams() -> None:
    """Undo a ``write`` left calling itself on ``sys.stdout``/``sys.stderr`` by ``finish``.

    swanlab puts the ``write`` it replaced at ``init`` back on whatever stream is current at
    ``finish``: when comet_ml (or any wrapper) has unwrapped the stream meanwhile, the real stream
    gets the wrapper's ``write``, which writes to itself, and the process fails at shutdown.
    """
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        write = getattr(stream, "__dict__", {}).get("write")
        if getattr(getattr(write, "__self__", None), "__wrapped__", None) is stream:
            del stream.write


@contextlib.contextmanager
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
