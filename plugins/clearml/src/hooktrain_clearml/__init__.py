"""ClearML logging for hooktrain: hyperparameters, scalars, checkpoints and the task's status.

As HF's ``ClearMLCallback``: one task per training (``CLEARML_PROJECT`` / ``CLEARML_TASK``), a
task already running (``Task.current_task()``) reused and left to its owner, scalars titled
``train`` / ``eval`` / ``test`` at ``global_step``, checkpoints with ``CLEARML_LOG_MODEL``.
Unlike it: checkpoints are task artifacts (clearml's offline model registry crashes), the task
ends completed or failed, a resumed run continues its task, no credentials means an offline
session, and the server must answer within ``server_timeout`` (clearml retries for hours).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hooktrain import hookimpl
from hooktrain.integration import SUMMARY_KEYS, NumericFilter, model_config, rewrite_key
from hooktrain.plugin_host.settings import from_environment

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
    project: str = field(default="HuggingFace Transformers", metadata={"env": "CLEARML_PROJECT"})
    #: The task's name; default the run name when one is set, else HF's "Trainer".
    task_name: str | None = field(default=None, metadata={"env": "CLEARML_TASK"})
    #: Upload every checkpoint as the task artifact ``checkpoint-<step>`` (a zip of it).
    log_model: bool = field(default=False, metadata={"env": "CLEARML_LOG_MODEL"})
    #: ClearML's offline mode; default: offline when no ClearML credentials are configured.
    offline: bool | None = field(default=None, metadata={"env": "CLEARML_OFFLINE_MODE"})
    #: Record the git repository and packages (and check for clearml updates); online only.
    detect_repository: bool | None = None
    #: Seconds the ClearML API server may take to answer before the plugin switches off.
    server_timeout: float = 10.0


class ClearMLPlugin:
    """Logs a hooktrain run to one ClearML task, which a resumed training continues."""

    settings = ClearMLSettings

    def __init__(self, settings: ClearMLSettings | None = None) -> None:
        self.config = settings or from_environment("clearml", ClearMLSettings)
        self.task: Any = None             # the open task
        self.task_id: str | None = None   # this trainer's task, open or closed
        self._owned = False               # False for a task that was running before train()
        self._resume_id: str | None = None
        self._training = False
        self._ended = False               # a train() of this Trainer ended
        self._numeric = NumericFilter("clearml")

    def state_dict(self) -> dict[str, Any]:
        return {"task_id": self.task_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume_id = state.get("task_id")

    # ---- hooks ---------------------------------------------------------------------------

    @hookimpl
    def on_train_begin(self, args: Any, model: Any) -> None:
        with self._failing():
            if self._ended and self._resume_id is None:
                self.task_id = None  # train() again on this Trainer: a new training, a new task
            self._training, self._ended = True, False
            self._ensure(args)
            self._resume_id = None
            self.task.connect(args.to_sanitized_dict(), name=ARGS_SECTION)
            config = model_config(model)
            if config:
                self.task.connect(config, name=MODEL_SECTION)
            if self.config.log_model and args.save_strategy == "no":
                logger.warning("clearml: log_model is on, save_strategy 'no': nothing to upload.")

    @hookimpl
    def on_log(self, args: Any, state: Any, logs: dict[str, Any]) -> None:
        with self._failing():
            self._ensure(args)
            values = self._numeric(logs)
            self._report(values, state.global_step)
            report = self.task.get_logger()
            for key in sorted(SUMMARY_KEYS & values.keys()):  # ClearML's run summary
                report.report_single_value(key, values[key])

    @hookimpl
    def on_evaluate(self) -> None:
        if not self._training:  # evaluate() outside train(): its task ends with it
            with self._failing():
                self._close("completed")

    @hookimpl
    def on_predict(self, args: Any, state: Any, metrics: dict[str, Any]) -> None:
        with self._failing():
            self._ensure(args)
            self._report(self._numeric(metrics), state.global_step)
            if not self._training:
                self._close("completed")

    @hookimpl
    def on_save(self, state: Any, checkpoint_dir: Path) -> None:
        if not self.config.log_model or self.task is None:
            return
        with self._failing():
            name = Path(checkpoint_dir).name
            uploaded = self.task.upload_artifact(
                name, artifact_object=Path(checkpoint_dir), wait_on_upload=True,
                metadata={"global_step": state.global_step, "epoch": state.epoch},
            )
            if not uploaded:  # clearml only warns about some failures
                raise RuntimeError(f"clearml could not upload {checkpoint_dir} (see above).")

    @hookimpl
    def on_train_end(self) -> None:
        with self._failing():
            self._training, self._ended = False, True
            self._close("completed")

    @hookimpl
    def on_exception(self, exception: BaseException) -> None:
        self._training, self._ended = False, self._training
        self._close("failed", f"{type(exception).__name__}: {exception}")

    # ---- the task ------------------------------------------------------------------------

    def _ensure(self, args: Any) -> None:
        """Open the task, or reattach this trainer's or the checkpoint's."""
        if self.task is None:
            self._open(args, self._resume_id or self.task_id)

    def _open(self, args: Any, task_id: str | None) -> None:
        if self.config.offline:  # before clearml's first import reads it
            os.environ["CLEARML_OFFLINE_MODE"] = "1"
        from clearml import Task

        current: Any = Task.current_task()
        if current is not None:  # the user's (or clearml-agent's) task, as HF uses it
            self.task, self._owned, self.task_id = current, False, current.id
            return
        offline = self._offline()
        if not offline:  # before set_offline(False), which reconnects every clearml session
            _check_server(self.config.server_timeout)
        Task.set_offline(offline)
        continued = _continuable(task_id, offline)
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
        self.task, self._owned, self.task_id = task, True, task.id
        _record(task, "in_progress")

    def _offline(self) -> bool:
        """The configured mode; with no setting, offline unless credentials are configured."""
        global _said_offline
        if self.config.offline:
            return True
        from clearml.backend_api.session.defs import ENV_ACCESS_KEY, ENV_AUTH_TOKEN, ENV_SECRET_KEY
        from clearml.config import config_obj, get_offline_dir, running_remotely

        key = ENV_ACCESS_KEY.get() or config_obj.get("api.credentials.access_key", None)
        secret = ENV_SECRET_KEY.get() or config_obj.get("api.credentials.secret_key", None)
        if ENV_AUTH_TOKEN.get() or (key and secret) or running_remotely():
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

    def _report(self, values: dict[str, float], step: int) -> None:
        report = self.task.get_logger()
        for key, value in values.items():
            title, series = rewrite_key(key).split("/", 1)
            report.report_scalar(title=title, series=series, value=value, iteration=step)

    def _close(self, status: str, message: str = "") -> None:
        task, self.task = self.task, None
        if task is None:
            return
        if not self._owned:  # its owner closes it
            task.flush(wait_for_uploads=True)
            return
        _record(task, status, message)
        task.flush(wait_for_uploads=True)  # close() skips it once clearml saw a signal
        task.close()  # marks the task completed
        if status == "failed":
            task.mark_failed(status_reason=message, status_message=message, force=True)

    @contextlib.contextmanager
    def _failing(self) -> Iterator[None]:
        """A hook that raises is reported by hooktrain, which switches this plugin off: close
        the task as failed first, so that it does not stay open as the process's task."""
        try:
            yield
        except BaseException as exc:
            with contextlib.suppress(Exception):
                self._close("failed", f"hooktrain-clearml stopped logging after "
                                      f"{type(exc).__name__}: {exc}")
            raise


