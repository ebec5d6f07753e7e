"""One small test per ordering rule of docs/architecture.md, "Order" (pluggy
``test_hookcaller.py`` style).

Every test builds a Trainer, registers spies in a chosen sequence, fires ``on_train_begin`` by
training one step, and asserts the exact list of spies called. The bands, first to last:
``DefaultFlowCallback`` | user callbacks (constructor, then ``add_callback``) | entry-point plugins
| ``ProgressCallback`` / ``PrinterCallback``; ``tryfirst`` / ``trylast`` move an impl inside its
band only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from trainers import make_trainer

from hooktrain import (
    DefaultFlowCallback,
    PrinterCallback,
    ProgressCallback,
    Trainer,
    TrainerCallback,
    TrainerControl,
    hookimpl,
)
from hooktrain.plugin_host import Band

# ---- spies -------------------------------------------------------------------------------


class HFSpy(TrainerCallback):
    """An HF-style callback that appends its name to ``calls`` at ``on_train_begin``."""

    def __init__(self, name: str, calls: list[str]) -> None:
        self.name = name
        self.calls = calls

    def on_train_begin(self, args, state, control, **kwargs):
        self.calls.append(self.name)


class FlowSpy(DefaultFlowCallback):
    """The real DefaultFlowCallback (same flags), plus a record of when it is called."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def on_train_begin(self, args, state, control, **kwargs):
        self.calls.append("flow")


class PrinterSpy(PrinterCallback):
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def on_train_begin(self, args, state, control, **kwargs):
        self.calls.append("printer")


class ProgressSpy(ProgressCallback):
    def __init__(self, calls: list[str]) -> None:
        super().__init__()
        self.calls = calls

    def on_train_begin(self, args, state, control, **kwargs):
        self.calls.append("progress")


class Spy:
    """A pluggy-style plugin that appends its name to ``calls`` at ``on_train_begin``."""

    def __init__(self, name: str, calls: list[str]) -> None:
        self.name = name
        self.calls = calls

    @hookimpl
    def on_train_begin(self) -> None:
        self.calls.append(self.name)


class FirstSpy(Spy):
    @hookimpl(tryfirst=True)
    def on_train_begin(self) -> None:
        self.calls.append(self.name)


class LastSpy(Spy):
    @hookimpl(trylast=True)
    def on_train_begin(self) -> None:
        self.calls.append(self.name)


def short_trainer(output_dir: Path, plugins: tuple[Any, ...] | list[Any] = (),
                  **overrides: Any) -> Trainer:
    """``make_trainer`` on 8 samples, one step unless ``max_steps`` says more (``train()`` fires
    ``on_train_begin`` once), with ``plugins``."""
    return make_trainer(output_dir, plugins=plugins, train_size=8, eval_size=0,
                        **{"max_steps": 1, "logging_steps": 10, **overrides})


def with_spies(trainer: Trainer, calls: list[str], *, flow: bool = True, reporter: bool = True):
    """Swap the built-in flow / printer for spies of the same classes, added *last*."""
    if flow:
        trainer.pop_callback(DefaultFlowCallback)
    if reporter:
        trainer.pop_callback(PrinterCallback)
        trainer.pop_callback(ProgressCallback)
    if flow:
        trainer.add_callback(FlowSpy(calls))
    if reporter:
        trainer.add_callback(PrinterSpy(calls))
    return trainer


def register_entry_point(trainer: Trainer, plugin: object, name: str) -> None:
    trainer.plugin_manager.register_plugin(plugin, band=Band.ENTRY_POINT, name=name, isolated=True)


# ---- rule 1: DefaultFlowCallback first ---------------------------------------------------


def test_default_flow_first_whatever_the_registration_order(tmp_path):
    calls: list[str] = []
    trainer = short_trainer(tmp_path, [HFSpy("a", calls), Spy("b", calls)])
    trainer.pop_callback(DefaultFlowCallback)
    trainer.add_callback(HFSpy("c", calls))
    trainer.add_callback(FlowSpy(calls))  # registered last of all
    trainer.train()

    assert calls == ["flow", "a", "b", "c"]
    assert isinstance(trainer.callbacks[0], DefaultFlowCallback)


def test_flow_subclass_passed_as_a_user_callback_runs_in_the_flow_band(tmp_path):
    # Two flow callbacks share the first band in registration order; both precede users.
    calls: list[str] = []
    trainer = short_trainer(tmp_path, [HFSpy("user", calls), FlowSpy(calls)])
    trainer.train()

    assert calls == ["flow", "user"]
    assert [type(p) for p in trainer.callbacks[:2]] == [DefaultFlowCallback, FlowSpy]


# ---- rule 2: user callbacks in the order given -------------------------------------------


