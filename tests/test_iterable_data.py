"""IterableDataset: trains with max_steps, evaluates, and resumes by skipping what it had read."""

from __future__ import annotations

import pytest
import torch

from hooktrain import Trainer
from hooktrain.errors import ConfigError
from hooktrain.testing import FailAtStep, RegressionDataset, TinyRegressor, tiny_args


class Stream(torch.utils.data.IterableDataset):
    """RegressionDataset's samples, in order, as a stream with no length."""

    def __init__(self, n: int = 16, seed: int = 0) -> None:
        self.data = RegressionDataset(n, seed=seed)
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def __iter__(self):
        return (self.data[i] for i in range(len(self.data)))


def run(tmp_path, train_dataset, **overrides) -> Trainer:
    torch.manual_seed(0)
    args = tiny_args(tmp_path, **{"max_steps": 6, "train_sampling_strategy": "sequential",
                                  "logging_steps": 1, **overrides})
    trainer = Trainer(TinyRegressor(), args, train_dataset=train_dataset,
                      eval_dataset=Stream(10, seed=1))
    return trainer


def test_a_stream_trains_as_the_same_data_read_in_order(tmp_path) -> None:
    stream = Stream()
    streamed = run(tmp_path / "a", stream)
    streamed.train()
    mapped = run(tmp_path / "b", RegressionDataset(16))
    mapped.train()
    assert streamed.state.global_step == 6
    ours = [e["loss"] for e in streamed.state.log_history if "loss" in e]
    assert ours == pytest.approx([e["loss"] for e in mapped.state.log_history if "loss" in e])
    assert stream.epochs == [0, 1]  # 4 batches of 4 per pass: steps 5 and 6 read it again
    assert streamed.evaluate()["eval_loss"] == pytest.approx(
        mapped.evaluate(RegressionDataset(10, seed=1))["eval_loss"])


def test_a_stream_without_max_steps_is_one_clear_error(tmp_path) -> None:
    trainer = run(tmp_path, Stream(), max_steps=-1)
    with pytest.raises(ConfigError, match="max_steps"):
        trainer.train()


def test_a_resumed_stream_skips_the_batches_it_had_read(tmp_path) -> None:
    reference = run(tmp_path / "reference", Stream(), save_strategy="steps", save_steps=3)
    reference.train()
    out = tmp_path / "run"
    crashed = run(out, Stream(), save_strategy="steps", save_steps=3, max_steps=6)
    crashed.add_callback(FailAtStep(4))
    with pytest.raises(RuntimeError):
        crashed.train()
    resumed = run(out, Stream(), save_strategy="steps", save_steps=3)
    resumed.train(resume_from_checkpoint=True)
    for key, value in resumed.model.state_dict().items():
        assert torch.equal(value, reference.model.state_dict()[key]), key
