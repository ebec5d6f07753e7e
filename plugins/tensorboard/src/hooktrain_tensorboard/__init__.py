"""TensorBoard logging for hooktrain: scalars, hyperparameters and config, via tensorboardX.

The plugin is a :class:`~hooktrain.plugin.TrackerPlugin` whose "run" is one event file: opened at
``train()``'s start (or at the first log, for an ``evaluate()`` before it), closed at its end or
when training or one of the plugin's hooks raises, so what was written is on disk.

Events are written synchronously on the training thread, on logging steps only: a failing disk
raises inside the hook, where hooktrain's fault isolation reports it and switches the plugin off.
(tensorboardX's ``SummaryWriter`` writes from a background thread whose errors nobody sees and
whose bounded queue then blocks training forever.) docs/integrations/tensorboard.md has more.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hooktrain.plugin import (
    TrackerPlugin,
    default_run_dir,
    hookimpl,
    model_config,
    rewrite_key,
    run_config,
    setting,
)

__all__ = ["TensorBoardPlugin", "TensorBoardSettings"]

_NOT_IN_A_TAG = re.compile(r"[^-/\w\.]")


def scalar_tag(key: str) -> str:
    """The tag tensorboardX's ``summary.scalar`` would write: other characters become ``_``
    and leading slashes are dropped."""
    return _NOT_IN_A_TAG.sub("_", key).lstrip("/")


@dataclass
class TensorBoardSettings:
    """The ``[plugins.tensorboard]`` table."""

    #: Where event files go; default ``<output_dir>/runs/<run name>``.
    log_dir: str | None = setting(None, env="TENSORBOARD_LOGGING_DIR")
    #: Flush written events to disk at least this often (also at each evaluation and at the end).
    flush_secs: float = setting(120.0)
    #: Log the training arguments and the model's config as hyperparameters and as text.
    log_hparams: bool = setting(True)


class TensorBoardPlugin(TrackerPlugin):
    """Writes every numeric log value as a scalar under HF's names (``train/loss``,
    ``eval/loss``)."""

    plugin_name = "tensorboard"
    settings = TensorBoardSettings
    config: TensorBoardSettings

    # An event file has no id and nothing to reopen (a resumed training writes a new file into
    # the same directory, which TensorBoard shows as one run), so the plugin keeps no checkpoint
    # state: without these two methods hooktrain saves nothing for it, as before.
    state_dict = load_state_dict = None  # type: ignore[assignment]

    def __init__(self, settings: TensorBoardSettings | None = None) -> None:
        super().__init__(settings)
        self.log_dir: Path | None = None
        self._last_flush = 0.0

    def open_run(self, args: Any, state: Any, model: Any, run_id: str | None) -> Any:
        from tensorboardX.event_file_writer import EventsWriter

        # Resolved from the run's own arguments, so evaluate() before train() writes here too.
        self.log_dir = Path(self.config.log_dir) if self.config.log_dir else default_run_dir(args)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        writer = EventsWriter(str(self.log_dir / "events"))
        self._last_flush = time.monotonic()
        return writer

    @hookimpl
    def on_train_begin(self, args: Any, state: Any, model: Any) -> None:
        super().on_train_begin(args, state, model)
        with self.failing():
            if self.config.log_hparams:
                self._write_config(args, model, state.global_step)
            self._flush()

    def log_metrics(self, run: Any, metrics: dict[str, float], state: Any) -> None:
        from tensorboardX.proto.summary_pb2 import Summary

        # One event holds the step's scalars (TensorBoard reads every value of an event), not
        # one event each: a quarter of the records to encode and write on the training thread.
        # The values are numbers already (TrackerPlugin filters the log), so tensorboardX's
        # per-value numpy conversion is skipped too.
        values = [Summary.Value(tag=scalar_tag(rewrite_key(key)), simple_value=float(value))
                  for key, value in metrics.items()]
        if values:
            self._write(Summary(value=values), state.global_step)
        if time.monotonic() - self._last_flush >= self.config.flush_secs:
            self._flush()

    @hookimpl
    def on_evaluate(self) -> None:
        with self.failing():
            self._flush()

    def before_finish(self, run: Any, args: Any, state: Any, model: Any) -> None:
        if self.config.log_hparams:
            from tensorboardX import summary

            self._write(summary.hparams({}, {})[2], state.global_step)  # session end: success

    def finish_run(self, run: Any, failure: BaseException | None) -> None:
        run.close()  # flushes: everything logged so far is on disk, after a failure too

    # ---- writing -------------------------------------------------------------------------

    def _write(self, summary: Any, step: int) -> None:
        from tensorboardX.proto.event_pb2 import Event

        self.run.write_event(Event(wall_time=time.time(), step=step, summary=summary))

    def _write_config(self, args: Any, model: Any, step: int) -> None:
        from tensorboardX import summary

        self._write(summary.text("args", args.to_json_string()), step)
        config = model_config(model)
        if config:
            self._write(summary.text("model_config", json.dumps(config, indent=2)), step)
        experiment, session_start, _ = summary.hparams(run_config(args, model), {})
        self._write(experiment, step)
        self._write(session_start, step)

    def _flush(self) -> None:
        if self.run is not None:
            self.run.flush()
            self._last_flush = time.monotonic()
