"""Under torchrun the TensorBoard plugin writes from world rank zero only (the manager gates it)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from eventfiles import read_log_dir

SCRIPT = textwrap.dedent("""
    import sys, torch
    from hooktrain.testing import run_training
    torch.set_num_threads(1)
    run = run_training(output_dir=sys.argv[1], report_to=["tensorboard"], ddp_timeout=60,
                       per_device_train_batch_size=2, train_size=16, num_train_epochs=1)
""")


@pytest.mark.timeout(240)
def test_event_files_come_from_one_process(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         str(script), str(out)],
        capture_output=True, text=True, env=env, timeout=200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    event_files = list(out.rglob("events.out.tfevents.*"))
    assert len(event_files) == 1
    log = read_log_dir(event_files[0].parent)
    assert [step for step, _ in log.scalars["train/loss"]] == [2, 4]
