"""Where the training time went: ``trainer.plugin_timings``, the slow-plugin warning, the report.

No assertion on absolute speed: only counts, and shares or relations with wide margins (a plugin
sleeping 20 ms per step takes most of a tiny run). docs/plugin-timings.md describes the table.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from hooktrain import TrainingArguments, cli, hookimpl
from hooktrain.errors import ConfigError
from hooktrain.testing import build_trainer, run_training
from hooktrain.trainer_state import TrainerState

KINDS = {"phase", "plugin", "waited", "worker"}
PHASES = ["set-up", "data", "forward/backward", "optimizer", "evaluation", "checkpoint save",
          "plugins", "other"]


@pytest.fixture(scope="module", autouse=True)
def warm_process(tmp_path_factory):
    """The first optimizer of a process imports much of torch (seconds of set-up): done here, so
    the runs below measure training, not that import."""
    build_trainer(tmp_path_factory.mktemp("warm")).train()


class SlowStep:
    def __init__(self, seconds: float = 0.02) -> None:
        self.seconds = seconds

    @hookimpl
    def on_step_end(self):
        time.sleep(self.seconds)


class SlowLog:
    hooktrain_nonblocking = True

    @hookimpl
    def on_log(self):
        time.sleep(0.03)


def rows_of(trainer, prefix: str, kind: str | None = None) -> dict[str, object]:
    """The rows of the plugin whose label starts with ``prefix``, by hook."""
    return {row.hook: row for row in trainer.plugin_timings
            if row.name.startswith(prefix) and (kind is None or row.kind == kind)}


def timing_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "of this run's time" in r.getMessage()]


def test_a_slow_plugin_is_named_with_its_hook_and_share(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="hooktrain"):
        run = run_training(tmp_path, plugins=[SlowStep()], max_steps=30, train_size=120,
                           plugin_report_min_seconds=0.5)
    row = rows_of(run.trainer, "SlowStep", "plugin")["on_step_end"]
    assert row.calls == 30
    assert row.share > 0.5, run.trainer.plugin_timings  # 30 x 20 ms in a run of a few ms more
    assert row.mean_s >= 0.02 and row.max_s >= row.mean_s and row.total_s >= 0.6
    warnings = timing_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "SlowStep" in warnings[0] and "on_step_end" in warnings[0]
    assert f"{row.share * 100:.1f}%" in warnings[0]
    assert "non-blocking" in warnings[0] and "logging_steps" in warnings[0]


def test_a_short_run_does_not_warn_below_the_floor(tmp_path, caplog):
    """The same 90 % share, in a run of under a second: the default floor of one second keeps
    smoke runs and test suites quiet."""
    with caplog.at_level(logging.WARNING, logger="hooktrain"):
        run = run_training(tmp_path, plugins=[SlowStep()], max_steps=10, train_size=40)
    row = rows_of(run.trainer, "SlowStep", "plugin")["on_step_end"]
    assert row.share > 0.5 and row.total_s < 1.0
    assert timing_warnings(caplog) == []


class SlowStart:
    @hookimpl
    def on_train_begin(self):
        time.sleep(0.2)  # a tracker creating its run


def test_a_slow_start_is_in_the_table_but_not_warned_about(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="hooktrain"):
        # a floor the 0.2 s start is above and the other plugins' milliseconds are not (at 0,
        # a progress-bar write on a loaded machine can be 5 % of this short run)
        run = run_training(tmp_path, plugins=[SlowStart()], plugin_report_min_seconds=0.15)
    assert rows_of(run.trainer, "SlowStart", "plugin")["on_train_begin"].share > 0.05
    assert timing_warnings(caplog) == []


def test_the_default_set_up_does_not_warn(tmp_path, caplog):
    """Flow and progress bar only. (Their shares are not asserted: on a loaded machine a
    progress-bar write can be 5 % of a 0.2 s run, which is why the floor exists.)"""
    with caplog.at_level(logging.WARNING, logger="hooktrain"):
        run = run_training(tmp_path, max_steps=40, train_size=160)
    assert timing_warnings(caplog) == []
    assert {row.kind for row in run.trainer.plugin_timings} >= {"phase", "plugin"}


def test_the_table_counts_every_hook_call_and_holds_the_loops_phases(tmp_path):
    run = run_training(tmp_path, eval_strategy="steps", eval_steps=2, save_strategy="steps",
                       save_steps=4)
    recorded = Counter(run.recorder.events)
    recorded.pop("on_init_end")  # fired by Trainer(...), before train() starts the table
    table = rows_of(run.trainer, "HookRecorder", "plugin")
    assert {hook: row.calls for hook, row in table.items()} == dict(recorded)

    rows = run.trainer.plugin_timings
    assert {row.kind for row in rows} <= KINDS
    phases = [row.hook for row in rows if row.kind == "phase"]
    assert phases == PHASES  # the loop's order, then the sum of the plugins and the rest
    by_phase = {row.hook: row for row in rows if row.kind == "phase"}
    assert by_phase["forward/backward"].calls == 8 and by_phase["optimizer"].calls == 8
    assert by_phase["evaluation"].calls == 4 and by_phase["checkpoint save"].calls == 2
    plugin_total = sum(row.total_s for row in rows if row.kind in ("plugin", "waited"))
    assert by_phase["plugins"].total_s == pytest.approx(plugin_total)
    # phases and plugins add up to the run: shares sum to one
    assert sum(row.share for row in rows if row.kind == "phase") == pytest.approx(1, abs=0.01)
    for row in rows:
        assert row.total_s >= 0 and row.calls >= 0 and 0 <= row.share <= 1
        if row.calls:
            assert row.mean_s == pytest.approx(row.total_s / row.calls)
            assert row.max_s <= row.total_s + 1e-9


class EvaluatesInStepEnd:
    """A callback that runs an evaluation from inside on_step_end (events nest)."""

    def __init__(self) -> None:
        self.trainer = None

    @hookimpl
    def on_step_end(self, state):
        if state.global_step == 2:
            self.trainer.evaluate()


class SlowEvaluate:
    @hookimpl
    def on_evaluate(self):
        time.sleep(0.25)  # far above the tiny evaluation's own time, even on a loaded machine


def test_a_plugins_time_excludes_the_plugin_calls_nested_in_it(tmp_path):
    outer, slow = EvaluatesInStepEnd(), SlowEvaluate()
    trainer = build_trainer(tmp_path, plugins=[outer, slow])
    outer.trainer = trainer
    trainer.train()
    nested = rows_of(trainer, "SlowEvaluate", "plugin")["on_evaluate"]
    calling = rows_of(trainer, "EvaluatesInStepEnd", "plugin")["on_step_end"]
    assert nested.calls == 1 and nested.total_s >= 0.25
    assert calling.total_s < nested.total_s / 2  # its own time: the tiny evaluation, not 250 ms
    plugins = {row.hook: row for row in trainer.plugin_timings if row.kind == "phase"}["plugins"]
    assert plugins.total_s >= nested.total_s + calling.total_s - 1e-9


def test_a_non_blocking_plugins_worker_time_is_apart_from_the_loops_wait(tmp_path):
    run = run_training(tmp_path, plugins=[SlowLog()])
    logs = len(run.trainer.state.log_history)
    worker = rows_of(run.trainer, "SlowLog", "worker")
    waited = rows_of(run.trainer, "SlowLog", "waited")
    assert set(worker) == {"on_log"} and worker["on_log"].calls == logs
    assert worker["on_log"].total_s >= 0.03 * logs
    assert waited["on_log"].calls == logs  # handing each call over
    assert waited["on_log"].total_s < worker["on_log"].total_s / 2
    assert waited["drain"].calls == 1  # the wait for its last calls, at the end of train()
    plugins = {row.hook: row for row in run.trainer.plugin_timings if row.kind == "phase"}
    # the worker's time overlaps training: only the waits count in the loop's plugin time
    assert plugins["plugins"].total_s < worker["on_log"].total_s + waited["drain"].total_s


def test_timings_are_saved_in_checkpoints_and_trainer_state_and_continue_on_resume(tmp_path):
    out = tmp_path / "run"
    first = build_trainer(out, plugins=[SlowStep(0.005)], max_steps=8, save_strategy="steps",
                          save_steps=4)
    first.train()
    stored = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    saved = stored["stateful_callbacks"]["HooktrainTimings"]
    assert saved["run_s"] > 0
    step_end = [r for r in saved["rows"] if r["name"].startswith("SlowStep")
                and r["hook"] == "on_step_end"]
    assert [r["calls"] for r in step_end] == [4]
    assert set(stored) == {f.name for f in TrainerState.__dataclass_fields__.values()}

    first.save_state()  # HF's save_state: the finished run's table, loadable as HF's state
    final = TrainerState.load_from_json(out / "trainer_state.json")
    rows = final.stateful_callbacks["HooktrainTimings"]["rows"]
    assert [r["calls"] for r in rows if r["name"].startswith("SlowStep")] == [8]

    resumed = build_trainer(out, plugins=[SlowStep(0.005)], max_steps=8, save_strategy="steps",
                            save_steps=4)
    resumed.train(resume_from_checkpoint=str(out / "checkpoint-4"))
    row = rows_of(resumed, "SlowStep", "plugin")["on_step_end"]
    assert row.calls == 8  # 4 from the checkpoint, 4 now
    assert row.total_s >= 8 * 0.005
    optimizer = {r.hook: r for r in resumed.plugin_timings if r.kind == "phase"}["optimizer"]
    assert optimizer.calls == 8


def test_plugin_report_prints_the_table_at_the_end(tmp_path, capsys):
    run_training(tmp_path, plugins=[SlowStep(0.001)], plugin_report=True)
    out = capsys.readouterr().out
    assert "Where the training time went" in out
    for cell in ("forward/backward", "optimizer", "plugins", "SlowStep", "on_step_end", "share"):
        assert cell in out


def test_no_report_without_the_flag(tmp_path, capsys):
    run_training(tmp_path)
    assert "Where the training time went" not in capsys.readouterr().out


FACTORIES = '''
from hooktrain.testing import RegressionDataset, TinyRegressor


def make_model():
    return TinyRegressor()


def train_set():
    return RegressionDataset(16, seed=0)
'''


def test_train_command_plugin_report_flag(tmp_path, capsys, monkeypatch):
    (tmp_path / "timing_factories.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "run.toml"
    config.write_text(f'''[training]
output_dir = {json.dumps(str(tmp_path / "run"))}
max_steps = 4
per_device_train_batch_size = 4
save_strategy = "no"
report_to = "none"
disable_tqdm = true

[run]
model = "timing_factories:make_model"
train_dataset = "timing_factories:train_set"
''')
    assert cli.main(["train", str(config), "--plugin-report"]) == 0
    out = capsys.readouterr().out
    assert "Where the training time went" in out and "forward/backward" in out
    assert cli.main(["train", str(config)]) == 0
    assert "Where the training time went" not in capsys.readouterr().out


@pytest.mark.parametrize("threshold", [-0.1, 1.5])
def test_the_threshold_is_a_share(tmp_path, threshold):
    with pytest.raises(ConfigError, match="plugin_report_threshold"):
        TrainingArguments(output_dir=str(tmp_path), plugin_report_threshold=threshold)


def test_the_floor_is_not_negative(tmp_path):
    with pytest.raises(ConfigError, match="plugin_report_min_seconds must be >= 0"):
        TrainingArguments(output_dir=str(tmp_path), plugin_report_min_seconds=-1)


def test_a_threshold_of_one_never_warns(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="hooktrain"):
        run_training(Path(tmp_path), plugins=[SlowStep()], plugin_report_threshold=1.0,
                     plugin_report_min_seconds=0)
    assert timing_warnings(caplog) == []


def test_timing_does_not_touch_tensors(tmp_path):
    """Timings read the host clock only: the loss of a step stays a device tensor, unread."""
    seen = []

    class KeepsLoss:
        @hookimpl
        def on_step_end(self, loss):
            seen.append(loss)

    run_training(tmp_path, plugins=[KeepsLoss()])
    assert seen and all(isinstance(loss, torch.Tensor) for loss in seen)
