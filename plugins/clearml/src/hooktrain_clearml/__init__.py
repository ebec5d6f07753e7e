"""ClearML logging for hooktrain: hyperparameters, scalars, checkpoints and the task's status.

As HF's ``ClearMLCallback`` (a running task reused and left to its owner; scalars titled
``train`` / ``eval`` / ``test``), but checkpoints are task artifacts, the task ends completed or
failed, a resume continues it, no credentials means offline and the server must answer within
``server_timeout`` (clearml retries for hours). See docs/integrations/clearml.md.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hooktrain.plugin import (
    SUMMARY_KEYS,
    TrackerPlugin,
    hookimpl,
    model_config,
    rewrite_key,
    setting,
)

__all__ = ["ARGS_SECTION", "MODEL_SECTION", "ClearMLPlugin", "ClearMLSettings"]

logger = logging.getLogger("hooktrain")

ARGS_SECTION = "TrainingArguments"  #: The task's hyperparameter section of the arguments,
MODEL_SECTION = "ModelConfig"  #: and of the model's config.
_said_offline = False  # the offline fallback is announced once per process


@dataclass
class ClearMLSettings:
    """The ``[plugins.clearml]`` table; each field falls back to the variable HF reads."""

    project: str = setting("HuggingFace Transformers", env="CLEARML_PROJECT")  #: HF's default
    #: The task's name; default the run name when one is set, else HF's "Trainer".
    task_name: str | None = setting(None, env="CLEARML_TASK")
    #: Upload every checkpoint as the task artifact ``checkpoint-<step>`` (a zip of it).
    log_model: bool = setting(False, env="CLEARML_LOG_MODEL")
    #: ClearML's offline mode; default: offline when no ClearML credentials are configured.
    offline: bool | None = setting(None, env="CLEARML_OFFLINE_MODE")
    #: Record the git repository and packages (and check for clearml updates); online only.
    detect_repository: bool | None = None
    server_timeout: float = 10.0  #: Seconds the API server may take to answer, else switched off.


class ClearMLPlugin(TrackerPlugin):
    """Logs a hooktrain run to one ClearML task, which a resumed training continues."""

    plugin_name = "clearml"
    settings = ClearMLSettings
    run_id_key = "task_id"

    def __init__(self, settings: ClearMLSettings | None = None) -> None:
        super().__init__(settings)
        self.training = False  # inside train(): evaluate() and predict() leave the task open
        self.trained = False   # a train() ended: the next one (not resuming) is a new task

    task = property(lambda self: self.run)  #: The open task (the base's ``run``).
    task_id = property(lambda self: self.run_id)  #: This trainer's latest task's id.

    @hookimpl
    def on_train_begin(self, args: Any, state: Any, model: Any) -> None:
        with self.failing():
            if not self.trained and self.run is None:  # evaluate() before train(): its task
                self.resume_id = self.resume_id or self.run_id
            self.training, self.trained = True, False
            task = self.ensure_run(args, state, model, new=True)
            task.connect(args.to_sanitized_dict(), name=ARGS_SECTION)
            if config := model_config(model):
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
            folder = Path(checkpoint_dir)
            uploaded = self.run.upload_artifact(
                folder.name, artifact_object=folder, wait_on_upload=True,
                metadata={"global_step": state.global_step, "epoch": state.epoch})
            if not uploaded:  # clearml only warns about some failures
                raise RuntimeError(f"clearml could not upload {checkpoint_dir} (see above).")

    @hookimpl
    def on_train_end(self, args: Any, state: Any, model: Any) -> None:
        self.training, self.trained = False, True
        super().on_train_end(args, state, model)

    @hookimpl
    def on_exception(self, exception: BaseException) -> None:
        self.training, self.trained = False, self.training
        super().on_exception(exception)

    def open_run(self, args: Any, state: Any, model: Any, run_id: str | None) -> Any:
        if self.config.offline:  # before clearml's first import reads it
            os.environ["CLEARML_OFFLINE_MODE"] = "1"
        from clearml import Task
        from clearml.config import get_offline_dir

        current: Any = Task.current_task()
        if current is not None:  # the user's (or clearml-agent's) task, as HF uses it
            self.owns_run = False
            return current
        offline = self._offline()
        Task.set_offline(offline)
        why = None  # why this mode cannot continue the checkpoint's task
        if run_id and offline and not (Path(get_offline_dir(run_id)) / "task.json").is_file():
            why = f"its offline session {get_offline_dir(run_id)} is not here"
        elif run_id and not offline and run_id.startswith("offline-"):
            why = "it was logged offline (import it with `clearml-task --import-offline-session`)"
        if why:
            logger.warning("clearml: not continuing task %s from the checkpoint: %s; logging the "
                           "resumed run to a new task.", run_id, why)
        continued = None if why else run_id
        own_name = args.run_name and args.run_name != args.output_dir
        task: Any = Task.init(
            project_name=self.config.project,
            task_name=self.config.task_name or (own_name and args.run_name) or "Trainer",
            reuse_last_task_id=False, continue_last_task=continued or False,
            auto_connect_arg_parser=False,  # the resolved arguments are connected instead
            # pytorch: clearml would register every torch.save as a model (crashes offline)
            auto_connect_frameworks={"pytorch": False, "tensorboard": False, "detect_repository":
                                     not offline and self.config.detect_repository is not False},
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
        _record(task, "in_progress")
        return task

    def _offline(self) -> bool:
        """Offline when set, or unset without credentials (or clearml-agent); online, the server
        must answer within ``server_timeout`` first (clearml's client retries for hours)."""
        global _said_offline
        import requests
        from clearml.backend_api import Session
        from clearml.backend_api.session.defs import ENV_ACCESS_KEY, ENV_AUTH_TOKEN, ENV_SECRET_KEY
        from clearml.config import config_obj, get_offline_dir, running_remotely

        if self.config.offline:
            return True
        key = ENV_ACCESS_KEY.get() or config_obj.get("api.credentials.access_key", None)
        secret = ENV_SECRET_KEY.get() or config_obj.get("api.credentials.secret_key", None)
        if ENV_AUTH_TOKEN.get() or (key and secret) or running_remotely():
            host, timeout = Session.get_api_server_host(), self.config.server_timeout
            try:  # before set_offline(False), which reconnects every clearml session
                requests.get(f"{host}/debug.ping", timeout=timeout)
            except requests.exceptions.SSLError:
                pass  # it answered; clearml applies its own certificate settings
            except requests.RequestException as exc:
                raise ConnectionError(f"clearml: the ClearML API server {host} did not answer "
                                      f"within {timeout:g} s ({type(exc).__name__}); clearml's "
                                      "own client would retry it for hours.") from exc
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
                           "--import-offline-session <task id>.zip`.", get_offline_dir())
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
        if self.own_fault:  # a hook of this plugin raised
            message = f"hooktrain-clearml stopped logging after {message}"
        _record(run, "completed" if failure is None else "failed", message)
        run.flush(wait_for_uploads=True)  # close() skips it once clearml saw a signal
        run.close()  # marks the task completed
        if failure is not None:
            run.mark_failed(status_reason=message, status_message=message, force=True)

    def detach_run(self, run: Any) -> None:
        run.flush(wait_for_uploads=True)  # the user's task: its owner closes it


def _record(task: Any, status: str, message: str = "") -> None:
    """Offline, clearml drops status calls (server requests): write ``task.json`` instead."""
    if task.is_offline():
        task._edit(status=status, status_reason=message or status, status_message=message)
