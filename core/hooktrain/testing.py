"""The plugin author's test kit: a tiny model and data set, ``run_training`` and ``HookRecorder``.

Use it from plain code, or through its pytest fixtures (``run_training``, ``hook_recorder``,
``no_network``), which pytest provides on its own wherever hooktrain is installed (the
``hooktrain`` entry point in the ``pytest11`` group loads :mod:`hooktrain.pytest_plugin`; no
``conftest.py`` line is needed, and ``pytest -p no:hooktrain`` turns them off)::

    # test_my_plugin.py
    def test_logs_reach_my_plugin(run_training):
        run = run_training(plugins=[MyPlugin()], logging_steps=2)
        assert run.recorder.events.count("on_log") == ...

``run_training`` trains :class:`TinyRegressor` for a few steps in a fresh output directory with
a :class:`HookRecorder` registered last among the user plugins, and returns the trainer, the
train output and the recorder; ``run.plugin(MyPlugin)`` (or ``run.plugin("MyPlugin")`` for a
plugin switched on by ``report_to``) finds a plugin among the trainer's.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from hooktrain.args import TrainingArguments
from hooktrain.events import EVENT_NAMES, EXTRA_ARGS, forwarding_function
from hooktrain.markers import hookimpl
from hooktrain.outputs import TrainOutput
from hooktrain.trainer import Trainer
from hooktrain.trainer_callback import TrainerCallback


class TinyRegressor(nn.Module):
    """A two-layer MLP for regression that returns ``{"loss", "logits"}`` as HF models do."""

    def __init__(self, in_features: int = 4, hidden: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1)
        )

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, Any]:
        logits = self.net(x).squeeze(-1)
        if labels is None:
            return {"logits": logits}
        return {"loss": nn.functional.mse_loss(logits, labels), "logits": logits}


class RegressionDataset(torch.utils.data.Dataset):
    """``n`` samples ``{"x": ..., "labels": ...}`` of a fixed linear function plus noise."""

    def __init__(self, n: int = 16, in_features: int = 4, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, in_features, generator=generator)
        weights = torch.linspace(-1.0, 1.0, in_features)
        self.y = self.x @ weights + 0.1 * torch.randn(n, generator=generator)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[index], "labels": self.y[index]}


def tiny_args(output_dir: str | Path, **overrides: Any) -> TrainingArguments:
    """Arguments for a quick, quiet run; any field can be overridden."""
    values: dict[str, Any] = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 4,
        "num_train_epochs": 2,
        "learning_rate": 1e-2,
        "logging_steps": 2,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
    }
    values.update(overrides)
    return TrainingArguments(**values)


def control_flags(control: Any) -> str:
    """``"LEST"``-style summary: Log, Evaluate, Save, sTop (``"-"`` when none is set)."""
    flags = (control.should_log, control.should_evaluate, control.should_save,
             control.should_training_stop)
    return "".join(letter for letter, on in zip("LEST", flags) if on) or "-"


@dataclass
class HookCall:
    """One recorded hook call."""

    event: str
    global_step: int
    epoch: float
    flags: str
    payload: dict[str, Any] = field(default_factory=dict)


class FailAtStep(TrainerCallback):
    """Raises ``error(message)`` at the end of optimizer step ``step``: a training that crashes.

    For tests of what a plugin leaves behind when training fails (a run marked failed, the
    history up to the failure, ``on_exception`` handled).
    """

    def __init__(
        self, step: int, error: type[BaseException] = RuntimeError, message: str = "boom"
    ) -> None:
        self.step, self.error, self.message = step, error, message

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            raise self.error(self.message)


class HookRecorder:
    """A pluggy-style plugin that records every hook call, built from the hook specs.

    Hooks added to :mod:`hooktrain.hookspecs` are recorded without changing this class.
    ``payload`` holds each call's own arguments (``logs``, ``metrics``, ``loss``, ...); dicts are
    copied.
    """

    def __init__(self) -> None:
        self.calls: list[HookCall] = []
        for event in EVENT_NAMES:
            setattr(self, event, hookimpl(self._recording_impl(event)))

    def _recording_impl(self, event: str) -> Any:
        extras = EXTRA_ARGS[event]

        def record(state: Any, control: Any, *values: Any) -> None:
            payload = {
                name: dict(value) if isinstance(value, dict) else value
                for name, value in zip(extras, values)
            }
            self.calls.append(HookCall(event, state.global_step, state.epoch,
                                       control_flags(control), payload))

        return forwarding_function(event, ("state", "control") + extras, record)

    @property
    def events(self) -> list[str]:
        return [call.event for call in self.calls]

    def of(self, event: str) -> list[HookCall]:
        return [call for call in self.calls if call.event == event]

    def clear(self) -> None:
        self.calls.clear()


def find_plugin(trainer: Trainer, kind: type | str) -> Any:
    """The one plugin of class ``kind`` among ``trainer.callbacks``.

    ``kind`` is a class (matched with ``isinstance``) or a class name (matched with the plugin's
    own ``type(plugin).__name__``), for a plugin loaded through its entry point whose class the
    test does not import. The same object registered twice counts once. Raises
    :class:`LookupError` naming ``kind`` and the classes present when there is none or several.
    """
    if isinstance(kind, str):
        wanted, matches = kind, lambda plugin: type(plugin).__name__ == kind
    elif isinstance(kind, type):
        wanted, matches = kind.__name__, lambda plugin: isinstance(plugin, kind)
    else:
        raise TypeError(f"find_plugin wants a class or a class name, not {kind!r}")
    plugins = list(trainer.callbacks)
    found: list[Any] = []
    for plugin in plugins:
        if matches(plugin) and not any(plugin is seen for seen in found):
            found.append(plugin)
    if len(found) == 1:
        return found[0]
    present = ", ".join(type(plugin).__name__ for plugin in plugins) or "none"
    raise LookupError(f"expected one {wanted} plugin, found {len(found) or 'none'} among the "
                      f"trainer's callbacks: {present}")


@dataclass
class TrainingRun:
    trainer: Trainer
    output: TrainOutput
    recorder: HookRecorder

    def plugin(self, kind: type | str) -> Any:
        """The one plugin of class ``kind`` (a class or a class name); see :func:`find_plugin`."""
        return find_plugin(self.trainer, kind)

    @property
    def faults(self) -> list[Any]:
        """The plugins that failed during the run (``trainer.plugin_faults``)."""
        return self.trainer.plugin_faults


def build_trainer(
    output_dir: str | Path,
    *,
    plugins: list[Any] | tuple[Any, ...] = (),
    model: nn.Module | None = None,
    model_seed: int | None = None,
    train_size: int = 16,
    eval_size: int = 8,
    compute_metrics: Callable[[Any], dict[str, float]] | None = None,
    trainer_class: type[Trainer] | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
    **arg_overrides: Any,
) -> Trainer:
    """A Trainer as :func:`run_training` builds it, not trained yet: for a test that registers
    a plugin first, calls ``evaluate()``, resumes, or subclasses ``Trainer``.

    ``model`` defaults to a :class:`TinyRegressor` (built after ``torch.manual_seed(model_seed)``
    when given: the same weights every time); data: ``RegressionDataset(train_size, seed=0)``
    to train and ``RegressionDataset(eval_size, seed=1)`` to evaluate (none for a size 0);
    arguments: ``tiny_args(output_dir, **arg_overrides)``; ``plugins`` are the callbacks, in
    order. ``compute_metrics`` and ``trainer_kwargs`` go to ``trainer_class`` as they are.
    """
    if model is None:
        if model_seed is not None:
            torch.manual_seed(model_seed)
        model = TinyRegressor()
    kwargs: dict[str, Any] = {
        "train_dataset": RegressionDataset(train_size, seed=0) if train_size else None,
        "eval_dataset": RegressionDataset(eval_size, seed=1) if eval_size else None,
        **(trainer_kwargs or {}),
    }
    return (trainer_class or Trainer)(model=model, args=tiny_args(output_dir, **arg_overrides),
                                      callbacks=list(plugins), compute_metrics=compute_metrics,
                                      **kwargs)


def run_training(
    output_dir: str | Path,
    *,
    plugins: list[Any] = (),  # type: ignore[assignment]
    resume_from_checkpoint: str | bool | None = None,
    **build: Any,
) -> TrainingRun:
    """Train :class:`TinyRegressor` with ``plugins`` and a :class:`HookRecorder` added last;
    every option of :func:`build_trainer` (model, data sizes, any argument) is overridable."""
    recorder = HookRecorder()
    trainer = build_trainer(output_dir, plugins=[*plugins, recorder], **build)
    output = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    return TrainingRun(trainer, output, recorder)


def logged_series(
    log_history: list[dict[str, Any]], name: Any = None
) -> dict[str, list[tuple[int, float]]]:
    """Every numeric value of ``log_history`` as ``{metric: [(step, value), ...]}``.

    What a logging plugin should have written, to compare with what its backend read back.
    ``name`` maps a log key to the backend's metric name; default HF's ``rewrite_key``
    (``eval_loss`` -> ``eval/loss``, ``loss`` -> ``train/loss``).
    """
    from hooktrain.integration import rewrite_key

    rename = name or rewrite_key
    series: dict[str, list[tuple[int, float]]] = {}
    for entry in log_history:
        for key, value in entry.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                series.setdefault(rename(key), []).append((entry["step"], float(value)))
    return series


def run_to_replay(report_to: Any, **overrides: Any) -> Trainer:
    """A finished run for ``hooktrain replay`` tests: :class:`TinyRegressor` (same weights every
    time) trained in the working directory with ``output_dir="run"`` (relative, so runs made in
    two directories have equal arguments), logging every 2 steps, evaluating and saving every
    4, then ``save_state()`` (the whole ``log_history``, train summary included)."""
    values: dict[str, Any] = {"logging_steps": 2, "eval_strategy": "steps", "eval_steps": 4,
                              "save_strategy": "steps", "save_steps": 4, "seed": 0}
    trainer = build_trainer("run", model_seed=0, report_to=report_to, **{**values, **overrides})
    trainer.train()
    trainer.save_state()
    return trainer


def replay_command(*arguments: str) -> int:
    """``hooktrain replay ARGUMENTS`` in this process; returns its exit status."""
    from hooktrain.cli import main

    return main(["replay", *arguments])


TIMING_KEYS = ("runtime", "per_second")  # endings of log values that differ between equal runs


def expected_steps(train_size: int, batch_size: int, epochs: int, accumulation: int = 1) -> int:
    """Optimizer steps a run makes (HF's rule: the last short group still steps)."""
    return math.ceil(math.ceil(train_size / batch_size) / accumulation) * epochs


@contextlib.contextmanager
def environment(
    values: Mapping[str, str] | None = None, unset: Iterable[str] = ()
) -> Iterator[None]:
    """Remove ``unset`` and set ``values`` in ``os.environ`` for the block, then restore both.

    For a plugin's session-scoped conftest fixture that keeps a tracking library offline (the
    function-scoped ``monkeypatch`` cannot serve a session)::

        @pytest.fixture(scope="session", autouse=True)
        def offline_environment():
            with environment({"WANDB_MODE": "offline"}, unset=["WANDB_API_KEY"]):
                yield
    """
    with pytest.MonkeyPatch.context() as patch:
        for name in unset:
            patch.delenv(name, raising=False)
        for name, value in (values or {}).items():
            patch.setenv(name, value)
        yield


# ---- pytest ----------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    """Called when a ``conftest.py`` names this module (``pytest_plugins =
    ["hooktrain.testing"]``, the opt-in before the entry point): the fixtures are there already
    through the ``hooktrain`` entry point, unless it is off (``-p no:hooktrain``), where this
    line is how one directory opts back in. Registered by name: listing
    ``hooktrain.pytest_plugin`` itself in ``pytest_plugins`` while the entry point has loaded
    it is an error in pytest ("already registered under a different name").
    """
    if not config.pluginmanager.has_plugin("hooktrain"):
        config.pluginmanager.import_plugin("hooktrain.pytest_plugin")
