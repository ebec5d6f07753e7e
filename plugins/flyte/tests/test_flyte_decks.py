"""Inside a Flyte task: the Log History and Arguments decks (also of a failed or an evaluation-only
run), the rendered ``deck.html``, and the last checkpoint synced to the task's checkpoint
location."""

from __future__ import annotations

import pytest
from flytetasks import (
    SAVING,
    TASK,
    Boom,
    as_text,
    files,
    in_task,
    read_checkpoint,
    read_table,
    seeded_model,
)

from hooktrain.testing import TinyRegressor, run_training
from hooktrain_flyte import ARGUMENTS_DECK, LOG_HISTORY_DECK, FlytePlugin

pytestmark = pytest.mark.timeout(120)

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
    assert run.plugin(FlytePlugin).in_task
    assert run.faults == []

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
