"""Azure ML logging for hooktrain, through azureml-core's ``Run.get_context()``.

Inside an Azure ML job (the job sets ``AZUREML_RUN_ID`` and friends) ``Run.get_context()`` is the
job's run: every numeric log value goes to it with ``run.log(name, value, step=global_step)``,
which azureml-core queues and sends in batches from its own worker, so training never waits on
the network; the plugin waits at most ``timeout`` seconds for the queue at train end.

Outside Azure ML, azureml-core hands out an offline run: every call prints what it would have
done to stdout (``Attempted to log scalar metric loss:\\n0.25``) and nothing is stored or sent.
The plugin says so once. ``allow_offline = false`` switches the plugin off there instead.

The lifecycle is :class:`~hooktrain.plugin.TrackerPlugin`'s, with one difference: the run is
the job's, which Azure ML completes or fails from the script's exit, so it outlives ``train()``
(``evaluate()`` after it logs there, a second ``train()`` too). The plugin flushes it at the
end and records the error on it when training or one of the plugin's hooks raises; hooktrain
then reports the plugin once, switches it off and training finishes.
docs/integrations/azure_ml.md has more.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hooktrain.plugin import TrackerPlugin, hookimpl, rewrite_key, run_config, save_model, setting

__all__ = ["AzureMLPlugin", "AzureMLSettings"]

logger = logging.getLogger("hooktrain")

_said_offline = False  # the offline fallback is announced once per process


@dataclass
class AzureMLSettings:
    """The ``[plugins.azure_ml]`` table. (HF's AzureMLCallback reads no environment variables.)"""

    #: The training arguments and the model's config as run tags (``run.set_tags``).
    log_params: bool = setting(True)
    #: Metric names as in every hooktrain integration (``train/loss``, ``eval/loss``); ``false``:
    #: the log keys as they are (``loss``, ``eval_loss``), HF's AzureMLCallback's names.
    rewrite_keys: bool = setting(True)
    #: Outside an Azure ML job, log to azureml-core's offline run (it prints every call to
    #: stdout); ``false``: switch the plugin off there with one warning.
    allow_offline: bool = setting(True)
    #: Upload every checkpoint (``on_save``'s directory) as ``checkpoint-<step>/<file>``.
    log_checkpoints: bool = setting(False)
    #: Upload the final model (``model/model.safetensors``, ``model/config.json``) at train end.
    log_model: bool = setting(False)
    #: Seconds to wait for azureml-core's metric queue at train end and for each upload.
    timeout: float = setting(300.0)


class AzureMLPlugin(TrackerPlugin):
    """Logs every numeric value to the Azure ML run (``train/loss``, ``eval/loss``, ...).

    Pass ``azureml_run=`` (as with HF's ``AzureMLCallback(azureml_run=...)``) to log into a run of
    your own, e.g. ``experiment.start_logging()``; that run stays yours to complete or fail.
    """

    plugin_name = "azure_ml"
    settings = AzureMLSettings
    config: AzureMLSettings

    def __init__(self, settings: AzureMLSettings | None = None, *,
                 azureml_run: Any = None) -> None:
        super().__init__(settings)
        self._given = azureml_run
        self._online = False  # a real Run (a job's, or the user's), not the offline one

    # ---- the run -------------------------------------------------------------------------

    def open_run(self, args: Any, state: Any, model: Any, run_id: str | None) -> Any:
        if self._given is not None:
            self.owns_run, self._online = False, _is_online(self._given)
            return self._given
        from azureml.core.run import Run
        from azureml.exceptions import RunEnvironmentException

        try:
            run = Run.get_context(allow_offline=self.config.allow_offline)
        except RunEnvironmentException:  # allow_offline = false, outside a job
            logger.warning("azure_ml: not inside an Azure ML job (no AZUREML_RUN_ID) and "
                           "allow_offline is false: nothing is logged to Azure ML.")
            return None
        self._online = _is_online(run)
        if self._online:
            if run_id and run_id != run.id:
                logger.warning("azure_ml: the checkpoint was logged to run %s; this job logs to "
                               "its own run %s (a job cannot reattach to another run).",
                               run_id, run.id)
            logger.info("azure_ml: logging to Azure ML run %s.", run.id)
        else:
            if run_id and run_id != run.id:
                run = type(run)(run_id=run_id)  # a resumed run keeps its offline run id
            _say_offline()
        return run

    def log_metrics(self, run: Any, metrics: dict[str, float], state: Any) -> None:
        for key, value in metrics.items():
            name = rewrite_key(key) if self.config.rewrite_keys else key
            if self._online:
                run.log(name, value, description=key, step=state.global_step)
            else:  # the offline run's log() has no step: values print in order
                run.log(name, value, description=key)

    def before_finish(self, run: Any, args: Any, state: Any, model: Any) -> None:
        if self.config.log_model:
            with tempfile.TemporaryDirectory(prefix="hooktrain-azure-ml-") as tmp:
                self._upload("model", save_model(model, Path(tmp) / "model"))

    def finish_run(self, run: Any, failure: BaseException | None) -> None:
        self.detach_run(run)
        if failure is not None:
            # Offline: prints "Run failed with error code None:\n<message>". In a job: the
            # error (type, message, stack) on the run; Azure ML sets the job's status itself
            # from the script's exit, so success needs no complete().
            run.fail(error_details=failure)

    def detach_run(self, run: Any) -> None:
        if self._online:
            run.flush(timeout_seconds=self.config.timeout)
        else:
            run.flush()  # offline: prints "Attempted to flush run with id <id>"

    def end_run(self, failure: BaseException | None = None) -> None:
        run = self.run
        super().end_run(failure)
        self.run = run  # the job's run outlives train() (see the module's docstring)

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() if self.run_id else {}  # nothing when switched off

    # ---- hooks beyond the base's ---------------------------------------------------------

    @hookimpl
    def on_load_checkpoint(self) -> None:
        if self.owns_run and self.resume_id and self.run is not None \
                and self.run_id != self.resume_id:
            self.run = None  # opened by an evaluate() before the resume: reopen the checkpoint's

    @hookimpl
    def on_train_begin(self, args: Any, state: Any, model: Any) -> None:
        super().on_train_begin(args, state, model)
        with self.failing():
            if self.run is not None and self.config.log_params:
                # Tags are mutable (a resumed run may change an argument); properties are not.
                self.run.set_tags({k: str(v) for k, v in run_config(args, model).items()})

    @hookimpl
    def on_save(self, state: Any, checkpoint_dir: Path) -> None:
        with self.failing():
            if self.config.log_checkpoints and self.run is not None:
                self._upload(f"checkpoint-{state.global_step}", Path(checkpoint_dir))

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
