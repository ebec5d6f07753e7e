"""Plugin faults (docs/architecture.md, "Faults"): isolation of logging plugins, fatal user
callbacks, on_exception, and per-plugin copies of ``logs`` / ``metrics``."""

from __future__ import annotations

import logging

import pytest
import torch
from trainers import make_trainer

from hooktrain import TrainerCallback, hookimpl
from hooktrain.plugin_host import Band
from hooktrain.testing import HookRecorder, RegressionDataset


class Flaky:
    """A logging plugin whose on_log always fails."""

    def __init__(self, exc_type=RuntimeError):
        self.calls = 0
        self.step_calls = []
        self.exc_type = exc_type

    @hookimpl
    def on_log(self, logs):
        self.calls += 1
        raise self.exc_type("flaky plugin is broken")

    @hookimpl
    def on_step_end(self, state):
        self.step_calls.append(state.global_step)


def add_isolated(trainer, plugin, name="flaky"):
    return trainer.plugin_manager.register_plugin(
        plugin, band=Band.ENTRY_POINT, name=name, isolated=True
    )


def hooktrain_records(caplog, level=logging.DEBUG):
    return [r for r in caplog.records if r.name == "hooktrain" and r.levelno >= level]


# ---- isolated (entry-point) plugins -------------------------------------------------------


def test_isolated_plugin_error_is_reported_once_and_switched_off(tmp_path, caplog):
    recorder = HookRecorder()
    trainer = make_trainer(tmp_path / "out", plugins=[recorder])
    flaky = Flaky()
    add_isolated(trainer, flaky)
    with caplog.at_level(logging.WARNING, logger="hooktrain"):
        output = trainer.train()

    assert output.global_step == 8  # training finished
    assert len(recorder.of("on_log")) > 1  # on_log fired again after the fault...
    assert flaky.calls == 1  # ...but the switched-off plugin was not called again
    assert flaky.step_calls == [1, 2]  # none of its hooks: it failed in the on_log of step 2

    reports = [r for r in hooktrain_records(caplog) if r.exc_info is not None]
    assert len(reports) == 1
    report = reports[0]
    assert report.levelno >= logging.WARNING
    message = report.getMessage()
    assert "flaky" in message
    assert "on_log" in message
    assert report.exc_info[0] is RuntimeError
    assert "flaky plugin is broken" in caplog.text  # the traceback is in the log output
    assert "Traceback" in caplog.text

    faults = trainer.plugin_faults
    assert len(faults) == 1
    assert "flaky" in faults[0].plugin
    assert faults[0].hook == "on_log"
    assert "RuntimeError" in faults[0].error

    summaries = [
        r for r in hooktrain_records(caplog, logging.WARNING)
        if r.exc_info is None and "flaky" in r.getMessage()
    ]
    assert len(summaries) == 1
    assert "on_log" in summaries[0].getMessage()


def test_isolated_plugin_fault_does_not_change_training(tmp_path):
    clean = make_trainer(tmp_path / "clean")
    clean.train()
    faulty = make_trainer(tmp_path / "faulty")
    add_isolated(faulty, Flaky())
    faulty.train()
    assert faulty.plugin_faults
    clean_params = dict(clean.model.named_parameters())
    faulty_params = dict(faulty.model.named_parameters())
    assert clean_params.keys() == faulty_params.keys()
    for name, param in clean_params.items():
        assert torch.equal(param, faulty_params[name]), name
    assert [e.get("loss") for e in clean.state.log_history] == [
        e.get("loss") for e in faulty.state.log_history
    ]


def test_run_without_faults_has_no_summary(tmp_path, caplog):
    trainer = make_trainer(tmp_path / "out")
    with caplog.at_level(logging.WARNING, logger="hooktrain"):
        trainer.train()
    assert trainer.plugin_faults == []
    assert not hooktrain_records(caplog, logging.WARNING)


def test_plugin_errors_raise_makes_isolated_plugin_fatal(tmp_path):
    trainer = make_trainer(tmp_path / "out", plugin_errors="raise")
    add_isolated(trainer, Flaky(ValueError))
    with pytest.raises(ValueError, match="flaky plugin is broken") as info:
        trainer.train()
    notes = " ".join(getattr(info.value, "__notes__", []))
    assert "flaky" in notes
    assert "on_log" in notes
    assert trainer.plugin_faults == []


