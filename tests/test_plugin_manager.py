"""The plugin manager's rules: hook-name validation, HF's callback-list semantics, lazy imports.

One small test per rule (DESIGN §3, §5, §5.1; HF_TRAINER_REFERENCE §2).
"""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from hooktrain import (
    DefaultFlowCallback,
    PrinterCallback,
    ProgressCallback,
    Trainer,
    TrainerCallback,
    hookimpl,
)
from hooktrain.errors import HookNameError, PluginError
from hooktrain.testing import RegressionDataset, TinyRegressor, run_training, tiny_args


def make_trainer(tmp_path, callbacks=(), **overrides):
    return Trainer(
        model=TinyRegressor(),
        args=tiny_args(tmp_path / "out", **overrides),
        train_dataset=RegressionDataset(8),
        callbacks=list(callbacks),
    )


def registered_names(trainer):
    return {name for name, _ in trainer.plugin_manager.list_name_plugin()}


def impls_of(trainer, plugin):
    """Every (hook, impl) still registered for ``plugin`` (bridged callbacks included)."""
    found = []
    for name in dir(trainer.plugin_manager.hook):
        caller = getattr(trainer.plugin_manager.hook, name)
        if not hasattr(caller, "get_hookimpls"):
            continue
        for impl in caller.get_hookimpls():
            target = impl.plugin
            if target is plugin or getattr(target, "callback", None) is plugin:
                found.append((name, impl))
    return found


# ---- hook-name validation ------------------------------------------------------------------


class Misspelled(TrainerCallback):
    def on_stepend(self, args, state, control, **kwargs):
        pass


class MisspelledPluggy:
    @hookimpl
    def on_evalute(self):
        pass


class BadArgument:
    @hookimpl
    def on_log(self, lgs):
        pass


class Unmarked:
    def on_log(self, state, logs):
        pass


class Wrapper:
    @hookimpl(wrapper=True)
    def on_log(self):
        return (yield)


def test_misspelled_callback_method_fails_at_construction(tmp_path):
    with pytest.raises(HookNameError, match=r"Misspelled") as info:
        make_trainer(tmp_path, callbacks=[Misspelled()])
    message = str(info.value)
    assert "on_stepend" in message
    assert "on_step_end" in message


def test_misspelled_callback_method_fails_at_add_callback(tmp_path):
    trainer = make_trainer(tmp_path)
    before = list(trainer.callbacks)
    with pytest.raises(HookNameError, match=r"Misspelled.*on_stepend.*on_step_end"):
        trainer.add_callback(Misspelled)
    assert trainer.callbacks == before


def test_misspelled_pluggy_hook_names_plugin_hook_and_suggestion(tmp_path):
    with pytest.raises(HookNameError, match=r"MisspelledPluggy.*on_evalute.*'on_evaluate'"):
        make_trainer(tmp_path, callbacks=[MisspelledPluggy()])


def test_hookimpl_argument_no_hook_provides_names_the_plugin(tmp_path):
    trainer = make_trainer(tmp_path)
    with pytest.raises(HookNameError, match=r"BadArgument") as info:
        trainer.add_callback(BadArgument())
    assert "lgs" in str(info.value)


def test_methods_without_hookimpl_are_an_error(tmp_path):
    with pytest.raises(PluginError, match=r"Unmarked.*on_log") as info:
        make_trainer(tmp_path, callbacks=[Unmarked()])
    message = str(info.value)
    assert "@hookimpl" in message
    assert "TrainerCallback" in message


def test_hook_wrappers_are_rejected(tmp_path):
    with pytest.raises(PluginError, match=r"Wrapper.*wrapper"):
        make_trainer(tmp_path, callbacks=[Wrapper()])


class HalfValidArgument:
    """A valid impl that pluggy registers before it rejects the bad one."""

    @hookimpl
    def on_epoch_end(self, state):
        pass

    @hookimpl
    def on_log(self, lgs):
        pass


class HalfValidName:
    @hookimpl
    def on_epoch_end(self, state):
        pass

    @hookimpl
    def on_evalute(self):
        pass


class HalfValidWrapper:
    @hookimpl
    def on_epoch_end(self, state):
        pass

    @hookimpl(wrapper=True)
    def on_log(self):
        return (yield)


class HalfValidCallback(TrainerCallback):
    def on_epoch_end(self, args, state, control, **kwargs):
        pass

    def on_stepend(self, args, state, control, **kwargs):
        pass


