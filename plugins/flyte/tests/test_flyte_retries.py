"""Retries of a Flyte task: resuming from the previous attempt's checkpoint (``restore_checkpoint``
and HF's ``cp.restore()`` pattern), a retry told how when it does not restore, and
``restore_checkpoint`` with nothing to resume or a checkpoint already in place."""

from __future__ import annotations

import logging

import pytest
import torch
from flytekit import current_context
from flytetasks import (
    SAVING,
    Boom,
    as_text,
    files,
    in_task,
    read_checkpoint,
    read_table,
    seeded_model,
)

from hooktrain.testing import run_training
from hooktrain_flyte import LOG_HISTORY_DECK, restore_checkpoint

pytestmark = pytest.mark.timeout(120)

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
    assert not [r for r in caplog.records
                if r.name.startswith("hooktrain") if "flyte" in r.getMessage()]


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
    (record,) = [r for r in caplog.records
                 if r.name.startswith("hooktrain") if r.getMessage().startswith("flyte:")]
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
