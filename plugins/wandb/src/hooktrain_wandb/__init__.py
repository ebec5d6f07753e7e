"""Weights & Biases logging for hooktrain: config, metrics, summary, model artifacts, via wandb.

Like HF's ``WandbCallback``: metrics under ``train/x`` / ``eval/x`` with ``train/global_step`` as
their x-axis, the final values (``train_runtime``, ...) in the run summary, ``WANDB_PROJECT``,
``WANDB_LOG_MODEL`` and ``WANDB_WATCH`` with HF's meaning. Unlike it: the run is finished (exit
code 0) at train end and failed (non-zero) on an exception, a resumed run reattaches to its run id,
the final model is saved with ``hooktrain.integration.save_model`` (no second Trainer), and with
no API key the run is logged offline (``wandb sync`` uploads it later) instead of prompting.
"""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hooktrain import hookimpl
from hooktrain.integration import SUMMARY_KEYS, NumericFilter, rewrite_key, run_config, save_model
from hooktrain.plugin_host.settings import from_environment

__all__ = ["WandbPlugin", "WandbSettings"]

logger = logging.getLogger("hooktrain")

LOG_MODEL_CHOICES = ("false", "end", "checkpoint")
WATCH_CHOICES = ("false", "gradients", "parameters", "all")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", "none"}
_ONLINE = {"online", "run"}  # "run" is wandb's legacy spelling of online
_said_offline = False  # the offline fallback is announced once per process


@dataclass
class WandbSettings:
    """The ``[plugins.wandb]`` table; each field falls back to the W&B variable HF reads."""

    #: The W&B project (HF's default name).
    project: str = field(default="huggingface", metadata={"env": "WANDB_PROJECT"})
    #: The team or user the run belongs to; wandb's default entity when unset.
    entity: str | None = field(default=None, metadata={"env": "WANDB_ENTITY"})
    #: ``false``, ``end`` (the final model as an artifact) or ``checkpoint`` (every checkpoint).
    log_model: str = field(default="false", metadata={"env": "WANDB_LOG_MODEL"})
    #: ``false``, ``gradients``, ``parameters`` or ``all``: histograms through ``wandb.watch``.
    watch: str = field(default="false", metadata={"env": "WANDB_WATCH"})
    #: Batches between ``wandb.watch`` histograms; default ``max(100, logging_steps)`` as in HF.
    watch_log_freq: int | None = None
    #: ``online``, ``offline``, ``disabled`` or ``shared``; online without an API key -> offline.
    mode: str | None = field(default=None, metadata={"env": "WANDB_MODE"})
    #: Where wandb writes its ``wandb/`` run folders (wandb's default: the working directory).
    dir: str | None = field(default=None, metadata={"env": "WANDB_DIR"})
    #: Seconds ``wandb.init`` may wait for the server before it fails.
    init_timeout: float = field(default=90.0, metadata={"env": "WANDB_INIT_TIMEOUT"})
    #: Seconds the run's end may wait for uploads; the rest stays on disk for ``wandb sync``.
    finish_timeout: float = field(default=60.0, metadata={"env": "WANDB_FINISH_TIMEOUT"})


def _choice(value: str, choices: tuple[str, ...], setting: str, env: str) -> str:
    lowered = value.strip().lower()
    if lowered in _FALSE:
        return "false"
    if setting == "log_model" and lowered in _TRUE:
        logger.warning("wandb: %s=%r is HF's deprecated spelling of 'end'; logging the final "
                       "model.", env, value)
        return "end"
    if lowered not in choices:
        from hooktrain.errors import ConfigError

        raise ConfigError(f"[plugins.wandb] {setting} (or ${env}) must be one of "
                          f"{', '.join(choices)}; got {value!r}.")
    return lowered


