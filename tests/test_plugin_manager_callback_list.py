"""HF's callback-list semantics in the plugin manager: the default list, add_callback,
pop_callback, remove_callback, duplicates (docs/architecture.md, "Two ways to write a plugin";
docs/migrating-from-transformers.md).

One small test per rule; pluggy-style plugins get the same semantics as TrainerCallbacks.
"""

from __future__ import annotations

import logging

import pytest
from trainers import make_trainer

from hooktrain import (
    DefaultFlowCallback,
    PrinterCallback,
    ProgressCallback,
    TrainerCallback,
    hookimpl,
)

# ---- HF add_callback / pop_callback / remove_callback ----------------------------------------


class Rec(TrainerCallback):
    pass


class SubRec(Rec):
    pass


def types_of(trainer):
    return [type(cb) for cb in trainer.callbacks]


def test_default_callback_list_with_printer(tmp_path):
    trainer = make_trainer(tmp_path / "out", plugins=[Rec()], disable_tqdm=True)
    assert types_of(trainer) == [DefaultFlowCallback, Rec, PrinterCallback]


def test_default_callback_list_with_progress_bar_last(tmp_path):
    trainer = make_trainer(tmp_path / "out", plugins=[Rec()], disable_tqdm=False)
    assert types_of(trainer) == [DefaultFlowCallback, Rec, ProgressCallback]


def test_add_callback_instantiates_a_class(tmp_path):
    trainer = make_trainer(tmp_path / "out")
    trainer.add_callback(Rec)
    added = [cb for cb in trainer.callbacks if type(cb) is Rec]
    assert len(added) == 1
    assert isinstance(added[0], Rec)


def test_add_callback_keeps_an_instance(tmp_path):
    trainer = make_trainer(tmp_path / "out")
    rec = Rec()
    trainer.add_callback(rec)
    assert any(cb is rec for cb in trainer.callbacks)


def test_add_callback_keeps_call_order(tmp_path):
    first, second = Rec(), SubRec()
    trainer = make_trainer(tmp_path / "out", plugins=[first])
    trainer.add_callback(second)
    users = [cb for cb in trainer.callbacks if isinstance(cb, Rec)]
    assert users == [first, second]


class PluggyRec:
    """A pluggy-style plugin: both kinds get HF's add/pop/remove semantics (docs/architecture.md,
    "Two ways to write a plugin")."""

    def __init__(self):
        self.calls = 0

    @hookimpl
    def on_train_begin(self):
        self.calls += 1


@pytest.mark.parametrize("cls", [Rec, PluggyRec], ids=["TrainerCallback", "pluggy-style"])
def test_duplicate_class_warns_and_still_appends(tmp_path, caplog, cls):
    first, second = cls(), cls()
    trainer = make_trainer(tmp_path / "out", plugins=[first])
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
    trainer = make_trainer(tmp_path / "out", plugins=[plugin])
    with caplog.at_level(logging.WARNING, logger="hooktrain"):
        trainer.add_callback(plugin)
    assert any("already one" in r.getMessage() for r in caplog.records)
    assert [cb for cb in trainer.callbacks if cb is plugin] == [plugin, plugin]


def test_subclass_of_present_class_is_no_duplicate(tmp_path, caplog):
    trainer = make_trainer(tmp_path / "out", plugins=[Rec()])
    with caplog.at_level(logging.WARNING, logger="hooktrain"):
        trainer.add_callback(SubRec())
    assert not [r for r in caplog.records if "already one" in r.getMessage()]


def test_pop_callback_by_class_returns_first_isinstance_match(tmp_path):
    sub, plain = SubRec(), Rec()
    trainer = make_trainer(tmp_path / "out", plugins=[sub, plain])
    assert trainer.pop_callback(Rec) is sub
    assert [cb for cb in trainer.callbacks if isinstance(cb, Rec)] == [plain]


def test_pop_callback_by_class_returns_none_when_absent(tmp_path):
    trainer = make_trainer(tmp_path / "out")
    before = list(trainer.callbacks)
    assert trainer.pop_callback(Rec) is None
    assert trainer.callbacks == before


def test_pop_callback_by_instance(tmp_path):
    first, second = Rec(), Rec()
    trainer = make_trainer(tmp_path / "out", plugins=[first, second])
    assert trainer.pop_callback(second) is second
    assert [cb for cb in trainer.callbacks if isinstance(cb, Rec)] == [first]
    assert trainer.pop_callback(second) is None


def test_pop_callback_removes_hooks(tmp_path):
    calls = []

    class Counting(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            calls.append(state.global_step)

    counting = Counting()
    trainer = make_trainer(tmp_path / "out", plugins=[counting])
    trainer.pop_callback(counting)
    trainer.train()
    assert calls == []


def test_remove_callback_by_class(tmp_path):
    trainer = make_trainer(tmp_path / "out", plugins=[SubRec(), Rec()])
    trainer.remove_callback(Rec)
    assert [type(cb) for cb in trainer.callbacks if isinstance(cb, Rec)] == [Rec]


def test_remove_callback_by_absent_class_is_a_silent_no_op(tmp_path, caplog):
    trainer = make_trainer(tmp_path / "out")
    before = list(trainer.callbacks)
    with caplog.at_level(logging.DEBUG, logger="hooktrain"):
        trainer.remove_callback(Rec)
    assert trainer.callbacks == before
    assert not caplog.records


def test_remove_callback_by_instance(tmp_path):
    rec = Rec()
    trainer = make_trainer(tmp_path / "out", plugins=[rec])
    trainer.remove_callback(rec)
    assert rec not in trainer.callbacks


def test_remove_callback_by_absent_instance_raises_value_error(tmp_path):
    trainer = make_trainer(tmp_path / "out")
    with pytest.raises(ValueError):
        trainer.remove_callback(Rec())


def test_default_flow_callback_can_be_removed_and_readded(tmp_path):
    trainer = make_trainer(tmp_path / "out", plugins=[Rec()])
    flow = trainer.pop_callback(DefaultFlowCallback)
    assert isinstance(flow, DefaultFlowCallback)
    trainer.add_callback(flow)
    assert types_of(trainer) == [DefaultFlowCallback, Rec, PrinterCallback]
