"""What the ClearML plugin logs to its task: hyperparameters, every scalar, the summary, the status
of a finished run, the task id in each checkpoint, ``evaluate()`` / ``predict()`` and a second
``train()``; and the checkpoint artifacts (``log_model``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from clearmlfiles import expected_scalars, read_session, session_of, zip_members

from hooktrain.plugin import SUMMARY_KEYS
from hooktrain.testing import RegressionDataset, TinyRegressor, logged_series, run_training

pytestmark = [
    pytest.mark.timeout(120),
    # clearml's bundled pyhocon parses its configuration with pyparsing's old names
    pytest.mark.filterwarnings("ignore::DeprecationWarning:clearml.utilities.pyhocon"),
    pytest.mark.filterwarnings("ignore:'parseAll' argument is deprecated:DeprecationWarning"),
]

# ---- what is logged --------------------------------------------------------------------------


def test_hyperparameters_scalars_summary_and_status(tmp_path: Path) -> None:
    model = TinyRegressor()
    model.config = {"hidden": 8, "activation": "relu"}
    run = run_training(output_dir="out", report_to=["clearml"], model=model, learning_rate=0.02,
                       eval_strategy="steps", eval_steps=4, logging_steps=2)
    history = run.trainer.state.log_history
    session = session_of(run)

    assert session.folder.parent == tmp_path / "clearml-cache" / "offline"
    assert session.task["project_name"] == "HuggingFace Transformers"  # HF's defaults
    assert session.task["name"] == "Trainer"
    args = session.hyperparams["TrainingArguments"]
    assert args["learning_rate"] == "0.02" and args["output_dir"] == "out"
    assert args.keys() == run.trainer.args.to_sanitized_dict().keys()
    assert session.hyperparams["ModelConfig"] == {"hidden": "8", "activation": "relu"}
    # every value at every step, exactly (clearml keeps float64), once, in order, nothing else
    expected = logged_series(history)
    assert {name: session.scalar_events(name) for name in session.scalars()} == expected
    assert {"train/loss", "train/grad_norm", "train/learning_rate", "eval/loss",
            "train/train_loss"} <= set(expected)
    assert session.summary == {key: history[-1][key] for key in SUMMARY_KEYS}
    assert session.task["status"] == "completed"
    assert session.artifacts == {}
    members = zip_members(run.plugin("ClearMLPlugin").task_id)  # what an import uploads
    assert json.loads(members["task.json"])["status"] == "completed"
    assert b"train_runtime" in members["metrics.jsonl"]


def test_the_task_id_is_kept_in_every_checkpoint(tmp_path: Path) -> None:
    run = run_training(output_dir="out", report_to=["clearml"], save_strategy="steps",
                       save_steps=4)
    task_id = run.plugin("ClearMLPlugin").task_id
    assert task_id.startswith("offline-")
    for step in (4, 8):
        stored = json.loads((tmp_path / "out" / f"checkpoint-{step}" / "trainer_state.json")
                            .read_text())
        assert stored["stateful_callbacks"]["ClearMLPlugin#0"] == {"task_id": task_id}


def test_evaluate_and_predict_outside_train_log_to_the_same_task(tmp_path: Path) -> None:
    from clearml import Task

    run = run_training(output_dir="out", report_to=["clearml"], eval_strategy="no")
    task_id = run.plugin("ClearMLPlugin").task_id
    metrics = run.trainer.evaluate()
    assert Task.current_task() is None, "closed again after evaluate()"
    prediction = run.trainer.predict(RegressionDataset(4, seed=2))
    session = read_session(task_id)
    assert session.scalars()["eval/loss"] == {8: metrics["eval_loss"]}
    assert session.scalars()["test/loss"] == {8: prediction.metrics["test_loss"]}
    assert session.task["status"] == "completed"
    assert [p.name for p in session.folder.parent.iterdir() if p.is_dir()] == [task_id]


def test_train_twice_on_one_trainer_makes_two_tasks(tmp_path: Path) -> None:
    run = run_training(output_dir="out", report_to=["clearml"])
    first = run.plugin("ClearMLPlugin").task_id
    expected_first = expected_scalars(run.trainer.state.log_history)
    run.trainer.train()
    second = run.plugin("ClearMLPlugin").task_id
    assert second != first
    assert read_session(first).scalars() == expected_first
    assert read_session(second).scalars() == expected_scalars(run.trainer.state.log_history)
    assert read_session(second).task["status"] == "completed"


def test_evaluate_before_train_opens_the_task_train_continues(tmp_path: Path) -> None:
    from hooktrain import Trainer
    from hooktrain.testing import tiny_args

    trainer = Trainer(model=TinyRegressor(), args=tiny_args("out", report_to=["clearml"]),
                      train_dataset=RegressionDataset(16),
                      eval_dataset=RegressionDataset(8, seed=1))
    before = trainer.evaluate()
    trainer.train()
    session = session_of(trainer)
    assert session.scalars()["eval/loss"] == {0: before["eval_loss"]}
    assert session.scalars()["train/loss"] == expected_scalars(
        trainer.state.log_history)["train/loss"]
    assert session.hyperparams["TrainingArguments"]["num_train_epochs"] == "2"


# ---- artifacts -------------------------------------------------------------------------------


def test_log_model_uploads_every_checkpoint(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CLEARML_LOG_MODEL", "TRUE")  # HF's spelling
    run = run_training(output_dir="out", report_to=["clearml"], save_strategy="steps",
                       save_steps=4)
    session = session_of(run)
    assert set(session.artifacts) == {"checkpoint-4", "checkpoint-8"}
    for step in (4, 8):
        checkpoint = tmp_path / "out" / f"checkpoint-{step}"
        artifact = session.artifacts[f"checkpoint-{step}"]
        assert artifact["type"] == "archive"
        assert dict(artifact["display_data"])["global_step"] == str(step)
        assert Path(artifact["uri"]).is_relative_to(session.folder / "data")
        files = {p.relative_to(checkpoint).as_posix(): p.read_bytes()
                 for p in checkpoint.rglob("*") if p.is_file()}
        assert "model.safetensors" in files
        assert session.artifact_files(f"checkpoint-{step}") == files
    members = zip_members(run.plugin("ClearMLPlugin").task_id)
    assert sum(name.endswith("checkpoint-8.zip") for name in members) == 1


def test_no_artifacts_unless_asked(tmp_path: Path, caplog) -> None:
    run = run_training(output_dir="out", report_to=["clearml"], save_strategy="steps",
                       save_steps=4)
    assert session_of(run).artifacts == {}
    caplog.set_level(logging.WARNING, logger="hooktrain")
    run = run_training(output_dir="out2", report_to=["clearml"],
                       plugin_settings={"clearml": {"log_model": True}})
    assert session_of(run).artifacts == {}
    assert any("save_strategy 'no'" in r.getMessage()
               for r in caplog.records if r.name.startswith("hooktrain"))

