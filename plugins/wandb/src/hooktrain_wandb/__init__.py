"""Weights & Biases logging for hooktrain: config, metrics, summary, model artifacts, via wandb.

Like HF's ``WandbCallback``: metrics under ``train/x`` / ``eval/x`` with ``train/global_step`` as
their x-axis, the final values (``train_runtime``, ...) in the run summary, ``WANDB_PROJECT``,
``WANDB_LOG_MODEL`` and ``WANDB_WATCH`` with HF's meaning. Unlike it: the run is finished (exit
code 0) at train end and failed (non-zero) on an exception, a resumed run reattaches to its run id,
the final model is saved with ``hooktrain.plugin.save_model`` (no second Trainer), and with no API
key the run is logged offline (``wandb sync`` uploads it later) instead of prompting. The run's
lifecycle is ``TrackerPlugin``'s; docs/integrations/wandb.md says what is logged.
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hooktrain.plugin import (
    SUMMARY_KEYS,
    ConfigError,
    TrackerPlugin,
    hookimpl,
    rewrite_key,
    run_config,
    save_model,
    setting,
)

__all__ = ["WandbPlugin", "WandbSettings"]

logger = logging.getLogger("hooktrain")

_ONLINE = {"online", "run"}  # "run" is wandb's legacy spelling of online
_said_offline = False  # the offline fallback is announced once per process


@dataclass
class WandbSettings:
    """The ``[plugins.wandb]`` table; each field falls back to the W&B variable HF reads."""

    #: The W&B project (HF's default name).
    project: str = setting("huggingface", env="WANDB_PROJECT")
    #: The team or user the run belongs to; wandb's default entity when unset.
    entity: str | None = setting(None, env="WANDB_ENTITY")
    #: ``false``, ``end`` (the final model as an artifact) or ``checkpoint`` (every checkpoint);
    #: as in HF, ``true``/``1``/``yes`` is the deprecated spelling of ``end`` (mapped, with a
    #: warning) and ``0``/``no``/``off``/``none`` mean ``false``.
    log_model: bool | Literal["false", "none", "end", "checkpoint"] = setting(
        "false", env="WANDB_LOG_MODEL")
    #: ``false``, ``gradients``, ``parameters`` or ``all``: histograms through ``wandb.watch``.
    watch: bool | Literal["false", "none", "gradients", "parameters", "all"] = setting(
        "false", env="WANDB_WATCH")
    #: Batches between ``wandb.watch`` histograms; default ``max(100, logging_steps)`` as in HF.
    watch_log_freq: int | None = None
    #: ``online``, ``offline``, ``disabled`` or ``shared`` (wandb checks it); online without an
    #: API key -> offline.
    mode: str | None = setting(None, env="WANDB_MODE")
    #: Where wandb writes its ``wandb/`` run folders (wandb's default: the working directory).
    dir: str | None = setting(None, env="WANDB_DIR")
    #: Seconds ``wandb.init`` may wait for the server before it fails.
    init_timeout: float = setting(90.0, env="WANDB_INIT_TIMEOUT")
    #: Seconds the run's end may wait for uploads; the rest stays on disk for ``wandb sync``.
    finish_timeout: float = setting(60.0, env="WANDB_FINISH_TIMEOUT")

    def __post_init__(self) -> None:
        # config values arrive parsed (a boolean spelling as a bool), Python ones in any spelling
        log_model, watch = (_spelled(v) for v in (self.log_model, self.watch))
        if log_model is True:
            logger.warning("wandb: log_model (WANDB_LOG_MODEL) %r is HF's deprecated spelling "
                           "of 'end'; logging the final model.", self.log_model)
            log_model = "end"
        if watch is True:
            raise ConfigError("[plugins.wandb] watch (or $WANDB_WATCH) must be false, "
                              f"'gradients', 'parameters' or 'all'; got {self.watch!r}.")
        self.log_model, self.watch = log_model, watch


def _spelled(value: Any) -> Any:
    """HF's spellings: a true one -> ``True``; a false one or ``none`` -> ``"false"``."""
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    return "false" if text in ("false", "none", "0", "no", "off") else text


