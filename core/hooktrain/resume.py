"""Saving, resuming and the best model: the checkpoint side of :class:`~hooktrain.Trainer`.

What a checkpoint holds and how it is written is :mod:`hooktrain.checkpoint`; this module decides
when and with what. On resume the *progress* (steps, epoch, logs, best metric, plugin states,
running loss sums, RNG) comes from the checkpoint and the *schedule* (logging, eval and save
steps, max_steps) from the new arguments (HF #36303).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hooktrain import checkpoint as ckpt
from hooktrain import distributed
from hooktrain.errors import CheckpointError, ConfigError
from hooktrain.loss_filter import reduced_sum
from hooktrain.plugin_host import plugin_state
from hooktrain.trainer_state import TrainerState

if TYPE_CHECKING:
    from hooktrain.trainer import Trainer

logger = logging.getLogger("hooktrain")

# TrainerState fields that describe progress; the others are recomputed from the arguments.
_PROGRESS_FIELDS = (
    "epoch", "global_step", "num_input_tokens_seen", "total_flos", "log_history", "best_metric",
    "best_global_step", "best_model_checkpoint", "trial_name", "trial_params",
)


class CheckpointMixin:
    """Checkpoint saving and resuming; mixed into :class:`~hooktrain.Trainer`."""

    _resumed_from: Path | None = None

    def _save_checkpoint(self: Trainer) -> Path:
        args, state = self.args, self.state
        output_dir = Path(args.output_dir)
        step = state.global_step
        if state.best_global_step is not None and args.save_strategy != "no":
            best = output_dir / f"{ckpt.PREFIX}-{state.best_global_step}"
            if state.best_global_step == step or best.is_dir():
                state.best_model_checkpoint = str(best)
        state.stateful_callbacks = plugin_state.collect(self.plugin_manager.records(), self.control)
        # Collectives first, on every rank: the mean running loss (each rank restores it, so the
        # logged means continue exactly) and every rank's RNG state, which rank zero writes.
        loop = {
            "tr_loss": reduced_sum(self._loss_filter, self._tr_loss,
                                   self._globalstep_last_logged, distributed.mean_over_processes),
            "total_loss_scalar": self._total_loss_scalar,
            "globalstep_last_logged": self._globalstep_last_logged,
            # what the next training log reports if it comes before another step
            "last_grad_norm": None if self._last_grad_norm is None else float(self._last_grad_norm),
            "last_learning_rate": float(self._last_learning_rate),  # a tensor lr is valid
        }
        rng_states = distributed.gather_objects(ckpt.collect_rng_state())
        path = output_dir / f"{ckpt.PREFIX}-{step}"
        if args.should_save:
            writers = {
                ckpt.WEIGHTS: ckpt.save_weights(self.model),
                ckpt.OPTIMIZER: ckpt.save_torch(self.optimizer.state_dict()),
                ckpt.SCHEDULER: ckpt.save_torch(self.lr_scheduler.state_dict()),
                **{ckpt.rng_file(rank): ckpt.save_torch(rng)
                   for rank, rng in enumerate(rng_states)},
                ckpt.TRAINER_STATE: state.save_to_json,
                ckpt.ARGS: ckpt.save_json(args.to_dict()),
                ckpt.LOOP_STATE: ckpt.save_json(loop),
            }
            path = ckpt.write_checkpoint(output_dir, step, writers, before=self._save_model_hook())
            keep = [path] + [p for p in (self._resumed_from,) if p is not None]
            if state.best_model_checkpoint:
                keep.append(Path(state.best_model_checkpoint))
            ckpt.rotate_checkpoints(output_dir, args.save_total_limit, keep)
        distributed.barrier()  # on_save fires on every rank once the checkpoint is complete
        return path

    def _save_model_hook(self: Trainer) -> Any:
        """A ``save_model`` override, called into the checkpoint as HF's ``_save_checkpoint``
        calls it (``_internal_call=True``); the checkpoint's own weights are written after it."""
        if getattr(type(self).save_model, "writes_checkpoint_weights_itself", False):
            return None  # the Trainer's own: the checkpoint writes the weights
        return lambda directory: self.save_model(str(directory), _internal_call=True)

    def _resolve_resume(self: Trainer, resume_from_checkpoint: str | bool | None) -> Path | None:
        self._resumed_from = None
        if resume_from_checkpoint is None or resume_from_checkpoint is False:
            return None
        if self.args.should_save:
            ckpt.remove_stale_temporaries(self.args.output_dir)
        if resume_from_checkpoint is True:
            found = ckpt.newest_complete_checkpoint(self.args.output_dir)
            if found is None:
                logger.warning(
                    "resume_from_checkpoint=True but %s holds no complete checkpoint; "
                    "training starts from scratch.", self.args.output_dir,
                )
                return None
            self._resumed_from = found  # checked file by file already
            return found
        self._resumed_from = ckpt.verify_checkpoint(Path(resume_from_checkpoint))
        return self._resumed_from

    def _load_checkpoint(self: Trainer, path: Path) -> None:
        """Restore weights, optimizer, scheduler, progress, loss sums, RNG and plugin states."""
        ckpt.load_weights(self.model, path)
        self.optimizer.load_state_dict(ckpt.load_torch(path / ckpt.OPTIMIZER, self.device))
        self.lr_scheduler.load_state_dict(ckpt.load_torch(path / ckpt.SCHEDULER))
        try:
            saved = TrainerState.load_from_json(path / ckpt.TRAINER_STATE)
        except AttributeError:  # not a JSON object
            _fail(path / ckpt.TRAINER_STATE, "the file", "is not a JSON object")
        except (OSError, ValueError, TypeError) as exc:
            raise CheckpointError(f"Cannot read {path / ckpt.TRAINER_STATE}: {exc}") from exc
        _check_progress(saved, path / ckpt.TRAINER_STATE)
        for name in _PROGRESS_FIELDS:
            setattr(self.state, name, getattr(saved, name))
        if self.state.best_model_checkpoint and not Path(self.state.best_model_checkpoint).is_dir():
            self.state.best_model_checkpoint = None
        loop = ckpt.load_json(path / ckpt.LOOP_STATE)
        _check_loop_state(loop, path / ckpt.LOOP_STATE)
        self._tr_loss.fill_(loop["tr_loss"])
        self._loss_filter.reset(base=loop["tr_loss"])
        self._total_loss_scalar = loop["total_loss_scalar"]
        self._globalstep_last_logged = loop["globalstep_last_logged"]
        self._last_grad_norm = loop.get("last_grad_norm")  # absent from older checkpoints
        self._last_learning_rate = loop.get("last_learning_rate",
                                            self.lr_scheduler.get_last_lr()[0])
        if self.args.restore_callback_states_from_checkpoint:
            plugin_state.restore(
                self.plugin_manager.records(), saved.stateful_callbacks, self.control
            )
            # A stop that came from reaching the old max_steps does not stop a longer run; a
            # stop a plugin asked for (early stopping) does.
            if saved.global_step >= saved.max_steps:
                self.control.should_training_stop = False
        rng_path = path / ckpt.rng_file(self.args.process_index)
        if rng_path.is_file():
            ckpt.restore_rng_state(ckpt.load_torch(rng_path))
        else:
            logger.warning("%s has no %s; RNG states are not restored.", path, rng_path.name)
        logger.info("Resumed from %s at step %d.", path, self.state.global_step)

    def _update_best_metric(self: Trainer, metrics: dict[str, Any]) -> bool:
        """HF's ``_determine_best_metric``: update ``state.best_metric``; True if improved."""
        args, state = self.args, self.state
        if args.metric_for_best_model is None:
            return False
        key = args.metric_for_best_model
        if not key.startswith("eval_"):
            key = f"eval_{key}"
        if key not in metrics:
            raise ConfigError(
                f"metric_for_best_model is {args.metric_for_best_model!r}, so hooktrain looks "
                f"for {key!r}, but the evaluation produced {sorted(metrics)}. Set "
                "metric_for_best_model to one of them (without the 'eval_' prefix is fine)."
            )
        value = metrics[key]
        if state.best_metric is None:
            state.best_metric = float("-inf") if args.greater_is_better else float("inf")
        better = value > state.best_metric if args.greater_is_better else value < state.best_metric
        if better:
            state.best_metric = value
            if args.save_strategy in ("steps", "epoch", "best"):
                state.best_global_step = state.global_step
        return better

    def _load_best_model_at_end(self: Trainer) -> None:
        best = self.state.best_model_checkpoint
        if not self.args.load_best_model_at_end or not best:
            return
        path = Path(best)
        if ckpt.incomplete_reason(path) is not None:
            logger.warning("Best checkpoint %s is gone or incomplete; keeping the last weights.",
                           path)
            return
        logger.info("Loading best model from %s (score: %s).", path, self.state.best_metric)
        ckpt.load_weights(self.model, path)


