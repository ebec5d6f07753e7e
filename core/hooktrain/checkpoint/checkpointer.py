"""``Checkpointer``: saving, resuming and the best model, for one :class:`~hooktrain.Trainer`.

What a checkpoint holds and how it is written is :mod:`hooktrain.checkpoint.format`; this module
decides when and with what. On resume the *progress* (steps, epoch, logs, best metric, plugin
states, running loss sums, RNG) comes from the checkpoint and the *schedule* (logging, eval and
save steps, max_steps) from the new arguments (HF #36303). See docs/checkpoints.md.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hooktrain import distributed, fsdp
from hooktrain.checkpoint import format as ckpt
from hooktrain.errors import CheckpointError, ConfigError
from hooktrain.plugin_host import plugin_state, timings
from hooktrain.progress import TrainingProgress
from hooktrain.trainer_state import TrainerState

if TYPE_CHECKING:
    from hooktrain.trainer import Trainer

logger = logging.getLogger("hooktrain")

# TrainerState fields that describe progress; the others are recomputed from the arguments.
_PROGRESS_FIELDS = (
    "epoch", "global_step", "num_input_tokens_seen", "total_flos", "log_history", "best_metric",
    "best_global_step", "best_model_checkpoint", "trial_name", "trial_params",
)


class Checkpointer:
    """Writes, finds, loads and rotates the checkpoints of one Trainer's ``output_dir``.

    It reads the trainer's public attributes (arguments, state, model, optimizer, scheduler,
    plugins) at each call, so what a subclass or a plugin swapped in is what gets saved.
    """

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        #: the checkpoint this run resumed from: rotation never deletes it
        self.resumed_from: Path | None = None

    # ---- saving --------------------------------------------------------------------------

    def save(self, progress: TrainingProgress) -> Path:
        """Write ``checkpoint-<global_step>`` (rank zero) and rotate; each rank returns its path."""
        trainer = self.trainer
        args, state = trainer.args, trainer.state
        output_dir = Path(args.output_dir)
        step = state.global_step
        if state.best_global_step is not None and args.save_strategy != "no":
            best = output_dir / f"{ckpt.PREFIX}-{state.best_global_step}"
            if state.best_global_step == step or best.is_dir():
                state.best_model_checkpoint = str(best)
        state.stateful_callbacks = plugin_state.collect(trainer.plugin_manager.records(),
                                                        trainer.control)
        state.stateful_callbacks[timings.STATE_KEY] = trainer.callback_handler.timings.to_saved()
        # Collectives first, on every rank: the mean running loss and every rank's RNG state,
        # which rank zero writes.
        loop = progress.to_saved()
        rng_states = distributed.gather_objects(ckpt.collect_rng_state())
        path = output_dir / f"{ckpt.PREFIX}-{step}"
        staging, model_files, save_model_hook = None, {}, self._save_model_hook()
        if fsdp.is_sharded(trainer.model):
            staging = self._write_shards()
            if save_model_hook is not None:  # it gathers the weights: a collective, so on
                save_model_hook(staging)      # every process (rank zero writes)
                save_model_hook = None
        else:
            model_files = {
                ckpt.WEIGHTS: ckpt.save_weights(trainer.model),
                ckpt.OPTIMIZER: ckpt.save_torch(trainer.optimizer.state_dict()),
            }
        if args.should_save:
            writers = {
                **model_files,
                ckpt.SCHEDULER: ckpt.save_torch(trainer.lr_scheduler.state_dict()),
                **{ckpt.rng_file(rank): ckpt.save_torch(rng)
                   for rank, rng in enumerate(rng_states)},
                ckpt.TRAINER_STATE: state.save_to_json,
                ckpt.ARGS: ckpt.save_json(args.to_dict()),
                ckpt.LOOP_STATE: ckpt.save_json(loop),
            }
            path = ckpt.write_checkpoint(output_dir, step, writers, before=save_model_hook,
                                         staging=staging)
            keep = [path] + [p for p in (self.resumed_from,) if p is not None]
            if state.best_model_checkpoint:
                keep.append(Path(state.best_model_checkpoint))
            ckpt.rotate_checkpoints(output_dir, args.save_total_limit, keep)
        distributed.barrier()  # on_save fires on every rank once the checkpoint is complete
        return path

    def _write_shards(self) -> Path:
        """FSDP: rank zero makes the staging directory and every rank writes its shard of the
        model and optimizer into it (no rank holds the whole model); the checkpoint is then
        completed by rank zero as any other, so the manifest lists every rank's file."""
        trainer = self.trainer
        staging = None
        if trainer.args.should_save:
            staging = ckpt.new_staging(trainer.args.output_dir, trainer.state.global_step)
        staging = Path(distributed.gather_objects(str(staging) if staging else None)[0])
        fsdp.save_sharded(trainer.model, trainer.optimizer, staging / fsdp.SHARDED)
        distributed.barrier()  # every shard is on disk before rank zero seals the checkpoint
        return staging

    def _save_model_hook(self) -> Any:
        """A ``save_model`` override, called into the checkpoint as HF's ``_save_checkpoint``
        calls it (``_internal_call=True``); the checkpoint's own weights are written after it."""
        trainer = self.trainer
        if getattr(type(trainer).save_model, "writes_checkpoint_weights_itself", False):
            return None  # the Trainer's own: the checkpoint writes the weights
        return lambda directory: trainer.save_model(str(directory), _internal_call=True)

    # ---- resuming ------------------------------------------------------------------------

    def resolve(self, resume_from_checkpoint: str | bool | None) -> Path | None:
        """The checkpoint ``train(resume_from_checkpoint=...)`` resumes from, checked; or None.

        Under torchrun rank zero chooses and checks it and every process takes its answer (or
        its error), so all load the same checkpoint, or none does, and the files are hashed
        once instead of once per process."""
        self.resumed_from = None
        if resume_from_checkpoint is None or resume_from_checkpoint is False:
            return None
        if distributed.world_size() == 1:
            return self._resolve_here(resume_from_checkpoint)
        answer: tuple[str, str | None] = ("", None)
        if distributed.rank() == 0:
            try:
                found = self._resolve_here(resume_from_checkpoint)
                answer = ("path", None if found is None else str(found))
            except CheckpointError as exc:
                answer = ("error", str(exc))
        kind, value = distributed.gather_objects(answer)[0]
        if kind == "error":
            raise CheckpointError(value)
        self.resumed_from = None if value is None else Path(value)
        if self.resumed_from is not None and not self.resumed_from.is_dir():
            raise CheckpointError(
                f"Rank {distributed.rank()} cannot see {self.resumed_from}, which rank 0 resumes "
                "from: output_dir must be on a filesystem every process sees.")
        return self.resumed_from

    def _resolve_here(self, resume_from_checkpoint: str | bool) -> Path | None:
        args = self.trainer.args
        if args.should_save:
            ckpt.remove_stale_temporaries(args.output_dir)
        if resume_from_checkpoint is True:
            found = ckpt.newest_complete_checkpoint(args.output_dir)
            if found is None:
                logger.warning(
                    "resume_from_checkpoint=True but %s holds no complete checkpoint; "
                    "training starts from scratch.", args.output_dir,
                )
                return None
            self.resumed_from = found  # checked file by file already
            return found
        self.resumed_from = ckpt.verify_checkpoint(Path(resume_from_checkpoint))
        return self.resumed_from

    def load(self, path: Path, progress: TrainingProgress) -> None:
        """Restore weights, optimizer, scheduler, progress, loss sums, RNG and plugin states."""
        trainer = self.trainer
        args, state, control = trainer.args, trainer.state, trainer.control
        if (path / fsdp.SHARDED).is_dir():  # resharded to this run's processes
            fsdp.load_sharded(trainer.model, trainer.optimizer, path / fsdp.SHARDED)
        else:
            if fsdp.is_sharded(trainer.model):
                raise CheckpointError(
                    f"{path} was written without FSDP (model.safetensors), and this run shards "
                    "the model: resume it without fsdp, or load its weights into the model "
                    "before train() and start a new run.")
            ckpt.load_weights(trainer.model, path)
            trainer.optimizer.load_state_dict(ckpt.load_torch(path / ckpt.OPTIMIZER,
                                                              trainer.device))
        trainer.lr_scheduler.load_state_dict(ckpt.load_torch(path / ckpt.SCHEDULER))
        try:
            saved = TrainerState.load_from_json(path / ckpt.TRAINER_STATE)
        except AttributeError:  # not a JSON object
            _fail(path / ckpt.TRAINER_STATE, "the file", "is not a JSON object")
        except (OSError, ValueError, TypeError) as exc:
            raise CheckpointError(f"Cannot read {path / ckpt.TRAINER_STATE}: {exc}") from exc
        _check_progress(saved, path / ckpt.TRAINER_STATE)
        for name in _PROGRESS_FIELDS:
            setattr(state, name, getattr(saved, name))
        if state.best_model_checkpoint and not Path(state.best_model_checkpoint).is_dir():
            state.best_model_checkpoint = None
        loop = ckpt.load_json(path / ckpt.LOOP_STATE)
        _check_loop_state(loop, path / ckpt.LOOP_STATE)
        progress.restore(loop, trainer.lr_scheduler.get_last_lr()[0])
        # the run's time so far, plugin by plugin: a resumed run continues the totals
        trainer.callback_handler.timings.restore(saved.stateful_callbacks.get(timings.STATE_KEY))
        if args.restore_callback_states_from_checkpoint:
            plugin_state.restore(trainer.plugin_manager.records(), saved.stateful_callbacks,
                                 control)
            # A stop that came from reaching the old max_steps does not stop a longer run; a
            # stop a plugin asked for (early stopping) does.
            if saved.global_step >= saved.max_steps:
                control.should_training_stop = False
        rng_path = path / ckpt.rng_file(args.process_index)
        if rng_path.is_file():
            ckpt.restore_rng_state(ckpt.load_torch(rng_path))
        else:
            logger.warning("%s has no %s; RNG states are not restored.", path, rng_path.name)
        logger.info("Resumed from %s at step %d.", path, state.global_step)

    # ---- the best model ------------------------------------------------------------------

    def update_best_metric(self, metrics: dict[str, Any]) -> bool:
        """HF's ``_determine_best_metric``: update ``state.best_metric``; True if improved."""
        args, state = self.trainer.args, self.trainer.state
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

    def load_best_model(self) -> None:
        """``load_best_model_at_end``: the best checkpoint's weights into the model, if intact."""
        trainer = self.trainer
        best = trainer.state.best_model_checkpoint
        if not trainer.args.load_best_model_at_end or not best:
            return
        path = Path(best)
        if ckpt.incomplete_reason(path) is not None:
            logger.warning("Best checkpoint %s is gone or incomplete; keeping the last weights.",
                           path)
            return
        logger.info("Loading best model from %s (score: %s).", path, trainer.state.best_metric)
        if (path / fsdp.SHARDED).is_dir():
            fsdp.load_sharded(trainer.model, None, path / fsdp.SHARDED)
        else:
            ckpt.load_weights(trainer.model, path)


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
