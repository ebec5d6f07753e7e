"""Running ``tests/ddp_worker.py`` under ``torchrun`` or as one process, and reading its output.

Shared by the DDP and the FSDP tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

WORKER = Path(__file__).with_name("ddp_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def env_for(out: Path) -> dict[str, str]:
    """ENV with TMPDIR beside ``out``: torchrun leaves a ``torchelastic_*`` folder per run there."""
    tmp = out.parent / f"{out.name}.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return {**ENV, "TMPDIR": str(tmp)}


def torchrun(out: Path, *options: str, nproc: int = 2, check: bool = True):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", str(WORKER), str(out), *options]
    result = subprocess.run(command, capture_output=True, text=True, env=env_for(out),
                            timeout=200)
    if check:
        assert result.returncode == 0, result.stderr[-6000:]
    return result


def single(out: Path, *options: str) -> None:
    subprocess.run([sys.executable, str(WORKER), str(out), *options], check=True,
                   capture_output=True, env=env_for(out), timeout=200)


def result(out: Path) -> dict:
    return json.loads((out / "result.json").read_text())


def weights(out: Path) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in result(out)["weights"].items()}


def losses(out: Path) -> list[tuple[int, str, float]]:
    return [(e["step"], k, v) for e in result(out)["log_history"]
            for k, v in e.items() if k in ("loss", "eval_loss", "train_loss")]
