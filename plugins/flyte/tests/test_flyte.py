"""The Flyte plugin against real flytekit: a real ``@task`` run in process (flytekit's local
execution), the task's decks read back from ``current_context().decks`` and the rendered
``deck.html``, the synced checkpoint read back with ``SyncCheckpoint(checkpoint_src=...)``."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import torch
from flytekit import current_context, task
from flytekit.core.checkpointer import SyncCheckpoint
from flytekit.core.context_manager import ExecutionParameters

from hooktrain import TrainerCallback
from hooktrain.testing import TinyRegressor, run_training
from hooktrain_flyte import ARGUMENTS_DECK, LOG_HISTORY_DECK, FlytePlugin, restore_checkpoint

pytestmark = pytest.mark.timeout(120)

# ---- running code inside a real Flyte task ---------------------------------------------------

TASK: dict[str, Any] = {}  # the body the next task execution runs; what it left behind


@task(enable_deck=True, deck_fields=[])  # flytekit's own decks (inputs, dependencies, ...) cost
def deck_task() -> None:                   # seconds per call: only the plugin's decks here
    _run_body()


@task
def plain_task() -> None:  # enable_deck is off by default
    _run_body()


def _run_body() -> None:
    try:
        TASK["result"] = TASK.pop("body")()
    finally:
        TASK["decks"] = {deck.name: deck.html for deck in current_context().decks}


def in_task(body: Callable[[], Any], flyte_task: Any = deck_task) -> tuple[Any, dict[str, str]]:
    """Run ``body`` inside ``flyte_task`` called directly (in process); its result and decks."""
    TASK.clear()
    TASK["body"] = body
    flyte_task()
    return TASK["result"], TASK["decks"]


@pytest.fixture
def attempt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """``attempt(n, prev)``: the next task execution is attempt ``n`` of one Flyte task.

    Its checkpoint is written to ``<tmp>/cp/attempt-<n>`` and restored from ``prev`` (the previous
    attempt's location), as the platform passes ``--checkpoint-path`` and ``--prev-checkpoint``
    to a retried task; flytekit's local execution otherwise gives each call a fresh location.
    """
    local_sandbox = ExecutionParameters.with_task_sandbox

    def use(n: int, prev: Path | None = None) -> Path:
        dest = tmp_path / "cp" / f"attempt-{n}"
        dest.mkdir(parents=True)

        def with_task_sandbox(self: ExecutionParameters) -> Any:
            builder = local_sandbox(self)
            builder.checkpoint = SyncCheckpoint(checkpoint_dest=str(dest),
                                                checkpoint_src=str(prev) if prev else None)
            return builder

        monkeypatch.setattr(ExecutionParameters, "with_task_sandbox", with_task_sandbox)
        return dest

    return use


# ---- reading back ----------------------------------------------------------------------------


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def read_table(html: str) -> list[dict[str, str]]:
    """The one HTML table in a deck as rows ``{column: text}``, empty cells left out."""
    parser = _Tables()
    parser.feed(html)
    (table,) = parser.tables
    header, *rows = table
    return [{key: text for key, text in zip(header, row) if text != ""} for row in rows]


def as_text(entries: list[dict[str, Any]]) -> list[dict[str, str]]:
    """What a table of ``entries`` shows: floats in full (``repr``), the rest as ``str``."""
    return [{k: repr(v) if isinstance(v, float) else str(v) for k, v in e.items()} for e in entries]


def read_checkpoint(location: Path, into: Path) -> Path:
    """The files at a task's checkpoint location, as a retried task gets them."""
    into.mkdir(parents=True)
    restored = SyncCheckpoint(checkpoint_dest=str(into.parent / "unused"),
                              checkpoint_src=str(location)).restore(into)
    assert restored is not None
    return restored


def files(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def seeded_model() -> TinyRegressor:
    torch.manual_seed(0)
    return TinyRegressor()


class Boom(TrainerCallback):
    """Fails the training at ``global_step == at``; keeps the state it saw."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.state: Any = None

    def on_step_end(self, args, state, control, **kwargs):
        self.state = state
        if state.global_step == self.at:
            raise RuntimeError("boom")


def flyte_plugin(run: Any) -> FlytePlugin:
    (plugin,) = [p for p in run.trainer.callbacks if isinstance(p, FlytePlugin)]
    return plugin


SAVING = {"report_to": ["flyte"], "save_strategy": "steps", "save_steps": 4}

# ---- inside a task: decks and checkpoints ----------------------------------------------------


def test_log_history_deck_and_checkpoints_inside_a_task(tmp_path, attempt, flyte_sandbox) -> None:
    location = attempt(1)
    model = seeded_model()
    model.config = {"hidden": 8, "activation": "relu"}

    def body():
        run = run_training(output_dir=tmp_path / "out", model=model, learning_rate=0.02,
                           eval_strategy="steps", eval_steps=4, **SAVING)
        run.trainer.evaluate()  # after train(): the deck follows log_history
        return run

    run, decks = in_task(body)
    history = run.trainer.state.log_history
    assert flyte_plugin(run).in_task
    assert run.trainer.callback_handler.faults == []

    # the deck's table is log_history, every value in full, in order
    rows = read_table(decks[LOG_HISTORY_DECK])
    assert rows == as_text(history)
    assert [float(r["loss"]) for r in rows if "loss" in r] == [e["loss"] for e in history
                                                               if "loss" in e]
    assert [int(r["step"]) for r in rows] == [2, 4, 4, 6, 8, 8, 8, 8]
    assert {"train_runtime", "train_loss", "total_flos"} <= set(rows[-2])  # the summary
    assert "eval_loss" in rows[-1]  # evaluate() after train()
    # the run's parameters: training arguments and the model's config
    arguments = {r["argument"]: r.get("value", "") for r in read_table(decks[ARGUMENTS_DECK])}
    assert arguments["learning_rate"] == "0.02"
    assert arguments["save_steps"] == "4"
    assert arguments["model_config/activation"] == "relu"

    # flytekit rendered the task's decks into deck.html, ours among them
    (rendered,) = [p for p in flyte_sandbox.rglob("deck.html")
                   if str(history[-1]["eval_loss"]) in p.read_text()]
    html = rendered.read_text()
    assert LOG_HISTORY_DECK in html and ARGUMENTS_DECK in html and "model_config/activation" in html

    # the task's checkpoint holds the last checkpoint, byte for byte
    restored = read_checkpoint(location, tmp_path / "restored")
    assert files(restored) == files(tmp_path / "out" / "checkpoint-8")


def test_a_failing_training_leaves_the_history_up_to_the_failure(tmp_path, attempt) -> None:
    location = attempt(1)
    boom = Boom(at=7)
    with pytest.raises(RuntimeError, match="boom"):
        in_task(lambda: run_training(output_dir=tmp_path / "out", plugins=[boom], **SAVING))
    history = boom.state.log_history
    assert [e["step"] for e in history] == [2, 4, 6]
    assert read_table(TASK["decks"][LOG_HISTORY_DECK]) == as_text(history)
    assert files(read_checkpoint(location, tmp_path / "restored")) == files(
        tmp_path / "out" / "checkpoint-4")


def test_an_evaluation_only_task_gets_the_deck_too(tmp_path, attempt) -> None:
    from hooktrain import Trainer
    from hooktrain.testing import RegressionDataset, tiny_args

    attempt(1)

    def evaluate():
        trainer = Trainer(TinyRegressor(), tiny_args(tmp_path / "out", report_to=["flyte"]),
                          eval_dataset=RegressionDataset(8))
        trainer.evaluate()
        return trainer

    trainer, decks = in_task(evaluate)
    assert len(trainer.state.log_history) == 1
    assert read_table(decks[LOG_HISTORY_DECK]) == as_text(trainer.state.log_history)


# ---- retries ---------------------------------------------------------------------------------


def test_a_retried_task_resumes_from_the_previous_attempts_checkpoint(tmp_path, attempt,
                                                                       caplog) -> None:
    uninterrupted = run_training(output_dir=tmp_path / "reference", model=seeded_model(),
                                 **{**SAVING, "report_to": "none"})

    # attempt 1 saves checkpoint-4 and is preempted at step 6
    first = attempt(1)
    with pytest.raises(RuntimeError, match="boom"):
        in_task(lambda: run_training(output_dir=tmp_path / "pod1", model=seeded_model(),
                                     plugins=[Boom(at=6)], **SAVING))

    # attempt 2, on a fresh machine: restores it, resumes, fails again before its next save
    second = attempt(2, prev=first)

    def resume_and_fail():
        restored = restore_checkpoint(tmp_path / "pod2")
        assert restored == tmp_path / "pod2" / "checkpoint-4"
        assert restore_checkpoint(tmp_path / "pod2") == restored  # once per task
        run_training(output_dir=tmp_path / "pod2", plugins=[Boom(at=7)],
                     resume_from_checkpoint=restored, **SAVING)

    with pytest.raises(RuntimeError, match="boom"):
        in_task(resume_and_fail)
    # its own location already holds the checkpoint it resumed from
    assert files(read_checkpoint(second, tmp_path / "second")) == files(
        tmp_path / "pod1" / "checkpoint-4")

    # attempt 3 continues from there to the end: the same weights as the uninterrupted run
    attempt(3, prev=second)

    def resume():
        restore_checkpoint(tmp_path / "pod3")
        return run_training(output_dir=tmp_path / "pod3", resume_from_checkpoint=True, **SAVING)

    caplog.set_level(logging.WARNING, logger="hooktrain")
    run, decks = in_task(resume)
    assert run.recorder.of("on_load_checkpoint")[0].global_step == 4
    expected = uninterrupted.trainer.model.state_dict()
    for name, tensor in run.trainer.model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    losses = [(e["step"], e["loss"]) for e in run.trainer.state.log_history if "loss" in e]
    assert losses == [(e["step"], e["loss"])
                      for e in uninterrupted.trainer.state.log_history if "loss" in e]
    assert read_table(decks[LOG_HISTORY_DECK]) == as_text(run.trainer.state.log_history)
    assert not [r for r in caplog.records if r.name.startswith("hooktrain") if "flyte" in r.getMessage()]


def test_hfs_pattern_resume_from_the_restored_location_works_too(tmp_path, attempt) -> None:
    """HF's FlyteCallback example: ``trainer.train(resume_from_checkpoint=cp.restore())``."""
    first = attempt(1)
    with pytest.raises(RuntimeError, match="boom"):
        in_task(lambda: run_training(output_dir=tmp_path / "pod1", plugins=[Boom(at=6)],
                                     **SAVING))
    attempt(2, prev=first)
    run, _ = in_task(lambda: run_training(
        output_dir=tmp_path / "pod2",
        resume_from_checkpoint=str(current_context().checkpoint.restore()), **SAVING))
    assert run.recorder.of("on_load_checkpoint")[0].global_step == 4
    assert run.output.global_step == 8


def test_a_retry_that_does_not_restore_is_told_how(tmp_path, attempt, caplog) -> None:
    first = attempt(1)
    in_task(lambda: run_training(output_dir=tmp_path / "pod1", **SAVING))
    attempt(2, prev=first)
    caplog.set_level(logging.WARNING, logger="hooktrain")
    run, _ = in_task(lambda: run_training(output_dir=tmp_path / "pod2", **SAVING))
    assert run.output.global_step == 8
    (record,) = [r for r in caplog.records if r.name.startswith("hooktrain") if r.getMessage().startswith("flyte:")]
    assert "starts from step 0" in record.getMessage()
    assert "restore_checkpoint(args.output_dir)" in record.getMessage()


def test_restore_checkpoint_when_there_is_nothing_to_resume(tmp_path, attempt, caplog) -> None:
    caplog.set_level(logging.INFO, logger="hooktrain")
    assert restore_checkpoint(tmp_path / "outside") is None  # no Flyte task
    attempt(1)
    assert in_task(lambda: restore_checkpoint(tmp_path / "first"))[0] is None  # first attempt
    never_written = tmp_path / "never-written"
    for prev in (never_written, tmp_path / "cp" / "attempt-1"):  # missing, empty
        attempt(len(list((tmp_path / "cp").iterdir())) + 1, prev=prev)
        caplog.clear()
        assert in_task(lambda: restore_checkpoint(tmp_path / "out"))[0] is None
        assert "synced no checkpoint" in caplog.text
    # not a hooktrain checkpoint (a task's own cp.write): left alone, training starts afresh
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "_dst_cp").write_bytes(b"bytes")
    attempt(9, prev=foreign)
    caplog.clear()
    assert in_task(lambda: restore_checkpoint(tmp_path / "out"))[0] is None
    assert "not a hooktrain checkpoint" in caplog.text
    assert list((tmp_path / "out").iterdir()) == []  # no staging directory left behind


def test_restore_checkpoint_keeps_a_checkpoint_already_there(tmp_path, attempt) -> None:
    first = attempt(1)
    in_task(lambda: run_training(output_dir=tmp_path / "out", **SAVING))
    before = files(tmp_path / "out" / "checkpoint-8")
    (tmp_path / "out" / "checkpoint-8" / "note").write_text("mine")
    attempt(2, prev=first)
    assert in_task(lambda: restore_checkpoint(tmp_path / "out"))[0] == tmp_path / "out" / \
        "checkpoint-8"
    assert files(tmp_path / "out" / "checkpoint-8") == {**before, "note": b"mine"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["checkpoint-4",
                                                                     "checkpoint-8"]


def test_restore_checkpoint_after_the_task_restored_it_itself(tmp_path, attempt) -> None:
    first = attempt(1)
    in_task(lambda: run_training(output_dir=tmp_path / "pod1", **SAVING))
    attempt(2, prev=first)

    def both():
        own = current_context().checkpoint.restore()  # gone with the task's checkpoint object
        return files(own), restore_checkpoint(tmp_path / "pod2")

    (own, restored), _ = in_task(both)
    assert restored == tmp_path / "pod2" / "checkpoint-8"
    assert files(restored) == own == files(tmp_path / "pod1" / "checkpoint-8")
    assert [p.name for p in (tmp_path / "pod2").iterdir()] == ["checkpoint-8"]


# ---- outside a task --------------------------------------------------------------------------


def test_outside_a_task_one_message_and_training_unaffected(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="hooktrain")
    plain = run_training(output_dir=tmp_path / "plain", model=seeded_model(),
                         **{**SAVING, "report_to": "none"})
    runs = [run_training(output_dir=tmp_path / f"run{i}", model=seeded_model(), **SAVING)
            for i in range(2)]
    messages = [r for r in caplog.records if r.name.startswith("hooktrain") if "flyte" in r.getMessage()]
    assert len(messages) == 1 and messages[0].levelno == logging.WARNING
    assert "not inside a Flyte task" in messages[0].getMessage()
    for run in runs:
        assert not flyte_plugin(run).in_task
        assert run.trainer.callback_handler.faults == []
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
    assert flyte_plugin(run).config.save_log_history is False
    assert LOG_HISTORY_DECK not in decks and ARGUMENTS_DECK not in decks
    assert files(location) == files(tmp_path / "a" / "checkpoint-8")

    location = attempt(2)
    run, decks = in_task(lambda: run_training(
        output_dir=tmp_path / "b", plugin_settings={"flyte": {"sync_checkpoints": False}},
        **SAVING))
    assert flyte_plugin(run).config.sync_checkpoints is False
    assert list(location.iterdir()) == []
    assert read_table(decks[LOG_HISTORY_DECK]) == as_text(run.trainer.state.log_history)


def test_a_task_without_decks_is_told_once(tmp_path, attempt, caplog) -> None:
    location = attempt(1)
    caplog.set_level(logging.WARNING, logger="hooktrain")

    def twice():
        return [run_training(output_dir=tmp_path / f"out{i}", **SAVING) for i in range(2)]

    runs, decks = in_task(twice, flyte_task=plain_task)
    assert LOG_HISTORY_DECK not in decks
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("hooktrain") if "flyte" in r.getMessage()]
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
    assert run.trainer.callback_handler.faults == []
    assert [r.getMessage() for r in caplog.records if r.name.startswith("hooktrain") if "flyte" in r.getMessage()] == [
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
    assert flyte_plugin(run).in_task
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
    faults = run.trainer.callback_handler.faults
    assert [(f.plugin.split()[0], f.hook) for f in faults] == [("flyte", "on_save")]
    assert sum("flyte" in r.getMessage() for r in caplog.records if r.name.startswith("hooktrain")) == 1
    assert LOG_HISTORY_DECK not in decks  # switched off for the rest of the run
