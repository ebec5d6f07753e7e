"""``TrackerPlugin``: the run lifecycle every experiment-tracker plugin shares.

A tracker plugin logs one training run to one run of its library (an MLflow run, a W&B run, a
ClearML task...). What differs between libraries is how a run is opened, how values are written
and how a run is closed; what is the same is written once here:

* the run is opened at ``on_train_begin``, or at the first ``on_log`` when ``evaluate()`` runs
  before (or after) ``train()``;
* its id is saved in the checkpoint (``state_dict``) and a resumed training reopens that run;
* ``train()`` ending finishes it as a success, an exception as a failure;
* a hook of the plugin that raises closes the run as failed before hooktrain switches the
  plugin off, so no run stays open to be closed as "finished" by the library's exit handler.

A subclass implements :meth:`open_run`, :meth:`log_metrics` and :meth:`finish_run`, and
optionally :meth:`before_finish` (final artifacts) and :meth:`detach_run`. It adds hooks of its
own (``on_save`` for checkpoint artifacts...) with ``@hookimpl`` and ``with self.failing():``.
A subclass that overrides one of the four hooks below marks its override with ``@hookimpl``
again (hooktrain refuses an unmarked ``on_*`` method). Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

from hooktrain.integration import NumericFilter
from hooktrain.markers import hookimpl
from hooktrain.plugin_host.settings import from_environment, validate


class TrackerPlugin:
    """Base class of a plugin that logs each ``train()`` to one run of a tracking library."""

    #: The plugin's entry-point name: settings table ``[plugins.<name>]`` and messages use it.
    plugin_name: ClassVar[str] = "tracker"
    #: The settings dataclass (``None``: no settings).
    settings: ClassVar[type | None] = None
    #: The key of the run's id in the checkpoint's plugin state.
    run_id_key: ClassVar[str] = "run_id"

    def __init__(self, settings: Any = None) -> None:
        declared = type(self).settings
        if settings is not None:
            self.config = validate(self.plugin_name, settings)
        elif declared is not None:
            self.config = from_environment(self.plugin_name, declared)
        else:
            self.config = None
        #: The open run (the library's object), or ``None``.
        self.run: Any = None
        #: The id of this plugin's latest run, open or finished.
        self.run_id: str | None = None
        #: The id saved in the checkpoint being resumed, reopened by the next ``train()``.
        self.resume_id: str | None = None
        #: ``False`` while the open run is the user's own (e.g. opened before ``train()``):
        #: the plugin logs into it but leaves closing it to the user (:meth:`detach_run`).
        self.owns_run = True
        #: ``True`` once :meth:`open_run` said there is nothing to log to.
        self.inactive = False
        #: ``True`` while :meth:`finish_run` closes a run because one of this plugin's own hooks
        #: raised (``failing()``), not because training failed.
        self.own_fault = False
        #: ``True`` for a run reopened by ``evaluate()`` after ``train()`` ended it: the next
        #: ``train()`` finishes it and opens a new run.
        self._reopened_after_train = False
        #: ``True`` from a checkpoint's restore until the next :meth:`open_run`, even when the
        #: checkpoint holds no run id (a tracker whose new run would erase an old one cares).
        self.resuming = False
        self.numeric = NumericFilter(self.plugin_name)

    # ---- what a tracker plugin implements ----------------------------------------------------

    def open_run(self, args: Any, state: Any, model: Any, run_id: str | None) -> Any:
        """Start a run, or reopen ``run_id`` (from the checkpoint, or this plugin's previous
        run when ``evaluate()`` logs after ``train()``). Return the run, or ``None`` when there
        is nothing to log to (the plugin then stays quiet). Set :attr:`owns_run` to ``False``
        when adopting a run the user opened."""
        raise NotImplementedError(f"{type(self).__name__} must implement open_run")

    def run_id_of(self, run: Any) -> str | None:
        """The id saved in checkpoints: ``run.id`` unless overridden."""
        return getattr(run, "id", None)

    def log_metrics(self, run: Any, metrics: dict[str, float], state: Any) -> None:
        """Write one ``on_log``'s numeric values (HF's keys: ``loss``, ``eval_loss``) at
        ``state.global_step``."""
        raise NotImplementedError(f"{type(self).__name__} must implement log_metrics")

    def before_finish(self, run: Any, args: Any, state: Any, model: Any) -> None:
        """At the end of a successful ``train()``, before the run is finished: final artifacts."""

    def finish_run(self, run: Any, failure: BaseException | None) -> None:
        """Close a run this plugin owns: as a success when ``failure`` is ``None``, else failed
        (``KeyboardInterrupt``: interrupted, where the library tells the two apart;
        :attr:`own_fault`: this plugin's own hook failed while training goes on)."""

    def detach_run(self, run: Any) -> None:
        """Let go of a run the user owns (:attr:`owns_run` false) without closing it."""

    # ---- the lifecycle -------------------------------------------------------------------------

    def ensure_run(self, args: Any, state: Any, model: Any, *, new: bool = False) -> Any:
        """The open run, opened first when there is none. ``new`` (at ``train()``'s start)
        reopens only the checkpoint's run; otherwise also this plugin's previous run."""
        if new and self.run is not None and self._reopened_after_train:
            self.end_run()  # evaluate() logged into the last train()'s run; this is a new one
        if self.run is not None or self.inactive:
            if new:  # train() goes on in the run evaluate() opened: no run is left to reopen
                self.resume_id, self.resuming = None, False
            return self.run
        run_id = self.resume_id if new else (self.resume_id or self.run_id)
        self._reopened_after_train = not new and run_id is not None and run_id == self.run_id
        self.owns_run = True
        run = self.open_run(args, state, model, run_id)
        self.resume_id, self.resuming = None, False
        if run is None:
            self.inactive = True
            return None
        self.run, self.run_id = run, self.run_id_of(run)
        return run

    def end_run(self, failure: BaseException | None = None) -> None:
        """Finish (or, for the user's run, detach from) the open run; nothing when none is."""
        run, self.run = self.run, None
        if run is None:
            return
        if self.owns_run:
            self.finish_run(run, failure)
        else:
            self.detach_run(run)

    @contextlib.contextmanager
    def failing(self) -> Iterator[None]:
        """Around a hook's work: when it raises, the run is closed as failed first (hooktrain
        then reports the error and switches the plugin off; training goes on)."""
        try:
            yield
        except BaseException as exc:
            self.own_fault = True
            try:
                with contextlib.suppress(Exception):
                    self.end_run(failure=exc)
            finally:
                self.own_fault = False
            raise

    # ---- hooks -------------------------------------------------------------------------------

    @hookimpl
    def on_train_begin(self, args: Any, state: Any, model: Any) -> None:
        with self.failing():
            self.ensure_run(args, state, model, new=True)

    @hookimpl
    def on_log(self, args: Any, state: Any, model: Any, logs: dict[str, Any]) -> None:
        with self.failing():
            run = self.ensure_run(args, state, model)
            values = self.numeric(logs)
            if run is not None and values:
                self.log_metrics(run, values, state)

    @hookimpl
    def on_train_end(self, args: Any, state: Any, model: Any) -> None:
        with self.failing():
            if self.run is not None:
                self.before_finish(self.run, args, state, model)
        self.end_run()

    @hookimpl
    def on_exception(self, exception: BaseException) -> None:
        self.end_run(failure=exception)

    @hookimpl
    def on_load_checkpoint(self) -> None:
        self.resuming = True

    # ---- checkpoint state ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {self.run_id_key: self.run_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.resume_id = state.get(self.run_id_key)