@pytest.mark.parametrize(
    "plugin_class", [HalfValidArgument, HalfValidName, HalfValidWrapper, HalfValidCallback]
)
def test_failed_registration_leaves_nothing_registered(tmp_path, plugin_class):
    trainer = make_trainer(tmp_path)
    callbacks, names = list(trainer.callbacks), registered_names(trainer)
    records = list(trainer.plugin_manager.records())
    plugin = plugin_class()
    with pytest.raises(PluginError):
        trainer.add_callback(plugin)
    assert trainer.callbacks == callbacks
    assert registered_names(trainer) == names
    assert trainer.plugin_manager.records() == records
    assert impls_of(trainer, plugin) == []
    trainer.train()  # the trainer is still usable and the half-registered impls never run


# ---- HF add_callback / pop_callback / remove_callback ----------------------------------------


class Rec(TrainerCallback):
    pass


class SubRec(Rec):
    pass


def types_of(trainer):
    return [type(cb) for cb in trainer.callbacks]


def test_default_callback_list_with_printer(tmp_path):
    trainer = make_trainer(tmp_path, callbacks=[Rec()], disable_tqdm=True)
    assert types_of(trainer) == [DefaultFlowCallback, Rec, PrinterCallback]


def test_default_callback_list_with_progress_bar_last(tmp_path):
    trainer = make_trainer(tmp_path, callbacks=[Rec()], disable_tqdm=False)
    assert types_of(trainer) == [DefaultFlowCallback, Rec, ProgressCallback]


