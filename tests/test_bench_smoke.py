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
