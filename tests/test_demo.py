"""``hooktrain demo``: the digits MLP reaches >= 90 % held-out accuracy, from Python and the CLI."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytest.importorskip("sklearn")

from hooktrain import demo  # noqa: E402

HEADER = re.compile(r"^\s*epoch\s+train loss\s+eval loss\s+accuracy\s*$")
ROW = re.compile(r"^\s*(\d+\.\d)\s+(\d+\.\d{4}|-)\s+(\d+\.\d{4}|-)\s+(\d+\.\d{4}|-)\s*$")


def table_rows(stdout: str) -> list[tuple[float, str, str, str]]:
    lines = stdout.splitlines()
    headers = [i for i, line in enumerate(lines) if HEADER.match(line)]
    assert len(headers) == 1, stdout
    rows = []
    for line in lines[headers[0] + 1:]:
        match = ROW.match(line)
        if not match:
            break
        rows.append((float(match[1]), match[2], match[3], match[4]))
    return rows


def check_table(stdout: str, epochs: int) -> float:
    rows = table_rows(stdout)
    assert [r[0] for r in rows] == [float(e) for e in range(1, epochs + 1)], stdout
    for _, train_loss, eval_loss, accuracy in rows:
        assert "-" not in (train_loss, eval_loss, accuracy)
        assert 0.0 <= float(accuracy) <= 1.0
    held_out = [line for line in stdout.splitlines() if line.startswith("Held-out accuracy")]
    assert len(held_out) == 1, stdout
    return float(held_out[0].split()[2])


def test_demo_run_reaches_90_percent(tmp_path, capsys):
    accuracy = demo.run(output_dir=str(tmp_path / "digits"), epochs=8, report_to="none")
    assert accuracy >= 0.90
    printed = check_table(capsys.readouterr().out, 8)
    assert printed == pytest.approx(accuracy, abs=1e-4)


def test_demo_cli(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "hooktrain.cli", "demo", "--output-dir", str(tmp_path / "digits"),
         "--report-to", "none"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    accuracy = check_table(result.stdout, 8)  # --epochs defaults to 8
    assert accuracy >= 0.90
    assert (tmp_path / "digits").is_dir()


def test_demo_is_reproducible(tmp_path, capsys):
    """Seeded before the model is built, so two runs print the same table."""
    tables = []
    for name in ("a", "b"):
        demo.run(output_dir=str(tmp_path / name), epochs=1, report_to="none")
        tables.append([line for line in capsys.readouterr().out.splitlines()
                       if line.strip().startswith("1.0")])
    assert tables[0] == tables[1] and len(tables[0]) == 1