def test_user_callbacks_in_constructor_order_then_add_callback_order(tmp_path):
    calls: list[str] = []

    class ByClass(TrainerCallback):  # add_callback(cls) instantiates it with no arguments
        def on_train_begin(self, args, state, control, **kwargs):
            calls.append("by_class")

    trainer = short_trainer(tmp_path, [Spy("a", calls), HFSpy("b", calls), Spy("c", calls)])
    trainer.add_callback(HFSpy("d", calls))
    trainer.add_callback(ByClass)
    trainer.add_callback(Spy("e", calls))
    trainer.train()

    assert calls == ["a", "b", "c", "d", "by_class", "e"]


def test_removed_and_re_added_callback_goes_to_the_end_of_its_band(tmp_path):
    calls: list[str] = []
    a = HFSpy("a", calls)
    trainer = short_trainer(tmp_path, [a, HFSpy("b", calls)])
    trainer.remove_callback(a)
    trainer.add_callback(a)
    trainer.train()

    assert calls == ["b", "a"]


# ---- rule 3: entry-point plugins after user callbacks ------------------------------------


def test_entry_point_plugins_after_user_callbacks(tmp_path):
    calls: list[str] = []
    trainer = short_trainer(tmp_path, [Spy("user1", calls)])
    register_entry_point(trainer, Spy("ep", calls), "ep")
    trainer.add_callback(HFSpy("user2", calls))  # added after the entry point, still before it
    trainer.train()

    assert calls == ["user1", "user2", "ep"]


def test_entry_point_plugins_keep_their_registration_order(tmp_path):
    # The Trainer registers entry points in report_to order ("all": sorted by name).
    calls: list[str] = []
    trainer = short_trainer(tmp_path)
    register_entry_point(trainer, Spy("mlflow", calls), "mlflow")
    register_entry_point(trainer, Spy("tensorboard", calls), "tensorboard")
    register_entry_point(trainer, Spy("aim", calls), "aim")
    trainer.train()

    assert calls == ["mlflow", "tensorboard", "aim"]


# ---- rule 4: progress or printer last ----------------------------------------------------


def test_printer_last(tmp_path):
    calls: list[str] = []
    trainer = with_spies(short_trainer(tmp_path), calls)
    register_entry_point(trainer, Spy("ep", calls), "ep")  # both registered after the printer
    trainer.add_callback(HFSpy("user", calls))
    trainer.train()

    assert calls == ["flow", "user", "ep", "printer"]


@pytest.mark.parametrize(
    ("disable_tqdm", "reporter"), [(True, PrinterCallback), (False, ProgressCallback)]
)
def test_builtin_reporter_is_last_in_dispatch_order(tmp_path, disable_tqdm, reporter):
    trainer = short_trainer(tmp_path, [Spy("user1", [])], disable_tqdm=disable_tqdm)
    register_entry_point(trainer, Spy("ep", []), "ep")
    trainer.add_callback(HFSpy("user2", []))

    assert [type(p) for p in trainer.callbacks] == [
        DefaultFlowCallback, Spy, HFSpy, Spy, reporter,
    ]
    assert [p.name for p in trainer.callbacks[1:4]] == ["user1", "user2", "ep"]


def test_progress_last(tmp_path):
    calls: list[str] = []
    trainer = with_spies(short_trainer(tmp_path, disable_tqdm=False), calls, reporter=False)
    trainer.pop_callback(ProgressCallback)
    trainer.add_callback(ProgressSpy(calls))
    register_entry_point(trainer, Spy("ep", calls), "ep")
    trainer.add_callback(HFSpy("user", calls))
    trainer.train()

    assert calls == ["flow", "user", "ep", "progress"]


# ---- tryfirst / trylast move an impl within its band only --------------------------------


def test_tryfirst_user_plugin_runs_first_among_users(tmp_path):
    calls: list[str] = []
    trainer = with_spies(short_trainer(tmp_path, [Spy("a", calls), Spy("b", calls)]), calls)
    trainer.add_callback(FirstSpy("first", calls))
    trainer.train()

    assert calls == ["flow", "first", "a", "b", "printer"]


def test_trylast_user_plugin_runs_last_among_users(tmp_path):
    calls: list[str] = []
    trainer = with_spies(short_trainer(tmp_path, [LastSpy("last", calls), Spy("a", calls)]), calls)
    register_entry_point(trainer, Spy("ep", calls), "ep")
    trainer.add_callback(Spy("b", calls))
    trainer.train()

    assert calls == ["flow", "a", "b", "last", "ep", "printer"]


def test_tryfirst_entry_point_stays_after_users(tmp_path):
    calls: list[str] = []
    trainer = with_spies(short_trainer(tmp_path, [Spy("user", calls)]), calls)
    register_entry_point(trainer, Spy("ep1", calls), "ep1")
    register_entry_point(trainer, FirstSpy("ep2", calls), "ep2")
    trainer.train()

    assert calls == ["flow", "user", "ep2", "ep1", "printer"]


