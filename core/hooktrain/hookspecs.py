"""Every lifecycle event of a hooktrain run, as a pluggy hook specification.

Where each event fires (``GA`` = ``gradient_accumulation_steps``)::

    Trainer(...)                                   on_init_end
    train()
      [resume]   restore checkpoint                on_load_checkpoint(checkpoint_dir)
                                                   on_train_begin
      [eval_on_start]  evaluate()                  on_prediction_step*  on_log  on_evaluate
      for epoch:                                   on_epoch_begin
        for each group of GA micro-batches:        on_step_begin
          for each micro-batch: forward+backward
            not the last of its group:             on_substep_end
          clip gradients                           on_pre_optimizer_step
          optimizer.step()                         on_optimizer_step
          scheduler.step(); zero_grad; step += 1   on_step_end(loss)
          if should_log:        log()              on_pre_log(logs)  on_log(logs)
          if should_evaluate:   evaluate()         on_prediction_step*  on_log  on_evaluate(metrics)
          if should_save:       save checkpoint    on_save(checkpoint_dir)
          stop if should_epoch_stop / should_training_stop
                                                   on_epoch_end
        log -> evaluate -> save again, as after on_step_end
      log the train summary                        on_log(logs)
                                                   on_train_end
    evaluate()                                     on_prediction_step*  on_log  on_evaluate(metrics)
    predict()                                      on_prediction_step*  on_predict(metrics)
    train/evaluate/predict raise                   on_exception(exception), then it propagates

The order matches the Hugging Face Trainer event for event (``docs/events.md``).

Every hook may take any of the common arguments below, by name; a hookimpl names only the ones it
uses (``def on_log(self, state, logs)``):

``args``             the run's :class:`~hooktrain.TrainingArguments`.
``state``            the live :class:`~hooktrain.TrainerState` (read it, do not replace it).
``control``          the :class:`~hooktrain.TrainerControl` whose flags the loop reads next.
``model``            the unwrapped model being trained.
``processing_class`` what was passed as ``processing_class`` (a tokenizer, ...), or ``None``.
``optimizer``        the optimizer (``None`` before :meth:`train` unless passed in ``optimizers``).
``lr_scheduler``     the learning-rate scheduler, same rule.
``train_dataloader`` the training ``DataLoader``; ``None`` before :meth:`train`.
``eval_dataloader``  the last evaluation or prediction ``DataLoader`` (sticky, as in HF); ``None``
                     before the first evaluation.

Returning a :class:`~hooktrain.TrainerControl` from any hook replaces the control that the
plugins after it, and the loop, see (HF's chain); returning ``None`` keeps it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hooktrain.markers import hookspec

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from hooktrain.args import TrainingArguments
    from hooktrain.trainer_state import TrainerControl, TrainerState

# pluggy reads a hook's argument names from its spec's signature, so every spec spells out the
# common arguments; ``hooktrain.events`` checks that they agree.

# --------------------------------------------------------------------------------------------
# Initialization hooks
# --------------------------------------------------------------------------------------------


@hookspec
def on_init_end(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any,
) -> TrainerControl | None:
    """The end of ``Trainer.__init__``: every plugin is registered and validated.

    ``optimizer`` and ``lr_scheduler`` are what ``optimizers=`` gave (usually ``None``); both
    dataloaders are ``None``.

    Use in plugins: runs on every rank for user callbacks, on world rank zero for entry-point
    plugins. HF equivalent: ``TrainerCallback.on_init_end``.
    """


# --------------------------------------------------------------------------------------------
# Training hooks, in firing order
# --------------------------------------------------------------------------------------------


@hookspec
def on_load_checkpoint(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any, checkpoint_dir: Path,
) -> TrainerControl | None:
    """A checkpoint has been restored into the model, optimizer, scheduler, state and plugins.

    Fires once per resumed :meth:`train`, before ``on_train_begin``. Each plugin's own state
    (``ExportableState`` or ``load_state_dict``) is already back when it fires.

    :param checkpoint_dir: the complete checkpoint directory the run continues from.

    Use in plugins: reattach to a tracking run, re-open files. hooktrain addition (HF has none).
    """


@hookspec
def on_train_begin(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any,
) -> TrainerControl | None:
    """The start of :meth:`Trainer.train`, after the optimizer and dataloader exist.

    ``control.should_training_stop`` is cleared just before this fires. ``state.max_steps`` and
    ``state.num_train_epochs`` are set; on resume ``state.global_step`` is the checkpoint's.

    Use in plugins: open runs and writers, log hyperparameters. HF equivalent: same name.
    """


@hookspec
def on_epoch_begin(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any,
) -> TrainerControl | None:
    """The start of an epoch; ``control.should_epoch_stop`` is cleared just before.

    On resume, epochs already done fire nothing and the interrupted epoch fires this once.
    """


@hookspec
def on_step_begin(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any,
) -> TrainerControl | None:
    """The start of an optimizer step, before its first micro-batch.

    ``should_log``, ``should_evaluate`` and ``should_save`` are cleared just before this fires.
    One optimizer step spans ``gradient_accumulation_steps`` micro-batches (fewer for the last
    group of an epoch).
    """


@hookspec
def on_substep_end(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any,
) -> TrainerControl | None:
    """After a micro-batch's backward pass that is not the last one of its accumulation group.

    Never fires without gradient accumulation. Stop flags set here end the epoch or the run
    before the group's optimizer step.
    """


@hookspec
def on_pre_optimizer_step(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any,
) -> TrainerControl | None:
    """After gradients are accumulated and clipped, before ``optimizer.step()``.

    Gradients are readable on ``model`` here. A stop request does not skip the step (as in HF).
    """


@hookspec
def on_optimizer_step(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any,
) -> TrainerControl | None:
    """After ``optimizer.step()``, before the scheduler steps and gradients are zeroed."""


@hookspec
def on_step_end(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any, loss: torch.Tensor,
) -> TrainerControl | None:
    """After an optimizer step: scheduler stepped, gradients zeroed, ``global_step`` counted.

    ``DefaultFlowCallback`` sets ``should_log`` / ``should_evaluate`` / ``should_save`` /
    ``should_training_stop`` here; plugins after it see and may change them. The loop then logs,
    evaluates and saves, in that order.

    :param loss: the step's mean loss over its micro-batches, a detached tensor on the training
        device. Reading it (``loss.item()``) synchronises with the device: do it only on the
        steps you need it. hooktrain addition (HF #12108).
    """


@hookspec
def on_epoch_end(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any,
) -> TrainerControl | None:
    """The end of an epoch (also when the run stops inside it); log, evaluate and save follow."""


# --------------------------------------------------------------------------------------------
# Logging, evaluation and checkpoint hooks
# --------------------------------------------------------------------------------------------


@hookspec
def on_pre_log(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any, logs: dict[str, Any],
) -> dict[str, float] | None:
    """Before :meth:`Trainer.log` records an entry: a plugin may add values to it.

    Fires right before every ``on_log``, with the flags as they are before ``on_log`` clears
    ``should_log``. The dicts the implementations return are merged into the entry, so
    ``state.log_history``, every ``on_log`` and what ``train()`` / ``evaluate()`` return all see
    them; a returned key that is already in the log is ignored with a warning. A non-blocking
    plugin cannot add values (its return arrives too late).

    :param logs: this plugin's own copy of what is about to be logged (with ``epoch``).
    :returns: values to add (``{"emissions_kg": 0.002}``), or ``None``.

    Use in plugins: measurements other plugins should record (energy, emissions, throughput).
    hooktrain addition.
    """


@hookspec
def on_log(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any, logs: dict[str, Any],
) -> TrainerControl | None:
    """After :meth:`Trainer.log` appended an entry to ``state.log_history``.

    ``should_log`` is cleared just before this fires.

    :param logs: this plugin's own plain ``dict`` copy of what was logged, always with ``epoch``.
        Training logs hold ``loss``, ``grad_norm``, ``learning_rate``; evaluation logs the
        ``eval_*`` metrics; the final log ``train_runtime``, ``train_samples_per_second``,
        ``train_steps_per_second``, ``total_flos`` and ``train_loss``. Editing it changes
        nothing outside this plugin.
    """


@hookspec
def on_prediction_step(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any,
) -> TrainerControl | None:
    """After each batch of :meth:`evaluate` or :meth:`predict`; its return cannot stop them."""


@hookspec
def on_evaluate(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any, metrics: dict[str, Any],
) -> TrainerControl | None:
    """After an evaluation, once per evaluation data set, after its ``on_log``.

    ``should_evaluate`` is cleared just before this fires; setting ``should_save`` makes the loop
    save right after (unless ``save_strategy="best"`` decides). ``state.best_metric`` still holds
    the best value before this evaluation.

    :param metrics: this plugin's own copy of the metrics, prefixed (``eval_loss``, ...), with
        ``epoch``.
    """


@hookspec
def on_predict(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any, metrics: dict[str, Any],
) -> TrainerControl | None:
    """After a successful :meth:`predict`; ``predict`` does not log, so no ``on_log`` fires.

    :param metrics: this plugin's own copy of the ``test_*`` metrics.
    """


@hookspec
def on_save(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any, checkpoint_dir: Path,
) -> TrainerControl | None:
    """After a checkpoint was completely written and renamed into place.

    ``should_save`` is cleared just before this fires.

    :param checkpoint_dir: the finished ``output_dir/checkpoint-<global_step>`` directory; every
        file in it is complete, so uploaders may copy it. hooktrain addition.
    """


@hookspec
def on_train_end(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any,
) -> TrainerControl | None:
    """The end of :meth:`train`, after the summary log (and loading the best model).

    Use in plugins: finish runs, flush and close writers.
    """


@hookspec
def on_exception(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any, exception: BaseException,
) -> TrainerControl | None:
    """``train``, ``evaluate`` or ``predict`` raised; the exception propagates after this.

    Every plugin is called even when one of them fails here; such failures are logged and never
    hide ``exception``. Also fires for ``KeyboardInterrupt``.

    :param exception: what was raised.

    Use in plugins: mark the tracking run as failed and close it. hooktrain addition.
    """


# --------------------------------------------------------------------------------------------
# Accepted for compatibility, never fired
# --------------------------------------------------------------------------------------------


@hookspec
def on_push_begin(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any,
) -> TrainerControl | None:
    """HF 5.x fires this before pushing to the Hub; hooktrain has no Hub push and never fires it.

    It is declared so that HF callbacks implementing it register without a hook-name error.
    """