def test_add_callback_instantiates_a_class(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.add_callback(Rec)
    added = [cb for cb in trainer.callbacks if type(cb) is Rec]
    assert len(added) == 1
    assert isinstance(added[0], Rec)


def test_add_callback_keeps_an_instance(tmp_path):
    trainer = make_trainer(tmp_path)
    rec = Rec()
    trainer.add_callback(rec)
    assert any(cb is rec for cb in trainer.callbacks)


def test_add_callback_keeps_call_order(tmp_path):
    first, second = Rec(), SubRec()
    trainer = make_trainer(tmp_path, callbacks=[first])
    trainer.add_callback(second)
    users = [cb for cb in trainer.callbacks if isinstance(cb, Rec)]
    assert users == [first, second]


class PluggyRec:
    """A pluggy-style plugin; DESIGN §3 gives both kinds HF's add/pop/remove semantics."""

    def __init__(self):
        self.calls = 0

    @hookimpl
    def on_train_begin(self):
        self.calls += 1


@pytest.mark.parametrize("cls", [Rec, PluggyRec], ids=["TrainerCallback", "pluggy-style"])
def test_duplicate_class_warns_and_still_appends(tmp_path, caplog, cls):
    first, second = cls(), cls()
    trainer = make_trainer(tmp_path, callbacks=[first])
    with caplog.at_level(logging.WARNING, logger="hooktrain"):
        trainer.add_callback(second)
    warnings = [r for r in caplog.records if r.name == "hooktrain" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "already one" in warnings[0].getMessage()
    assert cls.__name__ in warnings[0].getMessage()
    assert [cb for cb in trainer.callbacks if type(cb) is cls] == [first, second]


@pytest.mark.parametrize("cls", [Rec, PluggyRec], ids=["TrainerCallback", "pluggy-style"])
def test_same_instance_added_twice_warns_and_appends(tmp_path, caplog, cls):
    """HF appends the same object again (with the duplicate warning); it must not crash."""
    plugin = cls()
    trainer = make_trainer(tmp_path, callbacks=[plugin])
    with caplog.at_level(logging.WARNING, logger="hooktrain"):
        trainer.add_callback(plugin)
    assert any("already one" in r.getMessage() for r in caplog.records)
    assert [cb for cb in trainer.callbacks if cb is plugin] == [plugin, plugin]


def test_subclass_of_present_class_is_no_duplicate(tmp_path, caplog):
    trainer = make_trainer(tmp_path, callbacks=[Rec()])
    with caplog.at_level(logging.WARNING, logger="hooktrain"):
        trainer.add_callback(SubRec())
    assert not [r for r in caplog.records if "already one" in r.getMessage()]


def test_pop_callback_by_class_returns_first_isinstance_match(tmp_path):
    sub, plain = SubRec(), Rec()
    trainer = make_trainer(tmp_path, callbacks=[sub, plain])
    assert trainer.pop_callback(Rec) is sub
    assert [cb for cb in trainer.callbacks if isinstance(cb, Rec)] == [plain]


def test_pop_callback_by_class_returns_none_when_absent(tmp_path):
    trainer = make_trainer(tmp_path)
    before = list(trainer.callbacks)
    assert trainer.pop_callback(Rec) is None
    assert trainer.callbacks == before


def test_pop_callback_by_instance(tmp_path):
    first, second = Rec(), Rec()
    trainer = make_trainer(tmp_path, callbacks=[first, second])
    assert trainer.pop_callback(second) is second
    assert [cb for cb in trainer.callbacks if isinstance(cb, Rec)] == [first]
    assert trainer.pop_callback(second) is None


def test_pop_callback_removes_hooks(tmp_path):
    calls = []

    class Counting(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            calls.append(state.global_step)

    counting = Counting()
    trainer = make_trainer(tmp_path, callbacks=[counting])
    trainer.pop_callback(counting)
    trainer.train()
    assert calls == []


def test_remove_callback_by_class(tmp_path):
    trainer = make_trainer(tmp_path, callbacks=[SubRec(), Rec()])
    trainer.remove_callback(Rec)
    assert [type(cb) for cb in trainer.callbacks if isinstance(cb, Rec)] == [Rec]


def test_remove_callback_by_absent_class_is_a_silent_no_op(tmp_path, caplog):
    trainer = make_trainer(tmp_path)
    before = list(trainer.callbacks)
    with caplog.at_level(logging.DEBUG, logger="hooktrain"):
        trainer.remove_callback(Rec)
    assert trainer.callbacks == before
    assert not caplog.records


def test_remove_callback_by_instance(tmp_path):
    rec = Rec()
    trainer = make_trainer(tmp_path, callbacks=[rec])
    trainer.remove_callback(rec)
    assert rec not in trainer.callbacks


def test_remove_callback_by_absent_instance_raises_value_error(tmp_path):
    trainer = make_trainer(tmp_path)
    with pytest.raises(ValueError):
        trainer.remove_callback(Rec())


def test_default_flow_callback_can_be_removed_and_readded(tmp_path):
    trainer = make_trainer(tmp_path, callbacks=[Rec()])
    flow = trainer.pop_callback(DefaultFlowCallback)
    assert isinstance(flow, DefaultFlowCallback)
    trainer.add_callback(flow)
    assert types_of(trainer) == [DefaultFlowCallback, Rec, PrinterCallback]


# ---- pluggy-style plugins --------------------------------------------------------------------


def test_pluggy_plugin_receives_only_the_arguments_it_names(tmp_path):
    received = []

    class OnlyStateAndLogs:
        @hookimpl
        def on_log(self, state, logs):
            received.append((state, logs))

    trainer = make_trainer(tmp_path, callbacks=[OnlyStateAndLogs()])
    trainer.train()
    assert received
    for state, logs in received:
        assert state is trainer.state
        assert isinstance(logs, dict)
    assert [logs for _, logs in received] == [
        {k: v for k, v in entry.items() if k != "step"} for entry in trainer.state.log_history
    ]


def test_pluggy_plugin_with_no_arguments(tmp_path):
    calls = []

    class NoArgs:
        @hookimpl
        def on_train_begin(self):
            calls.append("on_train_begin")

    make_trainer(tmp_path, callbacks=[NoArgs()]).train()
    assert calls == ["on_train_begin"]


# ---- import cost and tracing -----------------------------------------------------------------


@pytest.mark.parametrize(
    "statement", ["from hooktrain import hookimpl", "import hooktrain", "from hooktrain import hookspec"]
)
def test_importing_hookimpl_does_not_import_torch(statement):
    code = f"{statement}\nimport sys\nprint('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "False", result.stderr


def test_trace_plugins_prints_calls_to_stderr(tmp_path, monkeypatch, capfd):
    class Traced:
        @hookimpl
        def on_init_end(self):
            pass

    monkeypatch.setenv("HOOKTRAIN_TRACE_PLUGINS", "1")
    capfd.readouterr()
    make_trainer(tmp_path, callbacks=[Traced()])
    err = capfd.readouterr().err
    assert "on_init_end" in err
    assert "Traced" in err


def test_no_trace_without_the_variable(tmp_path, monkeypatch, capfd):
    class Traced:
        @hookimpl
        def on_init_end(self):
            pass

    monkeypatch.delenv("HOOKTRAIN_TRACE_PLUGINS", raising=False)
    capfd.readouterr()
    make_trainer(tmp_path, callbacks=[Traced()])
    assert "on_init_end" not in capfd.readouterr().err


def test_a_plugin_holding_an_object_that_raises_on_attribute_access_registers(tmp_path) -> None:
    """Library context objects (flytekit's) raise AssertionError for unknown attributes."""

    class Touchy:
        def __getattr__(self, name):
            raise AssertionError(name)

    class HoldsTouchy:
        def __init__(self) -> None:
            self.context = Touchy()
            self.logs = 0

        @hookimpl
        def on_log(self):
            self.logs += 1

    plugin = HoldsTouchy()
    run = run_training(output_dir=tmp_path, plugins=[plugin], logging_steps=4)
    assert plugin.logs == len(run.trainer.state.log_history)
