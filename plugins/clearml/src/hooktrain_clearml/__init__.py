"""ClearML logging for hooktrain: hyperparameters, scalars, checkpoints and the task's status.

As HF's ``ClearMLCallback``: one task per training (``CLEARML_PROJECT`` / ``CLEARML_TASK``), a
task already running (``Task.current_task()``) reused and left to its owner, scalars titled
``train`` / ``eval`` / ``test`` at ``global_step``, checkpoints with ``CLEARML_LOG_MODEL``.
Unlike it: checkpoints are task artifacts (clearml's offline model registry crashes), the task
ends completed or failed, a resumed run continues its task, no credentials means an offline
session, and the server must answer within ``server_timeout`` (clearml retries for hours).
The run lifecycle (open, resume from the checkpoint's task id, close) is ``TrackerPlugin``'s;
where the task goes (offline, continuing, the server check) is in :mod:`hooktrain_clearml.session`.
See docs/integrations/clearml.md.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hooktrain.plugin import (
    SUMMARY_KEYS, TrackerPlugin, hookimpl, model_config, rewrite_key, setting,
)
from hooktrain_clearml.session import check_server, continuable, credentials, offline_dir, record

__all__ = ["ARGS_SECTION", "MODEL_SECTION", "ClearMLPlugin", "ClearMLSettings"]

logger = logging.getLogger("hooktrain")

#: Hyperparameter sections of the task: the training arguments and the model's config.
ARGS_SECTION = "TrainingArguments"
MODEL_SECTION = "ModelConfig"
_said_offline = False  # the offline fallback is announced once per process


@dataclass
class ClearMLSettings:
    """The ``[plugins.clearml]`` table; each field falls back to the variable HF reads."""

    #: The ClearML project (HF's default name).
    project: str = setting("HuggingFace Transformers", env="CLEARML_PROJECT")
    #: The task's name; default the run name when one is set, else HF's "Trainer".
    task_name: str | None = setting(None, env="CLEARML_TASK")
    #: Upload every checkpoint as the task artifact ``checkpoint-<step>`` (a zip of it).
    log_model: bool = setting(False, env="CLEARML_LOG_MODEL")
    #: ClearML's offline mode; default: offline when no ClearML credentials are configured.
    offline: bool | None = setting(None, env="CLEARML_OFFLINE_MODE")
    #: Record the git repository and packages (and check for clearml updates); online only.
    detect_repository: bool | None = None
    #: Seconds the ClearML API server may take to answer before the plugin switches off.
    server_timeout: float = 10.0


class ClearMLPlugin(TrackerPlugin):
    """Logs a hooktrain run to one ClearML task, which a resumed training continues."""

    plugin_name = "clearml"
    settings = ClearMLSettings
    run_id_key = "task_id"

    def __init__(self, settings: ClearMLSettings | None = None) -> None:
        super().__init__(settings)
        self.training = False  # inside train(): evaluate() and predict() leave the task open
        self.trained = False   # a train() ended: the next one (not resuming) is a new task
        self._crash: BaseException | None = None  # what on_exception was told

    #: The open task, and the id of this trainer's latest task (the base's run and run_id).
    task = property(lambda self: self.run)
    task_id = property(lambda self: self.run_id)

    # ---- hooks beyond the base's --------------------------------------------------------

    @hookimpl
    def on_train_begin(self, args: Any, state: Any, model: Any) -> None:
        with self.failing():
            if not self.trained and self.run is None:  # evaluate() before train(): its task
                self.resume_id = self.resume_id or self.run_id
            self.training, self.trained = True, False
            task = self.ensure_run(args, state, model, new=True)
            task.connect(args.to_sanitized_dict(), name=ARGS_SECTION)
            config = model_config(model)
            if config:
                task.connect(config, name=MODEL_SECTION)
            if self.config.log_model and args.save_strategy == "no":
                logger.warning("clearml: log_model is on, save_strategy 'no': nothing to upload.")

    @hookimpl
    def on_evaluate(self) -> None:
        if not self.training:  # evaluate() outside train(): its task ends with it
            with self.failing():
                self.end_run()

    @hookimpl
    def on_predict(self, args: Any, state: Any, model: Any, metrics: dict[str, Any]) -> None:
        with self.failing():
            self.log_metrics(self.ensure_run(args, state, model), self.numeric(metrics), state)
            if not self.training:
                self.end_run()

    @hookimpl
    def on_save(self, state: Any, checkpoint_dir: Path) -> None:
        if not self.config.log_model or self.run is None:
            return
        with self.failing():
            uploaded = self.run.upload_artifact(
                Path(checkpoint_dir).name, artifact_object=Path(checkpoint_dir),
                wait_on_upload=True,
                metadata={"global_step": state.global_step, "epoch": state.epoch},
            )
            if not uploaded:  # clearml only warns about some failures
                raise RuntimeError(f"clearml could not upload {checkpoint_dir} (see above).")

    @hookimpl
    def on_train_end(self, args: Any, state: Any, model: Any) -> None:
        self.training, self.trained = False, True
        super().on_train_end(args, state, model)

    @hookimpl
    def on_exception(self, exception: BaseException) -> None:
        self.training, self.trained, self._crash = False, self.training, exception
        super().on_exception(exception)

    # ---- the task ------------------------------------------------------------------------

    def open_run(self, args: Any, state: Any, model: Any, run_id: str | None) -> Any:
        if self.config.offline:  # before clearml's first import reads it
            os.environ["CLEARML_OFFLINE_MODE"] = "1"
        from clearml import Task

        current: Any = Task.current_task()
        if current is not None:  # the user's (or clearml-agent's) task, as HF uses it
            self.owns_run = False
            return current
        offline = self._offline()
        if not offline:  # before set_offline(False), which reconnects every clearml session
            check_server(self.config.server_timeout)
        Task.set_offline(offline)
        continued = continuable(run_id, offline)
        detect = False if offline else self.config.detect_repository is not False
        own_name = args.run_name and args.run_name != args.output_dir
        task: Any = Task.init(
            project_name=self.config.project,
            task_name=self.config.task_name or (own_name and args.run_name) or "Trainer",
            reuse_last_task_id=False, continue_last_task=continued or False,
            auto_connect_arg_parser=False,  # the resolved arguments are connected instead
            # pytorch: clearml would register every torch.save as a model (crashes offline)
            auto_connect_frameworks={"pytorch": False, "tensorboard": False,
                                     "detect_repository": detect},
        )
        if not isinstance(task.id, str):  # clearml's StubObject, which logs nothing
            raise RuntimeError("clearml: Task.init gave no task: clearml takes this process for "
                               "a child of another task's process (CLEARML_PROC_MASTER_ID is "
                               "set), or CLEARML_IGNORE_MISSING_CONFIG hid a missing config.")
        if continued:
            task.set_initial_iteration(0)  # report at global_step, not after the last iteration
            if task.id != continued:
                logger.warning("clearml: task %s from the checkpoint was not found; logging "
                               "the resumed run to the new task %s.", continued, task.id)
        record(task, "in_progress")
        return task

    def _offline(self) -> bool:
        """The configured mode; with no setting, offline unless credentials are configured."""
        global _said_offline
        if self.config.offline:
            return True
        if credentials():
            return False
        if self.config.offline is False:
            raise RuntimeError("clearml: offline is false (or CLEARML_OFFLINE_MODE=0) but no "
                               "ClearML credentials are configured: run `clearml-init`, or set "
                               "CLEARML_API_ACCESS_KEY and CLEARML_API_SECRET_KEY.")
        if not _said_offline:
            _said_offline = True
            logger.warning("clearml: no ClearML credentials (`clearml-init`, or "
                           "CLEARML_API_ACCESS_KEY and CLEARML_API_SECRET_KEY); logging offline "
                           "into %s/<task id>; upload with `clearml-task "
                           "--import-offline-session <task id>.zip`.", offline_dir())
        return True

    def log_metrics(self, run: Any, metrics: dict[str, float], state: Any) -> None:
        report = run.get_logger()
        for key, value in metrics.items():
            title, series = rewrite_key(key).split("/", 1)
            report.report_scalar(title=title, series=series, value=value,
                                 iteration=state.global_step)
        for key in sorted(SUMMARY_KEYS & metrics.keys()):  # ClearML's run summary
            report.report_single_value(key, metrics[key])

    def finish_run(self, run: Any, failure: BaseException | None) -> None:
        message = "" if failure is None else f"{type(failure).__name__}: {failure}"
        if failure is not None and failure is not self._crash:  # a hook of this plugin raised
            message = f"hooktrain-clearml stopped logging after {message}"
        record(run, "completed" if failure is None else "failed", message)
        run.flush(wait_for_uploads=True)  # close() skips it once clearml saw a signal
        run.close()  # marks the task completed
        if failure is not None:
            run.mark_failed(status_reason=message, status_message=message, force=True)

    def detach_run(self, run: Any) -> None:
        run.flush(wait_for_uploads=True)  # the user's task: its owner closes it
