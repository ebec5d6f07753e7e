"""Neptune logging for hooktrain (neptune 1.x client): parameters, metrics per step, checkpoints.

HF's ``NeptuneCallback`` layout under one base namespace (``finetuning``): ``trainer_parameters``,
``model_parameters``, a float series per log key (``train/loss``, ``eval/loss``, ...) at
``state.global_step``, and on request ``checkpoints``. Unlike HF's: offline without credentials
(said once), ``sys/failed`` on an exception, online resume by ``with_id``, checkpoint files copied
into neptune's upload queue at ``on_save`` (rotation cannot lose them), ``train/epoch`` a series.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hooktrain import __version__ as hooktrain_version
from hooktrain import hookimpl
from hooktrain.errors import ConfigError
from hooktrain.integration import NumericFilter, rewrite_key, run_config
from hooktrain.plugin_host.settings import from_environment

__all__ = ["NeptunePlugin", "NeptuneSettings"]

logger = logging.getLogger("hooktrain")

MODES = ("async", "sync", "offline", "debug")
ONLINE = ("async", "sync")
CHECKPOINT_CHOICES = ("same", "last", "best")
#: ``init_run`` arguments the plugin decides (each has its own setting, or is the run's identity).
RESERVED = ("mode", "project", "api_token", "custom_run_id", "with_id")
_said_offline = False  # the offline fallback is announced once per process


@dataclass
class NeptuneSettings:
    """The ``[plugins.neptune]`` table; neptune's own variables are the fallbacks."""

    #: ``workspace/project``; needed online.
    project: str | None = field(default=None, metadata={"env": "NEPTUNE_PROJECT"})
    #: The API token; needed online.
    api_token: str | None = field(default=None, metadata={"env": "NEPTUNE_API_TOKEN"})
    #: ``async``, ``sync``, ``offline`` or ``debug``; default async, offline without credentials.
    mode: str | None = field(default=None, metadata={"env": "NEPTUNE_MODE"})
    #: The run's name (``sys/name``); default ``run_name`` from the training arguments.
    name: str | None = None
    #: neptune's custom run id (runs sharing one log into the same run, online).
    custom_run_id: str | None = field(default=None, metadata={"env": "NEPTUNE_CUSTOM_RUN_ID"})
    #: The namespace everything is logged under (HF's ``base_namespace``); ``""``: the top level.
    base_namespace: str = "finetuning"
    #: Log the training arguments and the model's config (HF's ``log_parameters``).
    log_parameters: bool = True
    #: HF's ``log_checkpoints``: ``same`` (every checkpoint), ``last``, ``best``; unset: none.
    log_checkpoints: str | None = None
    #: More keyword arguments for ``neptune.init_run`` (``tags``, ``capture_stdout``, ...).
    init_run: dict[str, Any] = field(default_factory=dict)
    #: Seconds ``run.stop()`` waits for uploads; the rest stays on disk for ``neptune sync``.
    stop_timeout: float | None = 60.0

    def __post_init__(self) -> None:
        if self.mode is not None:
            self.mode = self.mode.strip().lower() or None
            if self.mode not in (None, *MODES):
                raise ConfigError(f"[plugins.neptune] mode (or $NEPTUNE_MODE) must be one of "
                                  f"{', '.join(MODES)}; got {self.mode!r}.")
        if self.log_checkpoints is not None:
            value: str | None = self.log_checkpoints.strip().lower()
            if value in ("", "none", "false", "no", "off", "0"):
                value = None
            elif value not in CHECKPOINT_CHOICES:
                raise ConfigError(f"[plugins.neptune] log_checkpoints must be one of "
                                  f"{', '.join(CHECKPOINT_CHOICES)} or unset; "
                                  f"got {self.log_checkpoints!r}.")
            self.log_checkpoints = value
        self.base_namespace = self.base_namespace.strip("/")
        taken = sorted(set(self.init_run) & set(RESERVED))
        if taken:
            raise ConfigError(f"[plugins.neptune] init_run may not set {', '.join(taken)}: "
                              f"use the settings of the same name (with_id comes from the "
                              f"checkpoint on resume).")


