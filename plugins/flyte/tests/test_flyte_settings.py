"""When the plugin does less: outside a Flyte task (one message, flytekit not even imported), parts
switched off by settings or by the task (no decks, no checkpoint location), the entry point, and a
failing checkpoint location isolated as a fault."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from typing import Any

import pytest
from flytekit.core.context_manager import ExecutionParameters
from flytetasks import (
    SAVING,
    as_text,
    files,
    in_task,
    plain_task,
    read_table,
    seeded_model,
)

from hooktrain import TrainerCallback
from hooktrain.testing import run_training
from hooktrain_flyte import ARGUMENTS_DECK, LOG_HISTORY_DECK, FlytePlugin, restore_checkpoint

pytestmark = pytest.mark.timeout(120)

# ---- outside a task --------------------------------------------------------------------------


def test_outside_a_task_one_message_and_training_unaffected(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="hooktrain")
    plain = run_training(output_dir=tmp_path / "plain", model=seeded_model(),
                         **{**SAVING, "report_to": "none"})
    runs = [run_training(output_dir=tmp_path / f"run{i}", model=seeded_model(), **SAVING)
            for i in range(2)]
    messages = [r for r in caplog.records
                if r.name.startswith("hooktrain") if "flyte" in r.getMessage()]
    assert len(messages) == 1 and messages[0].levelno == logging.WARNING
    assert "not inside a Flyte task" in messages[0].getMessage()
    for run in runs:
        assert not run.plugin(FlytePlugin).in_task
        assert run.faults == []
        assert run.trainer.state.log_history[:-1] == plain.trainer.state.log_history[:-1]
        assert files(tmp_path / "run0" / "checkpoint-8")["model.safetensors"] == files(
            tmp_path / "plain" / "checkpoint-8")["model.safetensors"]


OUTSIDE = """
import json, logging, sys
records = []
handler = logging.Handler()
handler.emit = records.append
logging.getLogger("hooktrain").addHandler(handler)
from hooktrain.testing import run_training
run = run_training(output_dir=sys.argv[1], report_to=["flyte"])
print(json.dumps({"steps": run.output.global_step, "flytekit": "flytekit" in sys.modules,
                  "messages": [r.getMessage() for r in records if "flyte" in r.getMessage()]}))
"""


def test_outside_flyte_flytekit_is_not_even_imported(tmp_path) -> None:
    result = subprocess.run([sys.executable, "-c", OUTSIDE, str(tmp_path / "out")],
                            capture_output=True, text=True, check=True, timeout=100)
    found = json.loads(result.stdout.splitlines()[-1])
    assert found["steps"] == 8 and found["flytekit"] is False
    assert len(found["messages"]) == 1 and "not inside a Flyte task" in found["messages"][0]


# ---- settings --------------------------------------------------------------------------------


def test_settings_switch_each_part_off(tmp_path, attempt) -> None:
    location = attempt(1)
    run, decks = in_task(lambda: run_training(
        output_dir=tmp_path / "a", plugin_settings={"flyte": {"save_log_history": "false"}},
        **SAVING))
    assert run.plugin(FlytePlugin).config.save_log_history is False
    assert LOG_HISTORY_DECK not in decks and ARGUMENTS_DECK not in decks
    assert files(location) == files(tmp_path / "a" / "checkpoint-8")

    location = attempt(2)
    run, decks = in_task(lambda: run_training(
        output_dir=tmp_path / "b", plugin_settings={"flyte": {"sync_checkpoints": False}},
        **SAVING))
    assert run.plugin(FlytePlugin).config.sync_checkpoints is False
    assert list(location.iterdir()) == []
    assert read_table(decks[LOG_HISTORY_DECK]) == as_text(run.trainer.state.log_history)


def test_a_task_without_decks_is_told_once(tmp_path, attempt, caplog) -> None:
    location = attempt(1)
    caplog.set_level(logging.WARNING, logger="hooktrain")

    def twice():
        return [run_training(output_dir=tmp_path / f"out{i}", **SAVING) for i in range(2)]

    runs, decks = in_task(twice, flyte_task=plain_task)
    assert LOG_HISTORY_DECK not in decks
    messages = [r.getMessage() for r in caplog.records
                if r.name.startswith("hooktrain") if "flyte" in r.getMessage()]
    assert messages == ["flyte: the task does not enable decks, so no Log History deck is "
                        "saved; use @task(enable_deck=True)."]
    assert files(location) == files(tmp_path / "out1" / "checkpoint-8")  # still synced


def test_a_task_without_a_checkpoint_location_still_gets_its_deck(tmp_path, monkeypatch,
                                                                  caplog) -> None:
    local_sandbox = ExecutionParameters.with_task_sandbox

    def without_checkpoint(self: ExecutionParameters) -> Any:
        builder = local_sandbox(self)
        builder.checkpoint = None  # current_context().checkpoint raises NotImplementedError
        return builder

    monkeypatch.setattr(ExecutionParameters, "with_task_sandbox", without_checkpoint)
    caplog.set_level(logging.WARNING, logger="hooktrain")
    run, decks = in_task(lambda: run_training(output_dir=tmp_path / "out", **SAVING))
    assert run.faults == []
    assert [r.getMessage() for r in caplog.records
            if r.name.startswith("hooktrain") if "flyte" in r.getMessage()] == [
        "flyte: this Flyte task has no checkpoint location (the platform gives none); "
        "checkpoints are not synced."]
    assert read_table(decks[LOG_HISTORY_DECK]) == as_text(run.trainer.state.log_history)
    assert in_task(lambda: restore_checkpoint(tmp_path / "out"))[0] is None


def test_entry_point_and_report_to_all_inside_a_task(tmp_path, attempt) -> None:
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="hooktrain.plugins") if e.name == "flyte"]
    assert ep.load() is FlytePlugin and ep.dist.name == "hooktrain-flyte"
    attempt(1)
    run, decks = in_task(lambda: run_training(output_dir=tmp_path / "out", report_to="all"))
    assert run.plugin(FlytePlugin).in_task
    assert read_table(decks[LOG_HISTORY_DECK]) == as_text(run.trainer.state.log_history)


# ---- faults ----------------------------------------------------------------------------------


def test_a_failing_checkpoint_location_is_isolated(tmp_path, attempt, caplog) -> None:
    location = attempt(1)

    class BreakLocation(TrainerCallback):
        """After the first sync, a file where the task's checkpoint location was."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 5:
                for path in location.iterdir():
                    path.unlink()
                location.rmdir()
                location.write_text("not a directory")

    caplog.set_level(logging.ERROR, logger="hooktrain")
    run, decks = in_task(lambda: run_training(output_dir=tmp_path / "out",
                                              plugins=[BreakLocation()], **SAVING))
    assert run.output.global_step == 8
    faults = run.faults
    assert [(f.plugin.split()[0], f.hook) for f in faults] == [("flyte", "on_save")]
    assert sum("flyte" in r.getMessage() for r in caplog.records
               if r.name.startswith("hooktrain")) == 1
    assert LOG_HISTORY_DECK not in decks  # switched off for the rest of the run
