"""The plugin manager's rules: hook-name validation, pluggy-style plugins, lazy imports, tracing.

One small test per rule of docs/plugins.md (writing) and docs/configuring-plugins.md (selecting,
faults). HF's callback-list semantics are in ``test_plugin_manager_callback_list.py``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from trainers import make_trainer

from hooktrain import TrainerCallback, hookimpl
from hooktrain.errors import HookNameError, PluginError
from hooktrain.plugin_host import HooktrainPluginManager
from hooktrain.testing import run_training


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
        make_trainer(tmp_path / "out", plugins=[Misspelled()])
    message = str(info.value)
    assert "on_stepend" in message
    assert "on_step_end" in message


def test_misspelled_callback_method_fails_at_add_callback(tmp_path):
    trainer = make_trainer(tmp_path / "out")
    before = list(trainer.callbacks)
    with pytest.raises(HookNameError, match=r"Misspelled.*on_stepend.*on_step_end"):
        trainer.add_callback(Misspelled)
    assert trainer.callbacks == before


def test_misspelled_pluggy_hook_names_plugin_hook_and_suggestion(tmp_path):
    with pytest.raises(HookNameError, match=r"MisspelledPluggy.*on_evalute.*'on_evaluate'"):
        make_trainer(tmp_path / "out", plugins=[MisspelledPluggy()])


def test_hookimpl_argument_no_hook_provides_names_the_plugin(tmp_path):
    trainer = make_trainer(tmp_path / "out")
    with pytest.raises(HookNameError, match=r"BadArgument") as info:
        trainer.add_callback(BadArgument())
    assert "lgs" in str(info.value)


def test_methods_without_hookimpl_are_an_error(tmp_path):
    with pytest.raises(PluginError, match=r"Unmarked.*on_log") as info:
        make_trainer(tmp_path / "out", plugins=[Unmarked()])
    message = str(info.value)
    assert "@hookimpl" in message
    assert "TrainerCallback" in message


def test_hook_wrappers_are_rejected(tmp_path):
    with pytest.raises(PluginError, match=r"Wrapper.*wrapper"):
        make_trainer(tmp_path / "out", plugins=[Wrapper()])


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
    trainer = make_trainer(tmp_path / "out")
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


# ---- pluggy-style plugins --------------------------------------------------------------------


def test_pluggy_plugin_receives_only_the_arguments_it_names(tmp_path):
    received = []

    class OnlyStateAndLogs:
        @hookimpl
        def on_log(self, state, logs):
            received.append((state, logs))

    trainer = make_trainer(tmp_path / "out", plugins=[OnlyStateAndLogs()])
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

    make_trainer(tmp_path / "out", plugins=[NoArgs()]).train()
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
    make_trainer(tmp_path / "out", plugins=[Traced()])
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
    make_trainer(tmp_path / "out", plugins=[Traced()])
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


def test_a_hook_left_unmarked_beside_marked_ones_is_refused_naming_it():
    class HalfMarked:
        @hookimpl
        def on_log(self, logs):
            pass

        def on_step_end(self, state):  # forgot @hookimpl: would never run
            pass

        def on_stepend_helper(self):  # not a hook, named like one
            pass

    manager = HooktrainPluginManager()
    with pytest.raises(PluginError) as refused:
        manager.register_plugin(HalfMarked(), name="half")
    message = str(refused.value)
    assert "on_step_end (a hook: mark it with @hookimpl)" in message
    assert "on_stepend_helper" in message and "leading underscore" in message
    assert manager.records() == []