class WandbPlugin:
    """Logs a hooktrain run to one W&B run, which a resumed training reattaches to."""

    settings = WandbSettings

    def __init__(self, settings: WandbSettings | None = None) -> None:
        self.config = settings or from_environment("wandb", WandbSettings)
        self.log_model = _choice(self.config.log_model, LOG_MODEL_CHOICES, "log_model",
                                 "WANDB_LOG_MODEL")
        self.watch = _choice(self.config.watch, WATCH_CHOICES, "watch", "WANDB_WATCH")
        self.run: Any = None          # the open run
        self.run_id: str | None = None  # the id of this trainer's run, open or finished
        self._owned = False           # False for a run the user started before train()
        self._resume_id: str | None = None
        self._watched: Any = None
        self._numeric = NumericFilter("wandb")
        self._last: dict[str, float] = {}

    # ---- checkpoint state --------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume_id = state.get("run_id")

    # ---- hooks ---------------------------------------------------------------------------

    @hookimpl
    def on_train_begin(self, args: Any, state: Any, model: Any) -> None:
        with self._failing():
            if self.run is None:
                self._open(args, model, self._resume_id)
            elif not self._owned:  # a run the user opened: HF adds the config to it
                self.run.config.update(run_config(args, model), allow_val_change=True)
            self._resume_id = None
            if self.watch != "false" and self._watched is None:
                freq = self.config.watch_log_freq or max(100, state.logging_steps)
                self.run.watch(model, log=self.watch, log_freq=freq)
                self._watched = model

    @hookimpl
    def on_log(self, args: Any, state: Any, model: Any, logs: dict[str, Any]) -> None:
        with self._failing():
            self._ensure(args, model)
            values = self._numeric(logs)
            for key in SUMMARY_KEYS & values.keys():
                self.run.summary[key] = values.pop(key)
            self._log({rewrite_key(key): value for key, value in values.items()}, state)

    @hookimpl
    def on_predict(self, args: Any, state: Any, model: Any, metrics: dict[str, Any]) -> None:
        with self._failing():
            self._ensure(args, model)
            self._log({rewrite_key(k): v for k, v in self._numeric(metrics).items()}, state)

    @hookimpl
    def on_save(self, args: Any, state: Any, checkpoint_dir: Path) -> None:
        if self.log_model != "checkpoint" or self.run is None:
            return
        with self._failing():
            aliases = [f"epoch_{round(state.epoch or 0, 2)}",
                       f"checkpoint_global_step_{state.global_step}"]
            self._artifact(args, state, Path(checkpoint_dir), aliases)

    @hookimpl
    def on_train_end(self, args: Any, state: Any, model: Any) -> None:
        with self._failing():
            if self.run is not None and self.log_model != "false":
                with tempfile.TemporaryDirectory(prefix="hooktrain-wandb-") as directory:
                    save_model(model, directory)
                    (Path(directory) / "model_architecture.txt").write_text(f"{model}\n")
                    self._artifact(args, state, Path(directory), ["final_model"], final=True)
            self._finish(0)

    @hookimpl
    def on_exception(self, exception: BaseException) -> None:
        self._finish(255 if isinstance(exception, KeyboardInterrupt) else 1)

    # ---- the run ---------------------------------------------------------------------------

    def _ensure(self, args: Any, model: Any) -> None:
        """A run for logging outside train(): evaluate() before it, or after it (same run id)."""
        if self.run is None:
            self._open(args, model, self._resume_id or self.run_id)

    def _open(self, args: Any, model: Any, run_id: str | None) -> None:
        import wandb

        if wandb.run is not None:  # the user's own run, as HF uses it; the user finishes it
            self.run, self._owned = wandb.run, False
            self.run.config.update(run_config(args, model), allow_val_change=True)
        else:
            options: dict[str, Any] = {}
            if run_id:
                options.update(id=run_id, resume="allow")
            if args.run_name and args.run_name != args.output_dir:
                options["name"] = args.run_name
            self.run = wandb.init(
                project=self.config.project, entity=self.config.entity, dir=self.config.dir,
                mode=self._mode(), config=run_config(args, model),
                settings=wandb.Settings(init_timeout=self.config.init_timeout,
                                        finish_timeout=self.config.finish_timeout),
                **options,
            )
            self._owned = True
        self.run_id = self.run.id
        self.run.define_metric("train/global_step")
        self.run.define_metric("*", step_metric="train/global_step", step_sync=True)

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

    def _log(self, values: dict[str, float], state: Any) -> None:
        step = state.global_step
        self._last.update(values)
        values["train/global_step"] = step
        # A resumed run continues at the server's next step; older steps are kept in
        # train/global_step (the charts' x-axis) instead of being dropped by wandb.
        self.run.log(values, step=step if step >= self.run.starting_step else None)

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

    def _finish(self, exit_code: int) -> None:
        run, self.run = self.run, None
        if run is None:
            return
        if self._watched is not None:
            watched, self._watched = self._watched, None
            run.unwatch(watched)
        if self._owned:
            run.finish(exit_code=exit_code)

    @contextlib.contextmanager
    def _failing(self) -> Iterator[None]:
        """A hook that raises is reported by hooktrain, which switches this plugin off: mark
        the run failed first, so it does not stay open and end as "finished" at exit."""
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):
                self._finish(1)
            raise