class NeptunePlugin:
    """Logs a hooktrain run to one neptune run; pass ``run=`` to log into a run of your own."""

    settings = NeptuneSettings

    def __init__(self, settings: NeptuneSettings | None = None, *, run: Any = None) -> None:
        # neptune reads these when first imported; bounded, unless the user chose otherwise
        os.environ.setdefault("NEPTUNE_REQUEST_TIMEOUT", "30")
        os.environ.setdefault("NEPTUNE_RETRIES_TIMEOUT", "30")
        self.config = settings or from_environment("neptune", NeptuneSettings)
        if run is not None:
            from neptune import Run

            if not isinstance(run, Run):
                raise TypeError(f"run must be a neptune.Run, got {type(run).__name__}.")
        #: The neptune run (``None`` until the first event that logs); stopped after training.
        self.run: Any = run
        self._owned = run is None
        self._open = run is not None
        #: This trainer's run: its mode, its ``sys/id`` (online only) and custom run id.
        self.mode: str | None = None
        self.sys_id: str | None = None
        self.custom_run_id: str | None = None
        self._resuming = False
        self._training = self._trained = False
        self._numeric = NumericFilter("neptune")
        self._last: dict[str, tuple[int, float]] = {}
        self._warned: set[str] = set()

    # ---- checkpoint state: the run's identity --------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "sys_id": self.sys_id, "custom_run_id": self.custom_run_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mode, self.sys_id = state.get("mode"), state.get("sys_id")
        self.custom_run_id = state.get("custom_run_id")
        self._resuming = True

    # ---- hooks ---------------------------------------------------------------------------

    @hookimpl
    def on_train_begin(self, args: Any, model: Any) -> None:
        if self._trained and not self._open and not self._resuming:  # train() again: a new run
            self.mode = self.sys_id = self.custom_run_id = None
        run = self._ensure(args)
        self._resuming, self._training, self._trained = False, True, True
        if self.config.log_checkpoints == "best" and args.metric_for_best_model is None:
            logger.warning("neptune: log_checkpoints='best' needs metric_for_best_model; "
                           "no checkpoint will be uploaded.")
        run["source_code/integrations/hooktrain"] = hooktrain_version  # as HF records its own
        if self.config.log_parameters:
            config = run_config(args, model)
            prefix = "model_config/"
            model_part = {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix)}
            run[self._path("trainer_parameters")] = {
                k: v for k, v in config.items() if not k.startswith(prefix)}
            if model_part:
                run[self._path("model_parameters")] = model_part

    @hookimpl
    def on_log(self, args: Any, state: Any, logs: dict[str, Any]) -> None:
        run = self._ensure(args)
        step = state.global_step
        for key, value in self._numeric(logs).items():
            path = self._path(rewrite_key(key))
            last = self._last.get(path)
            if last is not None and step <= last[0]:
                # neptune's series need increasing steps: a train and an eval log at one step
                # both carry the same epoch (skipped quietly); anything else is said once.
                if (step, value) != last and path not in self._warned:
                    self._warned.add(path)
                    logger.warning("neptune: %s already has a value at step %d; neptune series "
                                   "need increasing steps, so %r at step %d is not logged "
                                   "(warned once per series).", path, last[0], value, step)
                continue
            run[path].append(value, step=step)
            self._last[path] = (step, value)

    @hookimpl
    def on_evaluate(self) -> None:
        if self._open and self._owned and not self._training:
            self._stop()  # evaluate() outside train(): its values are in, the run ends here

    @hookimpl
    def on_save(self, state: Any, checkpoint_dir: Path) -> None:
        which = self.config.log_checkpoints
        if which is None or not self._open:
            return
        if which == "best" and state.best_global_step != state.global_step:
            return
        target = self._path("checkpoints" if which == "same" else f"checkpoints/{which}")
        if which != "same" and self.run.exists(target):
            del self.run[target]  # the previous last / best checkpoint
        self._upload_dir(Path(checkpoint_dir), f"{target}/{Path(checkpoint_dir).name}")

    @hookimpl
    def on_train_end(self) -> None:
        if self._open and self._owned:
            self._stop()

    @hookimpl
    def on_exception(self, exception: BaseException) -> None:
        if not self._open:
            return
        self.run["sys/failed"] = True
        name = type(exception).__name__
        self.run[self._path("error")] = f"{name}: {exception}"[:1000] if str(exception) else name
        if self._owned:
            self._stop()

    # ---- the run -------------------------------------------------------------------------

    def _path(self, name: str) -> str:
        return f"{self.config.base_namespace}/{name}" if self.config.base_namespace else name

    def _ensure(self, args: Any) -> Any:
        if not self._open:
            self._start(args)
        return self.run

    def _start(self, args: Any) -> None:
        import neptune

        mode = self._mode()
        kwargs: dict[str, Any] = {**self.config.init_run, "mode": mode}
        kwargs.setdefault("name", self.config.name or args.run_name)
        # neptune's stdout/stderr capture wraps sys.stdout; stacked with other libraries' wrappers
        # (and a second run's) it recursed at interpreter exit. Opt in through init_run.
        kwargs.setdefault("capture_stdout", False)
        kwargs.setdefault("capture_stderr", False)
        if mode in ONLINE:
            kwargs.update(project=self.config.project, api_token=self.config.api_token)
        if self.sys_id and self.mode in ONLINE and mode in ONLINE:
            kwargs["with_id"] = self.sys_id  # the same run: a resume, or evaluate() after train()
        else:
            if self.mode is not None:
                logger.warning("neptune: the %s run this training logged to cannot be reopened "
                               "(only online runs can); logging into a new %s run.",
                               self.mode, mode)
            self.custom_run_id = self.custom_run_id or self.config.custom_run_id
            if self.custom_run_id:
                kwargs["custom_run_id"] = self.custom_run_id
        self.run = neptune.init_run(**kwargs)
        self._open, self.mode = True, mode
        if "with_id" in kwargs:
            self.run["sys/failed"] = False  # an interrupted run marked failed goes on
        else:
            self._last.clear()
            # offline every fetch() raises; an offline run cannot be reopened anyway
            self.sys_id = self.run["sys/id"].fetch() if mode in ONLINE else None

    def _mode(self) -> str:
        global _said_offline
        mode = self.config.mode
        if mode not in (None, *ONLINE):
            return mode
        missing = [var for var, value in (("NEPTUNE_API_TOKEN", self.config.api_token),
                                          ("NEPTUNE_PROJECT", self.config.project)) if not value]
        if not missing:
            return mode or "async"
        if not _said_offline:
            _said_offline = True
            where = os.path.abspath(os.environ.get("NEPTUNE_DATA_DIRECTORY", ".neptune"))
            logger.warning("neptune: no %s; logging offline into %s (upload later with "
                           "`neptune sync --project WORKSPACE/PROJECT`).", " or ".join(missing),
                           os.path.join(where, "offline"))
        return "offline"

    def _stop(self) -> None:
        self._open = self._training = False
        self.run.stop(seconds=self.config.stop_timeout)

    def _upload_dir(self, directory: Path, target: str) -> None:
        """Every file as a File field ``<target>/<relative path without suffix>``.

        ``File.from_stream`` copies the bytes into neptune's upload queue now (offline: into
        the offline run's ``upload_path``), so a checkpoint rotated away later still uploads.
        """
        from neptune.types import File

        files = sorted(p.relative_to(directory) for p in directory.rglob("*") if p.is_file())
        stems = Counter((p.parent, p.stem) for p in files)
        for rel in files:
            leaf = rel.stem if stems[rel.parent, rel.stem] == 1 else rel.name
            path = "/".join((target, *rel.parent.parts, leaf))
            with open(directory / rel, "rb") as stream:
                self.run[path].upload(File.from_stream(stream, extension=rel.suffix[1:] or "bin"))
