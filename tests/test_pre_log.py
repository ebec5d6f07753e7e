"""on_pre_log: plugins add values to a log before it is recorded, so every plugin sees them."""

from __future__ import annotations

import logging

from hooktrain import TrainerCallback, hookimpl


class Energy:
    """Adds a running count to every log, and a total to the final summary."""

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def on_pre_log(self, logs):
        self.calls += 1
        added = {"energy_calls": self.calls}
        if "train_runtime" in logs:
            added["energy_kwh"] = 0.25
        return added


def test_added_values_reach_history_every_plugin_and_the_return_value(run_training) -> None:
    run = run_training(plugins=[Energy()], logging_steps=2, eval_strategy="steps", eval_steps=4)
    history = run.trainer.state.log_history
    assert [entry["energy_calls"] for entry in history] == list(range(1, len(history) + 1))
    assert history[-1]["energy_kwh"] == 0.25 and "energy_kwh" not in history[-2]
    seen = [call.payload["logs"] for call in run.recorder.of("on_log")]
    assert [logs["energy_calls"] for logs in seen] == list(range(1, len(history) + 1))
    assert run.output.metrics["energy_kwh"] == 0.25
    logged = len(history)
    metrics = run.trainer.evaluate()
    assert metrics["energy_calls"] == logged + 1


def test_an_existing_key_is_kept_with_a_warning(run_training, caplog) -> None:
    class Clobber:
        @hookimpl
        def on_pre_log(self):
            return {"epoch": -1.0}  # every log already has an epoch

    caplog.set_level(logging.WARNING, logger="hooktrain")
    run = run_training(plugins=[Clobber()], logging_steps=2)
    assert all(entry["epoch"] >= 0 for entry in run.trainer.state.log_history)
    assert any("'epoch'" in r.getMessage() for r in caplog.records)


def test_hf_style_callback_may_add_values_too(run_training) -> None:
    class Throughput(TrainerCallback):
        def on_pre_log(self, args, state, control, logs=None, **kwargs):
            return {"seen_keys": len(logs)}

    run = run_training(plugins=[Throughput()], logging_steps=4)
    first = run.trainer.state.log_history[0]
    assert first["seen_keys"] == len(first) - 2  # without itself and "step"