def test_trylast_entry_point_stays_before_the_printer(tmp_path):
    calls: list[str] = []
    trainer = with_spies(short_trainer(tmp_path), calls)
    register_entry_point(trainer, LastSpy("ep1", calls), "ep1")
    register_entry_point(trainer, Spy("ep2", calls), "ep2")
    trainer.train()

    assert calls == ["flow", "ep2", "ep1", "printer"]


def test_two_tryfirst_impls_keep_registration_order(tmp_path):
    calls: list[str] = []
    trainer = with_spies(
        short_trainer(tmp_path, [Spy("a", calls), FirstSpy("f1", calls), FirstSpy("f2", calls)]),
        calls,
    )
    trainer.train()

    assert calls == ["flow", "f1", "f2", "a", "printer"]


def test_tryfirst_user_plugin_sees_default_flow_flags(tmp_path):
    # With the real DefaultFlowCallback: tryfirst does not let a user plugin run before it.
    seen: list[tuple[int, bool]] = []

    class Early:
        @hookimpl(tryfirst=True)
        def on_step_end(self, state, control) -> None:
            seen.append((state.global_step, control.should_log))

    short_trainer(tmp_path, [Early()], max_steps=4, logging_steps=2).train()

    assert seen == [(1, False), (2, True), (3, False), (4, True)]


# ---- control: flags and returned controls ------------------------------------------------


def test_user_callback_sees_flags_set_by_default_flow(tmp_path):
    seen: list[tuple[int, bool, bool, bool]] = []

    class Watch(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            seen.append((state.global_step, control.should_log, control.should_save,
                         control.should_training_stop))

    trainer = short_trainer(tmp_path, [Watch()], max_steps=3, logging_steps=2,
                           save_strategy="steps", save_steps=3)
    trainer.pop_callback(DefaultFlowCallback)
    trainer.add_callback(DefaultFlowCallback)  # registered after Watch: still runs before it
    trainer.train()

    assert seen == [(1, False, False, False), (2, True, False, False), (3, False, True, True)]


def test_user_callback_clearing_should_log_prevents_the_log(tmp_path):
    class NoLog:
        @hookimpl
        def on_step_end(self, control) -> None:
            control.should_log = False

    trainer = short_trainer(tmp_path, [NoLog()], max_steps=4, logging_steps=2)
    trainer.train()

    assert [sorted(entry) for entry in trainer.state.log_history] == [
        ["epoch", "step", "total_flos", "train_loss", "train_runtime",
         "train_samples_per_second", "train_steps_per_second"],
    ]


def test_without_clearing_the_same_run_logs(tmp_path):
    # The control case for the test above: the schedule does log at steps 2 and 4.
    trainer = short_trainer(tmp_path, max_steps=4, logging_steps=2)
    trainer.train()

    assert [entry["step"] for entry in trainer.state.log_history if "loss" in entry] == [2, 4]


def test_returned_control_replaces_it_for_later_plugins(tmp_path):
    # HF's chain: a returned TrainerControl is what the next plugins and the loop see; None
    # keeps the current one.
    returned: list[TrainerControl] = []
    received: list[tuple[str, TrainerControl]] = []

    class Replace(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            received.append(("replace", control))
            new = dataclasses.replace(control, should_log=False)
            returned.append(new)
            return new

    class KeepHF(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            received.append(("keep_hf", control))
            return None

    class KeepPluggy:
        @hookimpl
        def on_step_end(self, control) -> None:
            received.append(("keep_pluggy", control))

    trainer = short_trainer(tmp_path, [Replace(), KeepHF(), KeepPluggy()], max_steps=2,
                           logging_steps=1)
    trainer.train()

    assert [name for name, _ in received] == ["replace", "keep_hf", "keep_pluggy"] * 2
    for step in range(2):
        (_, got), (_, hf), (_, pluggy) = received[3 * step: 3 * step + 3]
        assert hf is returned[step] and pluggy is returned[step]
        assert got is not returned[step]
        assert got.should_log is True  # DefaultFlowCallback asked for a log ...
    assert trainer.control is returned[-1]  # ... the loop read the replacement: no log
    assert [entry for entry in trainer.state.log_history if "loss" in entry] == []


def test_pluggy_style_plugin_may_return_a_control(tmp_path):
    class Stop:
        @hookimpl
        def on_step_end(self, control):
            return dataclasses.replace(control, should_training_stop=True)

    trainer = short_trainer(tmp_path, [Stop()], max_steps=5)
    output = trainer.train()

    assert output.global_step == 1
    assert trainer.control.should_training_stop is True
