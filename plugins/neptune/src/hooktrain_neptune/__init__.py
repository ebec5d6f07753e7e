"""Neptune logging for hooktrain (neptune 1.x client): parameters, metrics per step, checkpoints.

HF's ``NeptuneCallback`` layout (under ``finetuning``), but offline without credentials (said
once), ``sys/failed`` on a failure, online resume by ``with_id``. See docs/integrations/neptune.md.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hooktrain import __version__ as hooktrain_version
from hooktrain.plugin import ConfigError, TrackerPlugin, hookimpl, rewrite_key, run_config, setting

__all__ = ["NeptunePlugin", "NeptuneSettings"]

logger = logging.getLogger("hooktrain")

ONLINE = ("async", "sync")
IDENTITY = ("mode", "sys_id", "custom_run_id")  #: ``run_id`` is a dict of these.
_said_offline = False  # the offline fallback is announced once per process
#: ``init_run`` arguments the plugin decides (each has its own setting, or is the run's identity).
RESERVED = ("mode", "project", "api_token", "custom_run_id", "with_id")


@dataclass
class NeptuneSettings:
    """The ``[plugins.neptune]`` table; neptune's own variables are the fallbacks."""

    project: str | None = setting(None, env="NEPTUNE_PROJECT")  #: workspace/project; needed online.
    api_token: str | None = setting(None, env="NEPTUNE_API_TOKEN")  #: needed online.
    #: ``async``, ``sync``, ``offline`` or ``debug``; default async, offline without credentials.
    mode: Literal["async", "sync", "offline", "debug"] | None = setting(None, env="NEPTUNE_MODE")
    name: str | None = None  #: The run's name (``sys/name``); default ``args.run_name``.
    #: neptune's custom run id (runs sharing one log into the same run, online).
    custom_run_id: str | None = setting(None, env="NEPTUNE_CUSTOM_RUN_ID")
    base_namespace: str = "finetuning"  #: Where everything is logged (HF's); ``""``: the top.
    log_parameters: bool = True  #: Log the arguments and the model's config (HF's).
    #: HF's: ``same`` (every checkpoint), ``last``, ``best``; unset, ``none`` or false: none.
    log_checkpoints: bool | Literal["same", "last", "best"] | None = None
    init_run: dict[str, Any] = setting(default_factory=dict)  #: More ``neptune.init_run`` kwargs.
    stop_timeout: float | None = 60.0  #: ``run.stop()``'s wait for uploads; then ``neptune sync``.

    def __post_init__(self) -> None:
        if str(self.log_checkpoints).strip().lower() in ("false", "none", "no", "off", "0"):
            self.log_checkpoints = None  # any false spelling (Python-built settings) is none
        elif self.log_checkpoints is True:
            raise ConfigError("[plugins.neptune] log_checkpoints: same, last, best or unset.")
        self.base_namespace = self.base_namespace.strip("/")
        if taken := sorted(set(self.init_run) & set(RESERVED)):
            raise ConfigError(f"[plugins.neptune] init_run may not set {', '.join(taken)}: use the "
                              "settings of the same name (with_id comes from the checkpoint on "
                              "resume).")


