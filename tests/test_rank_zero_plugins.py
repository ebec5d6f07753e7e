"""Installed plugins run on rank zero only; in a run of several processes they cannot steer it.

A change such a plugin makes to ``control`` would happen on one process only and the processes
would part ways (one stops, the others wait in their next collective forever). The dispatcher
undoes it and says so once. The real multi-process gating is in test_distributed.py; here the
dispatcher is told it is rank zero of two.
"""

from __future__ import annotations

import logging

import pytest
from trainers import make_trainer

from hooktrain import Trainer, TrainerControl, hookimpl
from hooktrain.plugin_host import Band


class StopsInPlace:
    @hookimpl
    def on_step_end(self, state, control):
        if state.global_step == 2:
            control.should_training_stop = True
            control.should_save = True

    @hookimpl
    def on_pre_log(self, logs):
        return {"steerer_seen": 1.0}  # what a hook returns other than a control is kept


class StopsByReturning:
    @hookimpl
    def on_step_end(self, state, control):
        if state.global_step >= 2:
            return TrainerControl(should_training_stop=True)
        return None


def trainer_with(tmp_path, plugin, all_ranks: bool, world_size: int) -> Trainer:
    trainer = make_trainer(tmp_path / "out", eval_size=0)
    trainer.plugin_manager.register_plugin(plugin, band=Band.ENTRY_POINT, name="steerer",
                                           isolated=True, all_ranks=all_ranks)
    trainer.callback_handler.set_rank(True, world_size)
    return trainer


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "hooktrain" and r.levelno == logging.WARNING]


@pytest.mark.parametrize("plugin_cls", [StopsInPlace, StopsByReturning])
def test_a_rank_zero_plugin_cannot_steer_a_multi_process_run(tmp_path, caplog, plugin_cls):
    trainer = trainer_with(tmp_path, plugin_cls(), all_ranks=False, world_size=2)
    with caplog.at_level(logging.WARNING, logger="hooktrain"):
        output = trainer.train()
    assert output.global_step == 8, "the stop was undone: every rank trains on together"
    assert not list((tmp_path / "out").glob("checkpoint-*")), "should_save was undone too"
    said = [m for m in warnings_of(caplog) if "steerer" in m]
    assert said[0].startswith("Plugin steerer runs on rank zero only and changed control."
                              "should_training_stop to True in on_step_end; the other 1 processes")
    assert "hooktrain_all_ranks = True" in said[0]
    # once per flag, not per step: the in-place one also sets should_save; the returned control
    # also clears the should_log that DefaultFlowCallback had set before it
    assert len(said) == 2, said
    if plugin_cls is StopsInPlace:
        assert all(entry.get("steerer_seen") == 1.0 for entry in trainer.state.log_history)


@pytest.mark.parametrize("plugin_cls", [StopsInPlace, StopsByReturning])
def test_the_same_plugin_steers_a_single_process_run(tmp_path, caplog, plugin_cls):
    trainer = trainer_with(tmp_path, plugin_cls(), all_ranks=False, world_size=1)
    with caplog.at_level(logging.WARNING, logger="hooktrain"):
        assert trainer.train().global_step == 2
    assert not [m for m in warnings_of(caplog) if "steerer" in m]


def test_a_plugin_on_every_rank_steers_a_multi_process_run(tmp_path, caplog):
    trainer = trainer_with(tmp_path, StopsInPlace(), all_ranks=True, world_size=2)
    with caplog.at_level(logging.WARNING, logger="hooktrain"):
        assert trainer.train().global_step == 2
    assert not [m for m in warnings_of(caplog) if "steerer" in m]


class StopsThenRaises:
    @hookimpl
    def on_step_end(self, state, control):
        if state.global_step == 2:
            control.should_training_stop = True
            raise RuntimeError("broken after steering")


def test_a_rank_zero_plugin_that_raises_after_steering_is_undone_too(tmp_path, caplog):
    trainer = trainer_with(tmp_path, StopsThenRaises(), all_ranks=False, world_size=2)
    with caplog.at_level(logging.WARNING, logger="hooktrain"):
        output = trainer.train()
    assert output.global_step == 8, "switched off after the error, and its stop undone"
    assert [f.hook for f in trainer.plugin_faults] == ["on_step_end"]
