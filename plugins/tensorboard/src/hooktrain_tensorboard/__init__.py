"""TensorBoard logging for hooktrain: scalars, hyperparameters and config, via tensorboardX.

Events are written synchronously on the training thread, on logging steps only: a failing disk
raises inside the hook, where hooktrain's fault isolation reports it and switches the plugin off.
(tensorboardX's ``SummaryWriter`` writes from a background thread whose errors nobody sees and
whose bounded queue then blocks training forever.)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hooktrain import hookimpl
from hooktrain.integration import NumericFilter, default_run_dir, model_config, rewrite_key, run_config
from hooktrain.plugin_host.settings import from_environment

__all__ = ["TensorBoardPlugin", "TensorBoardSettings"]


@dataclass
class TensorBoardSettings:
    """The ``[plugins.tensorboard]`` table."""

    #: Where event files go; default ``<output_dir>/runs/<run name>``.
    log_dir: str | None = field(default=None, metadata={"env": "TENSORBOARD_LOGGING_DIR"})
    #: Flush written events to disk at least this often (also at each evaluation and at the end).
    flush_secs: float = 120.0
    #: Log the training arguments and the model's config as hyperparameters and as text.
    log_hparams: bool = True


class TensorBoardPlugin:
    """Writes every numeric log value as a scalar under HF's names (``train/loss``, ``eval/loss``)."""

    settings = TensorBoardSettings

    def __init__(self, settings: TensorBoardSettings | None = None) -> None:
        self.config = settings or from_environment("tensorboard", TensorBoardSettings)
        self.log_dir: Path | None = None
        self._writer: Any = None
        self._numeric = NumericFilter("tensorboard")
        self._last_flush = 0.0

    @hookimpl
    def on_train_begin(self, args: Any, state: Any, model: Any) -> None:
        self._open(args)
        if self.config.log_hparams:
            self._write_config(args, model, state.global_step)
        self._flush()

    @hookimpl
    def on_log(self, args: Any, state: Any, logs: dict[str, Any]) -> None:
        from tensorboardX import summary

        self._open(args)
        for key, value in self._numeric(logs).items():
            self._write(summary.scalar(rewrite_key(key), value), state.global_step)
        if time.monotonic() - self._last_flush >= self.config.flush_secs:
            self._flush()

    @hookimpl
    def on_evaluate(self) -> None:
        self._flush()

    @hookimpl
    def on_train_end(self, state: Any) -> None:
        if self._writer is not None and self.config.log_hparams:
            from tensorboardX import summary

            self._write(summary.hparams({}, {})[2], state.global_step)  # session end: success
        self._close()

    @hookimpl
    def on_exception(self) -> None:
        self._close()

    # ---- writer --------------------------------------------------------------------------

    def _open(self, args: Any) -> None:
        if self._writer is not None:
            return
        from tensorboardX.event_file_writer import EventsWriter

        # Resolved from the run's own arguments, so evaluate() before train() writes here too.
        self.log_dir = Path(self.config.log_dir) if self.config.log_dir else default_run_dir(args)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._writer = EventsWriter(str(self.log_dir / "events"))
        self._last_flush = time.monotonic()

    def _write(self, summary: Any, step: int) -> None:
        from tensorboardX.proto.event_pb2 import Event

        self._writer.write_event(Event(wall_time=time.time(), step=step, summary=summary))

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
        if self._writer is not None:
            self._writer.flush()
            self._last_flush = time.monotonic()

    def _close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