class NeptunePlugin(TrackerPlugin):
    """Logs a hooktrain run to one neptune run (``run=``: to a run of your own)."""

    plugin_name = "neptune"
    settings = NeptuneSettings

    def __init__(self, settings: NeptuneSettings | None = None, *, run: Any = None) -> None:
        # neptune reads these when first imported; bounded, unless the user chose otherwise
        os.environ.setdefault("NEPTUNE_REQUEST_TIMEOUT", "30")
        os.environ.setdefault("NEPTUNE_RETRIES_TIMEOUT", "30")
        super().__init__(settings)
        if run is not None:
            from neptune import Run

            if not isinstance(run, Run):
                raise TypeError(f"run must be a neptune.Run, got {type(run).__name__}.")
        self.user_run = run
        self.mode = self.sys_id = self.custom_run_id = None  #: The run's :data:`IDENTITY`.
        self._training = self._trained = False
        self._last: dict[str, tuple[int, float]] = {}
        self._warned: set[str] = set()

    @hookimpl
    def on_train_begin(self, args: Any, state: Any, model: Any) -> None:
        with self.failing():
            run = self.ensure_run(args, state, model, new=self._trained)  # 2nd train(): new run
            self._training = self._trained = True
            if self.config.log_checkpoints == "best" and args.metric_for_best_model is None:
                logger.warning("neptune: log_checkpoints='best' needs metric_for_best_model; "
                               "no checkpoint will be uploaded.")
            run["source_code/integrations/hooktrain"] = hooktrain_version  # as HF records its own
            if self.config.log_parameters:
                run[self._path("trainer_parameters")] = args.to_sanitized_dict()
                config, prefix = run_config(args, model), "model_config/"
                model_part = {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix)}
                if model_part:
                    run[self._path("model_parameters")] = model_part

    @hookimpl
    def on_evaluate(self) -> None:
        if self.run is not None and self.owns_run and not self._training:
            with self.failing():
                self.end_run()  # evaluate() outside train(): its values are in, the run ends

    @hookimpl
    def on_save(self, state: Any, checkpoint_dir: Path) -> None:
        which = self.config.log_checkpoints
        if which is None or self.run is None or (
                which == "best" and state.best_global_step != state.global_step):
            return
        with self.failing():
            target = self._path("checkpoints" if which == "same" else f"checkpoints/{which}")
            if which != "same" and self.run.exists(target):
                del self.run[target]  # the previous last / best checkpoint
            _upload_dir(self.run, Path(checkpoint_dir), f"{target}/{Path(checkpoint_dir).name}")

    def open_run(self, args: Any, state: Any, model: Any, run_id: Any) -> Any:
        if self.user_run is not None:
            self.owns_run = False
            return self.user_run
        import neptune

        previous = run_id or dict.fromkeys(IDENTITY)
        mode = self._mode()
        # neptune's stdout/stderr capture wraps sys.stdout; stacked with other libraries' wrappers
        # (and a second run's) it recursed at interpreter exit. Opt in through init_run.
        kwargs: dict[str, Any] = {"name": self.config.name or args.run_name,
                                  "capture_stdout": False, "capture_stderr": False,
                                  **self.config.init_run, "mode": mode}
        if mode in ONLINE:
            kwargs.update(project=self.config.project, api_token=self.config.api_token)
        if previous["sys_id"] and previous["mode"] in ONLINE and mode in ONLINE:
            kwargs["with_id"] = previous["sys_id"]  # the same run: a resume, or evaluate() after
        else:
            if previous["mode"] is not None:
                logger.warning("neptune: the %s run this training logged to cannot be reopened "
                               "(only online runs can); logging into a new %s run.",
                               previous["mode"], mode)
            if custom_run_id := previous["custom_run_id"] or self.config.custom_run_id:
                kwargs["custom_run_id"] = custom_run_id
        run = neptune.init_run(**kwargs)
        self.mode, self.custom_run_id = mode, kwargs.get("custom_run_id")
        if "with_id" in kwargs:
            self.sys_id, self.custom_run_id = previous["sys_id"], previous["custom_run_id"]
            run["sys/failed"] = False  # an interrupted run marked failed goes on
        else:
            self._last.clear()
            self.sys_id = run["sys/id"].fetch() if mode in ONLINE else None  # offline it raises
        return run

    def run_id_of(self, run: Any) -> dict[str, Any]:
        return {"mode": self.mode, "sys_id": self.sys_id, "custom_run_id": self.custom_run_id}

    def log_metrics(self, run: Any, metrics: dict[str, float], state: Any) -> None:
        step = state.global_step
        for key, value in metrics.items():
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

    def end_run(self, failure: BaseException | None = None) -> None:
        """A failure is recorded on the run, the user's too: ``sys/failed``, ``<base>/error``."""
        run, self._training = self.run, False
        try:
            if run is not None and failure is not None:
                run["sys/failed"] = True
                name = type(failure).__name__
                run[self._path("error")] = f"{name}: {failure}"[:1000] if str(failure) else name
        finally:
            super().end_run(failure)

    def finish_run(self, run: Any, failure: BaseException | None) -> None:
        run.stop(seconds=self.config.stop_timeout)

    def state_dict(self) -> dict[str, Any]:
        return self.run_id_of(None)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.resume_id = {key: state.get(key) for key in IDENTITY}

    def _path(self, name: str) -> str:
        return f"{self.config.base_namespace}/{name}" if self.config.base_namespace else name

    def _mode(self) -> str:
        global _said_offline
        mode = self.config.mode
        missing = [var for var, value in (("NEPTUNE_API_TOKEN", self.config.api_token),
                                          ("NEPTUNE_PROJECT", self.config.project)) if not value]
        if mode not in (None, *ONLINE) or not missing:  # offline or debug, or online with both
            return mode or "async"
        if not _said_offline:
            _said_offline = True
            where = os.path.abspath(os.environ.get("NEPTUNE_DATA_DIRECTORY", ".neptune"))
            logger.warning("neptune: no %s; logging offline into %s (upload later with "
                           "`neptune sync --project WORKSPACE/PROJECT`).", " or ".join(missing),
                           os.path.join(where, "offline"))
        return "offline"


def _upload_dir(run: Any, directory: Path, target: str) -> None:
    """Every file as a File field ``<target>/<path without suffix>`` (with it where two share a
    stem); ``File.from_stream`` queues the bytes now: a checkpoint rotated away still uploads."""
    from neptune.types import File

    files = sorted(p.relative_to(directory) for p in directory.rglob("*") if p.is_file())
    stems = Counter((p.parent, p.stem) for p in files)
    for rel in files:
        leaf = rel.stem if stems[rel.parent, rel.stem] == 1 else rel.name
        path = "/".join((target, *rel.parent.parts, leaf))
        with open(directory / rel, "rb") as stream:
            run[path].upload(File.from_stream(stream, extension=rel.suffix[1:] or "bin"))
