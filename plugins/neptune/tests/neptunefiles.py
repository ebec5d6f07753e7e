"""Read neptune 1.x offline runs back from what neptune stores.

Offline (the default without credentials), neptune writes an operation log per run
(``.neptune/offline/run__*/data-*.log``, JSON lines) and copies uploaded content into the run's
``upload_path``: :func:`offline_runs` replays that log. :func:`expected_series` turns
``state.log_history`` into the series neptune should hold, and :func:`metric_series` picks a
run's metric series (not neptune's own ``sys/`` and ``monitoring/`` ones) to compare with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hooktrain.testing import logged_series


@dataclass
class OfflineRun:
    """One offline run's operation log, replayed: the fields, series and files it ends with."""

    directory: Path
    ops: list[dict[str, Any]]
    fields: dict[str, Any] = field(default_factory=dict)
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # path -> (ext, bytes)


def offline_runs(root: Path) -> list[OfflineRun]:
    """Every offline run under ``root/.neptune``, oldest first."""
    found = []
    for directory in (root / ".neptune" / "offline").glob("run__*"):
        meta = json.loads((directory / "metadata.json").read_text())
        assert meta["mode"] == "offline" and meta["containerType"] == "run"
        logs = sorted(directory.glob("data-*.log"), key=lambda p: int(p.stem.split("-")[1]))
        ops = [json.loads(line)["obj"] for log in logs
               for line in log.read_text().splitlines() if line.strip()]
        run = OfflineRun(directory, ops)
        for op in ops:
            path, kind = "/".join(op["path"]), op["type"]
            if kind.startswith("Assign"):
                run.fields[path] = op["value"]
            elif kind == "LogFloats":
                points = [(v["step"], v["value"]) for v in op["values"]]
                run.series.setdefault(path, []).extend(points)
            elif kind == "UploadFile":
                source = (Path(op["file_path"]) if op["file_path"]
                          else directory / "upload_path" / op["tmp_file_name"])
                run.files[path] = (op["ext"], source.read_bytes())
            elif kind == "DeleteAttribute":
                for store in (run.fields, run.series, run.files):
                    for key in [k for k in store if k == path or k.startswith(path + "/")]:
                        del store[key]
        found.append((meta["createdAt"], run))
    return [run for _, run in sorted(found, key=lambda item: item[0])]


def expected_series(history: list[dict], base: str = "finetuning", after: int = -1) -> dict:
    """log_history as neptune series: one value per step (a train and an eval log at one step
    both carry the same epoch, which neptune's increasing steps keep once)."""
    expected = {}
    for name, points in logged_series(history).items():
        kept: list[tuple[int, float]] = []
        for step, value in points:
            if kept and step <= kept[-1][0]:
                assert (step, value) == kept[-1], name
                continue
            if step > after:
                kept.append((step, value))
        if kept:
            expected[f"{base}/{name}" if base else name] = kept
    return expected


def metric_series(run: OfflineRun, base: str = "finetuning") -> dict:
    return {k: v for k, v in run.series.items() if not k.startswith(("sys/", "monitoring/"))
            and (not base or k.startswith(base + "/"))}
