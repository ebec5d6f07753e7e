"""No plugin can hang a run, or `hooktrain plugins`, forever (plugin_timeout)."""

from __future__ import annotations

import logging
import sys
import threading
import time
from importlib import metadata

import pytest
from trainers import make_trainer

from hooktrain import TrainerCallback, cli, hookimpl
from hooktrain.plugin_host import Band, discovery
from hooktrain.testing import HookRecorder, RegressionDataset, TinyRegressor, tiny_args
from hooktrain.trainer import Trainer

FOREVER = threading.Event()  # never set


class HangsAtTrainEnd:
    hooktrain_nonblocking = True

    @hookimpl
    def on_train_end(self, state):
        FOREVER.wait()


class HangsOnEveryLog:
    hooktrain_nonblocking = True

    @hookimpl
    def on_log(self, logs):
        FOREVER.wait()


def trainer_with(tmp_path, plugin, **overrides) -> tuple[Trainer, HookRecorder]:
    recorder = HookRecorder()
    trainer = make_trainer(tmp_path, plugins=[recorder], eval_size=0, plugin_timeout=0.5,
                           **overrides)
    trainer.plugin_manager.register_plugin(plugin, band=Band.ENTRY_POINT, name="stuck",
                                           isolated=True)
    return trainer, recorder


def test_a_nonblocking_plugin_stuck_in_on_train_end_is_dropped_and_train_returns(tmp_path, caplog):
    trainer, recorder = trainer_with(tmp_path, HangsAtTrainEnd())
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="hooktrain"):
        trainer.train()
    assert time.monotonic() - started < 30
    (report,) = [r.getMessage() for r in caplog.records if "stuck" in r.getMessage()]
    assert "plugin_timeout=0.5" in report and "on_train_end" in report
    assert recorder.events[-1] == "on_train_end"  # the other plugins got everything
    assert [f.plugin for f in trainer.plugin_faults] == ["stuck"]


def test_a_nonblocking_plugin_that_fills_its_queue_is_dropped(tmp_path, caplog, monkeypatch):
    from hooktrain.plugin_host import background

    original = background.BackgroundWorker.__init__
    monkeypatch.setattr(background.BackgroundWorker, "__init__",
                        lambda self, label, on_error, maxsize=2: original(self, label, on_error,
                                                                           maxsize))
    trainer, recorder = trainer_with(tmp_path, HangsOnEveryLog(), logging_steps=1)
    with caplog.at_level(logging.ERROR, logger="hooktrain"):
        trainer.train()
    reports = [r.getMessage() for r in caplog.records if "stuck" in r.getMessage()]
    assert len(reports) == 1 and "kept its queue full" in reports[0]
    assert trainer.state.global_step == 8 and recorder.events.count("on_log") == 9


def test_a_slow_synchronous_hook_is_warned_about_while_it_runs(tmp_path, caplog):
    class Slow(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                time.sleep(2.2)

    trainer = Trainer(TinyRegressor(), tiny_args(tmp_path, plugin_timeout=0.5),
                      train_dataset=RegressionDataset(16), callbacks=[Slow()])
    with caplog.at_level(logging.WARNING, logger="hooktrain"):
        trainer.train()
    warnings = [r.getMessage() for r in caplog.records if "past plugin_timeout" in r.getMessage()]
    assert 2 <= len(warnings) <= 5, warnings  # after 0.5 s, then every 0.5 s
    assert "Slow" in warnings[0] and "on_step_end" in warnings[0] and "(step 2)" in warnings[0]
    assert "cannot stop it" in warnings[0]


def test_plugins_lists_a_plugin_whose_import_hangs_as_broken(tmp_path, monkeypatch):
    (tmp_path / "hangs_at_import.py").write_text("import threading\nthreading.Event().wait()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry_point = metadata.EntryPoint("hangs", "hangs_at_import:Plugin", discovery.GROUP)
    installed = discovery.InstalledPlugin("hangs", "hooktrain-hangs", "0.1", entry_point)
    monkeypatch.setattr(discovery, "installed_plugins", lambda: {"hangs": installed})
    monkeypatch.setattr(cli, "IMPORT_TIMEOUT", 0.5)
    started = time.monotonic()
    (row,) = cli.plugin_rows()
    assert time.monotonic() - started < 10
    assert row["status"] == "broken" and "did not finish within 0.5 s" in row["reason"]
    sys.modules.pop("hangs_at_import", None)


def test_plugin_timeout_is_checked() -> None:
    from hooktrain import TrainingArguments
    from hooktrain.errors import ConfigError

    with pytest.raises(ConfigError, match="plugin_timeout"):
        TrainingArguments("out", plugin_timeout=-1)