def _fail(path: Path, field: str, problem: str) -> None:
    raise CheckpointError(f"{path}: {field} {problem}. The file was edited by hand or written by "
                          "another version; resume from another checkpoint.")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_progress(saved: TrainerState, path: Path) -> None:
    """The progress fields resume relies on, with the types they must have."""
    raw = ckpt.load_json(path)
    if not isinstance(raw, dict):
        _fail(path, "the file", "is not a JSON object")
    for name in ("global_step", "log_history"):
        if name not in raw:
            _fail(path, repr(name), "is missing")
    step = saved.global_step
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        _fail(path, "'global_step'", f"must be a whole number >= 0, not {step!r}")
    if saved.epoch is not None and not _is_number(saved.epoch):
        _fail(path, "'epoch'", f"must be a number, not {saved.epoch!r}")
    history = saved.log_history
    if not isinstance(history, list) or not all(isinstance(e, dict) for e in history):
        _fail(path, "'log_history'", "must be a list of objects")
    if saved.best_metric is not None and not _is_number(saved.best_metric):
        _fail(path, "'best_metric'", f"must be a number or null, not {saved.best_metric!r}")
    if not isinstance(saved.stateful_callbacks or {}, dict):
        _fail(path, "'stateful_callbacks'", "must be an object")


def _check_loop_state(loop: Any, path: Path) -> None:
    if not isinstance(loop, dict):
        _fail(path, "the file", "is not a JSON object")
    for name in ("tr_loss", "total_loss_scalar", "globalstep_last_logged"):
        if name not in loop:
            _fail(path, repr(name), "is missing")
        if not _is_number(loop[name]):
            _fail(path, repr(name), f"must be a number, not {loop[name]!r}")
