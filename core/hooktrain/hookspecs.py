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

Each docstring ends with ``:param NAME:`` per extra argument, ``:control:`` (what flags set there
do) and ``:hf:`` (transformers' hook, how hooktrain differs); the docs build requires all three.
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

# ---- Initialization hooks ----


@hookspec
def on_init_end(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any,
) -> TrainerControl | None:
    """The end of ``Trainer.__init__``: every plugin is registered and validated.

    ``optimizer`` and ``lr_scheduler`` are what ``optimizers=`` gave (usually ``None``); both
    dataloaders are ``None``.

    :control: none takes effect: ``train()`` clears each flag before it reads it.
    :hf: ``TrainerCallback.on_init_end``, the same arguments.
    """


# ---- Training hooks, in firing order ----


@hookspec
def on_load_checkpoint(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any, checkpoint_dir: Path,
) -> TrainerControl | None:
    """A checkpoint has been restored into the model, optimizer, scheduler, state and plugins.

    Fires once per resumed :meth:`train`, before ``on_train_begin``. Each plugin's own state
    (``ExportableState`` or ``load_state_dict``) is already back when it fires. Use it to
    reattach to a tracking run or re-open files.

    :param checkpoint_dir: the complete checkpoint directory the run continues from.
    :control: none takes effect: ``on_train_begin`` follows and clears ``should_training_stop``.
    :hf: none (hooktrain addition); a ``TrainerCallback`` may take it, with ``checkpoint_dir=``.
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
    Use it to open runs and writers and to log hyperparameters.

    :control: ``should_training_stop``: the run stops after its first micro-batch, as in HF.
    :hf: ``TrainerCallback.on_train_begin``, the same arguments.
    """


@hookspec
def on_epoch_begin(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any,
) -> TrainerControl | None:
    """The start of an epoch; ``control.should_epoch_stop`` is cleared just before.

    On resume, epochs already done fire nothing and the interrupted epoch fires this once.

    :control: ``should_epoch_stop`` / ``should_training_stop``: the epoch / the run ends after
        its first micro-batch.
    :hf: ``TrainerCallback.on_epoch_begin``, the same arguments.
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

    :control: ``should_epoch_stop`` / ``should_training_stop``: the epoch / the run ends after
        this step's first micro-batch; ``should_log`` / ``should_evaluate`` / ``should_save``:
        done after this step's ``on_step_end``.
    :hf: ``TrainerCallback.on_step_begin``, the same arguments.
    """


@hookspec
def on_substep_end(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any,
) -> TrainerControl | None:
    """After a micro-batch's backward pass that is not the last one of its accumulation group.

    Never fires without gradient accumulation.

    :control: ``should_epoch_stop`` / ``should_training_stop``: the epoch / the run ends before
        the group's optimizer step; ``should_log`` / ``should_evaluate`` / ``should_save``: done
        after the group's ``on_step_end``.
    :hf: ``TrainerCallback.on_substep_end``, the same arguments.
    """


@hookspec
def on_pre_optimizer_step(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any,
) -> TrainerControl | None:
    """After gradients are accumulated and clipped (readable on ``model``), before the step.

    :control: a stop flag does not skip the step (as in HF): the epoch / the run ends after its
        ``on_step_end`` and log, evaluate, save; the other flags are done then too.
    :hf: ``TrainerCallback.on_pre_optimizer_step``, the same arguments.
    """


@hookspec
def on_optimizer_step(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any,
) -> TrainerControl | None:
    """After ``optimizer.step()``, before the scheduler steps and gradients are zeroed.

    :control: as for ``on_pre_optimizer_step``: everything happens after ``on_step_end``.
    :hf: ``TrainerCallback.on_optimizer_step``, the same arguments.
    """


@hookspec
def on_step_end(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any, loss: torch.Tensor,
) -> TrainerControl | None:
    """After an optimizer step: scheduler stepped, gradients zeroed, ``global_step`` counted.

    ``DefaultFlowCallback`` sets ``should_log`` / ``should_evaluate`` / ``should_save`` /
    ``should_training_stop`` here; plugins after it see and may change them.

    :param loss: the step's mean loss over its micro-batches, a detached tensor on the training
        device. Reading it (``loss.item()``) synchronises with the device: do it only on the
        steps you need it.
    :control: ``should_log`` / ``should_evaluate`` / ``should_save``: the loop logs, evaluates
        and saves right after, in that order; ``should_epoch_stop`` / ``should_training_stop``:
        the epoch / the run ends after that.
    :hf: ``TrainerCallback.on_step_end``; ``loss`` is a hooktrain addition (HF #12108) that
        pluggy-style plugins take, a ``TrainerCallback`` gets HF's arguments.
    """


@hookspec
def on_epoch_end(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any,
) -> TrainerControl | None:
    """The end of an epoch (also when the run stops inside it); log, evaluate and save follow.

    :control: ``should_log`` / ``should_evaluate`` / ``should_save``: done right after, in that
        order; ``should_training_stop``: no further epoch starts.
    :hf: ``TrainerCallback.on_epoch_end``, the same arguments.
    """


# ---- Logging, evaluation and checkpoint hooks ----


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
    :control: flags set on ``control`` act as in ``on_log``; the return value is no control.
    :hf: none, a hooktrain addition for measurements every logger should record (energy,
        emissions, throughput); a ``TrainerCallback`` may implement it (called with ``logs=``).
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
    :control: during training, ``should_evaluate`` / ``should_save``: done right after this log;
        ``should_epoch_stop`` / ``should_training_stop``: the epoch / the run ends after that.
    :hf: ``TrainerCallback.on_log``; HF shares one ``logs`` dict, hooktrain copies it per plugin.
    """


@hookspec
def on_prediction_step(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any,
) -> TrainerControl | None:
    """After each batch of :meth:`evaluate` or :meth:`predict`.

    :control: none stops the evaluation; during training, flags act as if set in ``on_evaluate``.
    :hf: ``TrainerCallback.on_prediction_step``, the same arguments.
    """


@hookspec
def on_evaluate(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any, metrics: dict[str, Any],
) -> TrainerControl | None:
    """After an evaluation, once per evaluation data set, after its ``on_log``.

    ``should_evaluate`` is cleared just before this fires. ``state.best_metric`` still holds the
    best value before this evaluation.

    :param metrics: this plugin's own copy of the metrics, prefixed (``eval_loss``, ...), with
        ``epoch``.
    :control: ``should_save``: the loop saves right after (unless ``save_strategy="best"``
        decides); ``should_epoch_stop`` / ``should_training_stop``: the epoch / the run ends after
        that (``EarlyStoppingCallback`` stops the run here).
    :hf: ``TrainerCallback.on_evaluate``; HF shares one ``metrics`` dict, hooktrain copies it.
    """


@hookspec
def on_predict(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any, metrics: dict[str, Any],
) -> TrainerControl | None:
    """After a successful :meth:`predict`; ``predict`` does not log, so no ``on_log`` fires.

    :param metrics: this plugin's own copy of the ``test_*`` metrics.
    :control: none takes effect: ``predict()`` runs outside the training loop.
    :hf: ``TrainerCallback.on_predict``; each plugin gets its own copy of ``metrics``.
    """


@hookspec
def on_save(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any, checkpoint_dir: Path,
) -> TrainerControl | None:
    """After a checkpoint was completely written and renamed into place (``should_save`` cleared).

    :param checkpoint_dir: the finished ``output_dir/checkpoint-<global_step>`` directory; every
        file in it is complete, so uploaders may copy it.
    :control: ``should_epoch_stop`` / ``should_training_stop``: the epoch / the run ends next.
    :hf: ``TrainerCallback.on_save``; ``checkpoint_dir`` is a hooktrain addition that
        pluggy-style plugins take, a ``TrainerCallback`` gets HF's arguments.
    """


@hookspec
def on_train_end(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any,
) -> TrainerControl | None:
    """The end of :meth:`train`, after the summary log (and loading the best model).

    Use it to finish runs and to flush and close writers.

    :control: none takes effect: training is over.
    :hf: ``TrainerCallback.on_train_end``, the same arguments.
    """


@hookspec
def on_exception(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any, exception: BaseException,
) -> TrainerControl | None:
    """``train``, ``evaluate`` or ``predict`` raised; the exception propagates after this.

    Every plugin is called even when one of them fails here; such failures are logged and never
    hide ``exception``. Also fires for ``KeyboardInterrupt``. Use it to mark the tracking run as
    failed and close it.

    :param exception: what was raised.
    :control: none takes effect: the exception propagates.
    :hf: none (hooktrain addition); a ``TrainerCallback`` may implement it, with ``exception=``.
    """


# ---- Accepted for compatibility, never fired ----


@hookspec
def on_push_begin(
    args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any,
    processing_class: Any, optimizer: Any, lr_scheduler: Any, train_dataloader: Any,
    eval_dataloader: Any,
) -> TrainerControl | None:
    """HF 5.x fires this before pushing to the Hub; hooktrain has no Hub push and never fires it.

    :control: none (never fired).
    :hf: ``TrainerCallback.on_push_begin`` (transformers 5.x), declared so that HF callbacks
        implementing it register without a hook-name error.
    """