# ---- user callbacks are fatal, on_exception fires once -----------------------------------


class Boom(Exception):
    pass


class RaisesIn(TrainerCallback):
    """Raises ``exc`` in ``hook`` at ``step`` (or at the first call when ``step`` is None)."""

    def __init__(self, hook, exc, step=None):
        self.exc = exc
        self.step = step

        def method(args, state, control, **kwargs):
            if self.step is None or state.global_step == self.step:
                raise self.exc

        setattr(self, hook, method)

    # the bridge looks at the class, so declare both events this helper may raise in
    def on_step_end(self, args, state, control, **kwargs):
        pass

    def on_evaluate(self, args, state, control, **kwargs):
        pass


@pytest.mark.parametrize(
    ("hook", "overrides"),
    [
        pytest.param("on_step_end", {}, id="on_step_end"),
        pytest.param("on_evaluate", {"eval_strategy": "steps", "eval_steps": 2}, id="nested-evaluate"),
    ],
)
def test_user_callback_error_stops_training_and_fires_on_exception_once(tmp_path, hook, overrides):
    error = Boom("user callback failed")
    recorder = HookRecorder()
    trainer = make_trainer(
        tmp_path / "out", plugins=[RaisesIn(hook, error, step=2), recorder], **overrides,
    )
    with pytest.raises(Boom) as info:
        trainer.train()
    assert info.value is error
    assert trainer.state.global_step == 2
    assert all(call.global_step <= 2 for call in recorder.calls)  # nothing ran after the error
    exceptions = recorder.of("on_exception")
    assert len(exceptions) == 1
    assert exceptions[0].payload["exception"] is error
    assert recorder.events[-1] == "on_exception"
    assert "on_train_end" not in recorder.events
    assert trainer.plugin_faults == []


@pytest.mark.parametrize("call", ["evaluate", "predict"])
def test_error_outside_training_fires_on_exception_once(tmp_path, call):
    hook = "on_evaluate" if call == "evaluate" else "on_predict"
    error = Boom(f"failed in {hook}")

    def fail(self, args, state, control, **kwargs):
        raise error

    Failing = type("Failing", (TrainerCallback,), {hook: fail})
    recorder = HookRecorder()
    trainer = make_trainer(tmp_path / "out", plugins=[Failing(), recorder])
    recorder.clear()
    with pytest.raises(Boom) as info:
        if call == "evaluate":
            trainer.evaluate()
        else:
            trainer.predict(RegressionDataset(4, seed=2))
    assert info.value is error
    assert [c.payload["exception"] for c in recorder.of("on_exception")] == [error]


def test_plugin_failing_in_on_exception_does_not_hide_the_error(tmp_path, caplog):
    class BrokenTeardown:
        @hookimpl
        def on_exception(self, exception):
            raise RuntimeError("teardown failed")

    seen = []

    class Teardown:
        @hookimpl
        def on_exception(self, exception):
            seen.append(exception)

    error = Boom("original")
    trainer = make_trainer(
        tmp_path / "out",
        plugins=[BrokenTeardown(), RaisesIn("on_step_end", error, step=1), Teardown()],
    )
    isolated_seen = []

    class IsolatedTeardown:
        @hookimpl
        def on_exception(self, exception):
            isolated_seen.append(exception)

    add_isolated(trainer, IsolatedTeardown(), name="tracker")
    with caplog.at_level(logging.WARNING, logger="hooktrain"), pytest.raises(Boom) as info:
        trainer.train()
    assert info.value is error
    assert seen == [error]
    assert isolated_seen == [error]
    reports = [r for r in hooktrain_records(caplog, logging.WARNING) if "BrokenTeardown" in r.getMessage()]
    assert len(reports) == 1
    assert "on_exception" in reports[0].getMessage()
    assert reports[0].exc_info is not None
    assert "teardown failed" in caplog.text


