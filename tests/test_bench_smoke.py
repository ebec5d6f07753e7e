"""The benchmarks run end to end in seconds (``--smoke``), so they never rot. No timing asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "run.py"


@pytest.mark.timeout(300)
def test_benchmarks_smoke_run(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, str(BENCH), "--smoke", "--json", str(out)],
                            capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["tiny"]["hooktrain"]["ratio"] > 0
    assert report["medium"]["hooktrain"]["ratio"] > 0
    assert set(report["dispatch us/event"]) >= {"0 pluggy plugins", "50 pluggy plugins",
                                                 "1 TrainerCallback (bridge)"}
    assert report["startup s"]["plugins imports torch"] is False
    assert report["host syncs per 100 non-logging steps"] == 0
    assert "tiny: plain loop" in result.stdout and "host syncs" in result.stdout


@pytest.mark.timeout(300)
def test_fsdp_memory_benchmark_smoke_run(tmp_path: Path) -> None:
    """A small width: the script runs end to end, and what each process holds is exact bytes,
    so the halving under FSDP with 2 processes is asserted (no memory peak is)."""
    out = tmp_path / "memory.json"
    script = BENCH.with_name("fsdp_memory.py")
    result = subprocess.run([sys.executable, str(script), "--nproc", "2", "--width", "256",
                             "--json", str(out)], capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stderr
    rows = {row["run"]: row for row in json.loads(out.read_text())}
    assert set(rows) == {"one process", "DDP x2", "FSDP x2"}
    assert rows["DDP x2"]["params_mb"] == rows["one process"]["params_mb"]
    for key in ("params_mb", "grads_mb", "optimizer_mb"):
        assert rows["FSDP x2"][key] == pytest.approx(rows["DDP x2"][key] / 2, rel=0.05), key
