"""Azure ML logging for hooktrain, through azureml-core's ``Run.get_context()``.

Inside an Azure ML job (the job sets ``AZUREML_RUN_ID`` and friends) ``Run.get_context()`` is the
job's run: every numeric log value goes to it with ``run.log(name, value, step=global_step)``,
which azureml-core queues and sends in batches from its own worker, so training never waits on
the network; the plugin waits at most ``timeout`` seconds for the queue at train end.

Outside Azure ML, azureml-core hands out an offline run: every call prints what it would have
done to stdout (``Attempted to log scalar metric loss:\\n0.25``) and nothing is stored or sent.
The plugin says so once. ``allow_offline = false`` switches the plugin off there instead.

Errors azureml-core raises propagate: hooktrain reports the plugin once, switches it off and
training finishes.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hooktrain import hookimpl
from hooktrain.integration import NumericFilter, rewrite_key, run_config, save_model

__all__ = ["AzureMLPlugin", "AzureMLSettings"]

logger = logging.getLogger("hooktrain")

_said_offline = False  # the offline fallback is announced once per process


@dataclass
class AzureMLSettings:
    """The ``[plugins.azure_ml]`` table. (HF's AzureMLCallback reads no environment variables.)"""

    #: The training arguments and the model's config as run tags (``run.set_tags``).
    log_params: bool = True
    #: Metric names as in every hooktrain integration (``train/loss``, ``eval/loss``); ``false``:
    #: the log keys as they are (``loss``, ``eval_loss``), HF's AzureMLCallback's names.
    rewrite_keys: bool = True
    #: Outside an Azure ML job, log to azureml-core's offline run (it prints every call to
    #: stdout); ``false``: switch the plugin off there with one warning.
    allow_offline: bool = True
    #: Upload every checkpoint (``on_save``'s directory) as ``checkpoint-<step>/<file>``.
    log_checkpoints: bool = False
    #: Upload the final model (``model/model.safetensors``, ``model/config.json``) at train end.
    log_model: bool = False
    #: Seconds to wait for azureml-core's metric queue at train end and for each upload.
    timeout: float = 300.0


class AzureMLPlugin:
    """Logs every numeric value to the Azure ML run (``train/loss``, ``eval/loss``, ...).

    Pass ``azureml_run=`` (as with HF's ``AzureMLCallback(azureml_run=...)``) to log into a run of
    your own, e.g. ``experiment.start_logging()``; that run stays yours to complete or fail.
    """

    settings = AzureMLSettings

    def __init__(self, settings: AzureMLSettings | None = None, *,
                 azureml_run: Any = None) -> None:
        self.config = settings or AzureMLSettings()
        #: The run this plugin logs to (``None`` until the first event that logs).
        self.run: Any = azureml_run
        self._owned = azureml_run is None
        self._online = False if azureml_run is None else _is_online(azureml_run)
        self._stored_id: str | None = None
        self._off = False
        self._numeric = NumericFilter("azure_ml")

    # ---- checkpoint state: the run id ----------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.run.id} if self.run is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._stored_id = state.get("run_id")

    # ---- hooks ---------------------------------------------------------------------------

    @hookimpl
    def on_load_checkpoint(self) -> None:
        if self._owned and self._stored_id and self.run is not None \
                and self.run.id != self._stored_id:
            self.run = None  # opened by an evaluate() before the resume: reopen below

    @hookimpl
    def on_train_begin(self, args: Any, model: Any) -> None:
        run = self._open()
        if run is not None and self.config.log_params:
            # Tags are mutable (a resumed run may change an argument); properties are not.
            run.set_tags({key: str(value) for key, value in run_config(args, model).items()})

    @hookimpl
    def on_log(self, state: Any, logs: dict[str, Any]) -> None:
        values = self._numeric(logs)
        run = self._open() if values else None
        if run is None:
            return
        for key, value in values.items():
            name = rewrite_key(key) if self.config.rewrite_keys else key
            if self._online:
                run.log(name, value, description=key, step=state.global_step)
            else:  # the offline run's log() has no step: values print in order
                run.log(name, value, description=key)

    @hookimpl
    def on_save(self, state: Any, checkpoint_dir: Path) -> None:
        if self.config.log_checkpoints and self.run is not None:
            self._upload(f"checkpoint-{state.global_step}", Path(checkpoint_dir))

    @hookimpl
    def on_train_end(self, model: Any) -> None:
        if self.run is None:
            return
        if self.config.log_model:
            with tempfile.TemporaryDirectory(prefix="hooktrain-azure-ml-") as tmp:
                self._upload("model", save_model(model, Path(tmp) / "model"))
        self._flush()

    @hookimpl
    def on_exception(self, exception: BaseException) -> None:
        if self.run is None:
            return
        self._flush()
        if self._owned:
            # Offline: prints "Run failed with error code None:\n<message>". In a job: the
            # error (type, message, stack) on the run; Azure ML sets the job's status itself
            # from the script's exit.
            self.run.fail(error_details=exception)

    # ---- the run -------------------------------------------------------------------------

    def _open(self) -> Any:
        if self.run is not None or self._off:
            return self.run
        from azureml.core.run import Run
        from azureml.exceptions import RunEnvironmentException

        try:
            run = Run.get_context(allow_offline=self.config.allow_offline)
        except RunEnvironmentException:  # allow_offline = false, outside a job
            self._off = True
            logger.warning("azure_ml: not inside an Azure ML job (no AZUREML_RUN_ID) and "
                           "allow_offline is false: nothing is logged to Azure ML.")
            return None
        self._online = _is_online(run)
        stored = self._stored_id
        if self._online:
            if stored and stored != run.id:
                logger.warning("azure_ml: the checkpoint was logged to run %s; this job logs to "
                               "its own run %s (a job cannot reattach to another run).",
                               stored, run.id)
            logger.info("azure_ml: logging to Azure ML run %s.", run.id)
        else:
            if stored and stored != run.id:
                run = type(run)(run_id=stored)  # a resumed run keeps its offline run id
            _say_offline()
        self.run = run
        return run

    def _flush(self) -> None:
        if self._online:
            self.run.flush(timeout_seconds=self.config.timeout)
        else:
            self.run.flush()  # offline: prints "Attempted to flush run with id <id>"

    def _upload(self, prefix: str, directory: Path) -> None:
        files = sorted(path for path in directory.rglob("*") if path.is_file())
        names = [f"{prefix}/{path.relative_to(directory).as_posix()}" for path in files]
        # Offline: prints "Attempted to track files [names] at [paths] with timeout <t>s".
        self.run.upload_files(names, [str(path) for path in files],
                              timeout_seconds=int(self.config.timeout))


def _is_online(run: Any) -> bool:
    """A real ``Run`` (a job's run, ``experiment.start_logging()``); the offline run is not one."""
    from azureml.core.run import Run

    return isinstance(run, Run)


def _say_offline() -> None:
    global _said_offline
    if not _said_offline:
        _said_offline = True
        logger.warning("azure_ml: not inside an Azure ML job (no AZUREML_RUN_ID): azureml-core "
                       "logs to an offline run that prints every value to stdout and stores "
                       "nothing. Set [plugins.azure_ml] allow_offline = false or "
                       "disable_plugins=['azure_ml'] to switch it off outside Azure ML.")