@pytest.mark.parametrize("isolated", [False, True], ids=["user-callback", "isolated-plugin"])
def test_keyboard_interrupt_propagates_and_fires_on_exception(tmp_path, isolated):
    recorder = HookRecorder()
    if isolated:
        trainer = make_trainer(tmp_path / "out", plugins=[recorder])

        class Interrupting:
            @hookimpl
            def on_step_end(self, state):
                if state.global_step == 2:
                    raise KeyboardInterrupt

        add_isolated(trainer, Interrupting(), name="interrupting")
    else:
        interrupt = KeyboardInterrupt()
        trainer = make_trainer(
            tmp_path / "out", plugins=[RaisesIn("on_step_end", interrupt, step=2), recorder],
        )
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert trainer.state.global_step == 2
    exceptions = recorder.of("on_exception")
    assert len(exceptions) == 1
    assert isinstance(exceptions[0].payload["exception"], KeyboardInterrupt)
    assert trainer.plugin_faults == []


# ---- logs / metrics isolation ------------------------------------------------------------


class Vandal:
    """Empties and rewrites every ``logs`` and ``metrics`` it is handed."""

    @hookimpl
    def on_log(self, logs):
        logs.clear()
        logs["vandal"] = 1.0

    @hookimpl
    def on_evaluate(self, metrics):
        metrics.pop("eval_loss", None)
        metrics.pop("epoch", None)
        metrics["vandal"] = 1.0

    @hookimpl
    def on_predict(self, metrics):
        metrics.clear()
        metrics["vandal"] = 1.0


class HFVandal(TrainerCallback):
    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in list(logs):
            logs.pop(key)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metrics.clear()

    def on_predict(self, args, state, control, metrics, **kwargs):
        metrics.clear()


@pytest.mark.parametrize("vandal_class", [Vandal, HFVandal])
def test_one_plugins_edits_reach_no_other_plugin(tmp_path, vandal_class):
    recorder = HookRecorder()
    trainer = make_trainer(
        tmp_path / "out", plugins=[vandal_class(), recorder], eval_strategy="steps", eval_steps=4,
    )
    trainer.train()
    returned = trainer.evaluate()
    predicted = trainer.predict(RegressionDataset(4, seed=2)).metrics
    assert "test_loss" in predicted and "vandal" not in predicted
    assert recorder.of("on_predict")[0].payload["metrics"] == predicted

    logs_seen = [call.payload["logs"] for call in recorder.of("on_log")]
    expected_logs = [
        {k: v for k, v in entry.items() if k != "step"} for entry in trainer.state.log_history
    ]
    assert logs_seen == expected_logs
    assert all("vandal" not in logs for logs in logs_seen)
    train_logs = [logs for logs in logs_seen if "learning_rate" in logs]
    assert train_logs and all({"loss", "learning_rate", "epoch"} <= set(l) for l in train_logs)

    metrics_seen = [call.payload["metrics"] for call in recorder.of("on_evaluate")]
    assert len(metrics_seen) == 3  # steps 4 and 8, then the explicit evaluate()
    for metrics in metrics_seen:
        assert "eval_loss" in metrics
        assert "epoch" in metrics
        assert "vandal" not in metrics
    assert metrics_seen[-1] == returned

    assert "eval_loss" in returned and "epoch" in returned and "vandal" not in returned
    for entry in trainer.state.log_history:
        assert "vandal" not in entry
        assert "step" in entry
    assert sum("eval_loss" in entry for entry in trainer.state.log_history) == 3
    assert sum("loss" in entry for entry in trainer.state.log_history) == 4


def test_printer_callback_does_not_strip_total_flos(tmp_path):
    recorder = HookRecorder()
    trainer = make_trainer(tmp_path / "out", plugins=[recorder], disable_tqdm=True)
    output = trainer.train()
    assert "total_flos" in output.metrics
    assert "total_flos" in trainer.state.log_history[-1]
    assert "total_flos" in recorder.of("on_log")[-1].payload["logs"]


def test_printer_added_after_construction_still_leaves_total_flos(tmp_path):
    from hooktrain import PrinterCallback

    recorder = HookRecorder()
    trainer = make_trainer(tmp_path / "out", disable_tqdm=True)
    trainer.add_callback(PrinterCallback())  # a second printer, before the recorder
    trainer.add_callback(recorder)
    output = trainer.train()
    assert "total_flos" in output.metrics
    assert "total_flos" in recorder.of("on_log")[-1].payload["logs"]