def _record(task: Any, status: str, message: str = "") -> None:
    """Offline, clearml keeps no task status (its status calls are requests to the server,
    dropped offline): write it into the session's ``task.json`` as the server would."""
    if task.is_offline():
        task._edit(status=status, status_reason=message or status, status_message=message)


def _continuable(task_id: str | None, offline: bool) -> str | None:
    """``task_id`` when the task can be continued in this mode, else ``None`` (with a warning)."""
    if not task_id:
        return None
    if offline:
        from clearml.config import get_offline_dir

        folder = get_offline_dir(task_id)
        if (folder / "task.json").is_file():
            return task_id
        why = f"its offline session {folder} is not here"
    elif not task_id.startswith("offline-"):
        return task_id
    else:
        why = "it was logged offline (import it with `clearml-task --import-offline-session`)"
    logger.warning("clearml: not continuing task %s from the checkpoint: %s; logging the "
                   "resumed run to a new task.", task_id, why)
    return None


def _check_server(timeout: float) -> None:
    """Raise unless the ClearML API server answers within ``timeout`` seconds."""
    import requests
    from clearml.backend_api import Session

    host = Session.get_api_server_host()
    try:
        requests.get(f"{host}/debug.ping", timeout=timeout)
    except requests.exceptions.SSLError:
        pass  # it answered; clearml applies its own certificate settings
    except requests.RequestException as exc:
        raise ConnectionError(
            f"clearml: the ClearML API server {host} did not answer within {timeout:g} s "
            f"({type(exc).__name__}); clearml's own client would retry it for hours."
        ) from exc
