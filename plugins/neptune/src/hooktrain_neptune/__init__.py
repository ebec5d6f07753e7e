"""Neptune logging for hooktrain (neptune 1.x client): parameters, metrics per step, checkpoints.

HF's ``NeptuneCallback`` layout under one base namespace (``finetuning``); unlike HF's: offline
without credentials (said once), ``sys/failed`` on an exception, online resume by ``with_id``.
The run's lifecycle is :class:`hooktrain.plugin.TrackerPlugin`'s; docs/integrations/neptune.md
says what is logged and why it differs from HF.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hooktrain import __version__ as hooktrain_version
from hooktrain.plugin import TrackerPlugin, hookimpl, rewrite_key, run_config
from hooktrain_neptune.checkpoints import upload_dir
from hooktrain_neptune.settings import NeptuneSettings

__all__ = ["NeptunePlugin", "NeptuneSettings"]

logger = logging.getLogger("hooktrain")

ONLINE = ("async", "sync")
#: A run's identity, the plugin's checkpoint state: online runs are reopened by ``sys_id``.
IDENTITY = ("mode", "sys_id", "custom_run_id")
_said_offline = False  # the offline fallback is announced once per process


class NeptunePlugin(TrackerPlugin):
    """Logs a hooktrain run to one neptune run; pass ``run=`` to log into a run of your own.

    Neptune's run id is three values (:data:`IDENTITY`): :attr:`run_id` is that dict.
    """

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
        #: This trainer's run: its mode, its ``sys/id`` (online only) and custom run id.
        self.mode = self.sys_id = self.custom_run_id = None
        self._training = self._trained = False
        self._last: dict[str, tuple[int, float]] = {}
        self._warned: set[str] = set()

    @hookimpl
    def on_train_begin(self, args: Any, state: Any, model: Any) -> None:
        with self.failing():
            # A second train() starts a new run; the first continues one evaluate() opened.
            run = self.ensure_run(args, state, model, new=self._trained)
            self._training = self._trained = True
            if self.config.log_checkpoints == "best" and args.metric_for_best_model is None:
                logger.warning("neptune: log_checkpoints='best' needs metric_for_best_model; "
                               "no checkpoint will be uploaded.")
            run["source_code/integrations/hooktrain"] = hooktrain_version  # as HF records its own
            if self.config.log_parameters:
                config, prefix = run_config(args, model), "model_config/"
                model_part = {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix)}
                run[self._path("trainer_parameters")] = {
                    k: v for k, v in config.items() if not k.startswith(prefix)}
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
        if which is None or self.run is None:
            return
        if which == "best" and state.best_global_step != state.global_step:
            return
        with self.failing():
            target = self._path("checkpoints" if which == "same" else f"checkpoints/{which}")
            if which != "same" and self.run.exists(target):
                del self.run[target]  # the previous last / best checkpoint
            upload_dir(self.run, Path(checkpoint_dir), f"{target}/{Path(checkpoint_dir).name}")

    def open_run(self, args: Any, state: Any, model: Any, run_id: Any) -> Any:
        if self.user_run is not None:
            self.owns_run = False
            return self.user_run
        import neptune

        previous = run_id or dict.fromkeys(IDENTITY)
        mode = self._mode()
        kwargs: dict[str, Any] = {**self.config.init_run, "mode": mode}
        kwargs.setdefault("name", self.config.name or args.run_name)
        # neptune's stdout/stderr capture wraps sys.stdout; stacked with other libraries' wrappers
        # (and a second run's) it recursed at interpreter exit. Opt in through init_run.
        kwargs.setdefault("capture_stdout", False)
        kwargs.setdefault("capture_stderr", False)
        if mode in ONLINE:
            kwargs.update(project=self.config.project, api_token=self.config.api_token)
        if previous["sys_id"] and previous["mode"] in ONLINE and mode in ONLINE:
            kwargs["with_id"] = previous["sys_id"]  # the same run: a resume, or evaluate() after
        else:
            if previous["mode"] is not None:
                logger.warning("neptune: the %s run this training logged to cannot be reopened "
                               "(only online runs can); logging into a new %s run.",
                               previous["mode"], mode)
            custom_run_id = previous["custom_run_id"] or self.config.custom_run_id
            if custom_run_id:
                kwargs["custom_run_id"] = custom_run_id
        run = neptune.init_run(**kwargs)
        self.mode, self.custom_run_id = mode, kwargs.get("custom_run_id")
        if "with_id" in kwargs:
            self.sys_id, self.custom_run_id = previous["sys_id"], previous["custom_run_id"]
            run["sys/failed"] = False  # an interrupted run marked failed goes on
        else:
            self._last.clear()
            # offline every fetch() raises; an offline run cannot be reopened anyway
            self.sys_id = run["sys/id"].fetch() if mode in ONLINE else None
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
        """A failure is recorded on the run, a run of the user's own too (which stays open):
        ``sys/failed`` and ``<base>/error``."""
        self._training = False
        run = self.run
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