class WandbPlugin(TrackerPlugin):
    """Logs a hooktrain run to one W&B run, which a resumed training reattaches to."""

    plugin_name = "wandb"
    settings = WandbSettings

    def __init__(self, settings: WandbSettings | None = None) -> None:
        super().__init__(settings)
        self._watched: Any = None
        self._last: dict[str, float] = {}  # the latest value of each metric: artifact metadata

    @property
    def log_model(self) -> str:
        return self.config.log_model

    @property
    def watch(self) -> str:
        return self.config.watch

    # ---- hooks besides the base's --------------------------------------------------------

    @hookimpl
    def on_train_begin(self, args: Any, state: Any, model: Any) -> None:
        with self.failing():
            opened_before = self.run
            run = self.ensure_run(args, state, model, new=True)
            if opened_before is not None and not self.owns_run:  # HF adds the config to it
                run.config.update(run_config(args, model), allow_val_change=True)
            if self.watch != "false" and self._watched is None:
                freq = self.config.watch_log_freq or max(100, state.logging_steps)
                run.watch(model, log=self.watch, log_freq=freq)
                self._watched = model

    @hookimpl
    def on_predict(self, args: Any, state: Any, model: Any, metrics: dict[str, Any]) -> None:
        with self.failing():
            run = self.ensure_run(args, state, model)
            self._log(run, {rewrite_key(k): v for k, v in self.numeric(metrics).items()}, state)

    @hookimpl
    def on_save(self, args: Any, state: Any, checkpoint_dir: Path) -> None:
        if self.log_model != "checkpoint" or self.run is None:
            return
        with self.failing():
            aliases = [f"epoch_{round(state.epoch or 0, 2)}",
                       f"checkpoint_global_step_{state.global_step}"]
            self._artifact(args, state, Path(checkpoint_dir), aliases)

    # ---- TrackerPlugin -------------------------------------------------------------------

    def open_run(self, args: Any, state: Any, model: Any, run_id: str | None) -> Any:
        import wandb

        if wandb.run is not None:  # the user's own run, as HF uses it; the user finishes it
            run, self.owns_run = wandb.run, False
            run.config.update(run_config(args, model), allow_val_change=True)
        else:
            options: dict[str, Any] = {}
            if run_id:
                options.update(id=run_id, resume="allow")
            if args.run_name and args.run_name != args.output_dir:
                options["name"] = args.run_name
            run = wandb.init(
                project=self.config.project, entity=self.config.entity, dir=self.config.dir,
                mode=self._mode(), config=run_config(args, model),
                settings=wandb.Settings(init_timeout=self.config.init_timeout,
                                        finish_timeout=self.config.finish_timeout),
                **options,
            )
        run.define_metric("train/global_step")
        run.define_metric("*", step_metric="train/global_step", step_sync=True)
        return run

    def log_metrics(self, run: Any, metrics: dict[str, float], state: Any) -> None:
        for key in SUMMARY_KEYS & metrics.keys():
            run.summary[key] = metrics.pop(key)
        self._log(run, {rewrite_key(key): value for key, value in metrics.items()}, state)

    def before_finish(self, run: Any, args: Any, state: Any, model: Any) -> None:
        if self.log_model == "false":
            return
        with tempfile.TemporaryDirectory(prefix="hooktrain-wandb-") as directory:
            save_model(model, directory)
            (Path(directory) / "model_architecture.txt").write_text(f"{model}\n")
            self._artifact(args, state, Path(directory), ["final_model"], final=True)

    def finish_run(self, run: Any, failure: BaseException | None) -> None:
        self.detach_run(run)
        code = 0 if failure is None else 255 if isinstance(failure, KeyboardInterrupt) else 1
        run.finish(exit_code=code)

    def detach_run(self, run: Any) -> None:
        if self._watched is not None:  # wandb.watch's hooks would outlive the run
            watched, self._watched = self._watched, None
            run.unwatch(watched)

    # ---- wandb ---------------------------------------------------------------------------

    def _mode(self) -> Any:  # wandb checks the value
        """The configured mode; online without credentials becomes offline (said once)."""
        import wandb

        global _said_offline
        mode = (self.config.mode or "").strip().lower() or None
        if mode not in (None, *_ONLINE) or wandb.login(prompt=False, verify=False):
            return mode
        if not _said_offline:
            _said_offline = True
            logger.warning("wandb: no API key (WANDB_API_KEY, `wandb login`); logging offline "
                           "into wandb/offline-run-*, upload later with `wandb sync`.")
        return "offline"

    def _log(self, run: Any, values: dict[str, float], state: Any) -> None:
        step = state.global_step
        self._last.update(values)
        values["train/global_step"] = step
        # A resumed run continues at the server's next step; older steps are kept in
        # train/global_step (the charts' x-axis) instead of being dropped by wandb.
        run.log(values, step=step if step >= run.starting_step else None)

    def _artifact(self, args: Any, state: Any, directory: Path, aliases: list[str],
                  final: bool = False) -> None:
        import wandb

        own_name = args.run_name and args.run_name != args.output_dir
        name = re.sub(r"[^\w.-]+", "-", f"model-{(own_name and self.run.name) or self.run.id}")
        metadata: dict[str, Any] = {**self._last, "train/global_step": state.global_step}
        if final:
            metadata["final_model"] = True
        artifact = wandb.Artifact(name=name, type="model", metadata=metadata)
        artifact.add_dir(str(directory))
        self.run.log_artifact(artifact, aliases=aliases)
