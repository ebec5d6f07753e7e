"""TensorBoard itself reads what the plugin wrote: its own event reader, not the tests' one.

The plugin writes a logging step's scalars as one event with a value per key; this holds that
TensorBoard's ``EventAccumulator`` (what ``tensorboard --logdir`` serves) shows every value at
its step, and that tags are cleaned as tensorboardX's ``summary.scalar`` cleans them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hooktrain import hookimpl
from hooktrain.testing import logged_series, run_training
from hooktrain_tensorboard import scalar_tag

pytestmark = pytest.mark.timeout(120)
event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="the tensorboard package is in the plugin's test extra")


class OddKeys:
    """Adds keys that are not valid tags to each training log."""

    @hookimpl
    def on_pre_log(self, logs):
        if "loss" in logs:
            return {"loss per token (x100)": logs["loss"] * 100, "tokens:seen": 64.0}
        return None


def test_tensorboard_reads_every_value_at_its_step(tmp_path: Path) -> None:
    run = run_training(output_dir=tmp_path / "out", report_to=["tensorboard"],
                       eval_strategy="steps", eval_steps=4, logging_steps=2,
                       plugins=[OddKeys()])
    reader = event_accumulator.EventAccumulator(str(tmp_path / "out" / "runs" / "out"),
                                                size_guidance={"scalars": 0})
    reader.Reload()

    expected = logged_series(run.trainer.state.log_history)
    assert {"train/loss_per_token__x100_", "train/tokens_seen"} <= set(map(scalar_tag, expected))
    assert set(reader.Tags()["scalars"]) == set(map(scalar_tag, expected))
    for key, points in expected.items():
        shown = [(event.step, event.value) for event in reader.Scalars(scalar_tag(key))]
        assert [step for step, _ in shown] == [step for step, _ in points], key
        assert [value for _, value in shown] == pytest.approx(
            [value for _, value in points], rel=1e-6), key


@pytest.mark.parametrize(("key", "tag"), [
    ("train/loss", "train/loss"), ("eval/f1 score", "eval/f1_score"),
    ("/train/x", "train/x"), ("a:b(c)", "a_b_c_"),
])
def test_tags_are_cleaned_as_tensorboardx_cleans_them(key: str, tag: str) -> None:
    from tensorboardX import summary

    assert scalar_tag(key) == tag == summary.scalar(key, 1.0).value[0].tag
