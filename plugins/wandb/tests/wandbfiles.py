"""Read W&B offline runs back from wandb's transaction log, ``run-<id>.wandb``.

Offline runs write no ``config.yaml`` or ``wandb-summary.json``; everything is in the ``.wandb``
file: LevelDB-log framing of ``wandb_internal_pb2.Record`` messages (the reader from
``shared/integration-probes/wandb.py``; wandb >= 0.19 ships no Python reader). A run that was
resumed has one offline run folder per segment, all with the same run id.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768

OFFLINE = {
    "WANDB_MODE": "offline",           # no API key, no login prompt, no upload
    "WANDB_SILENT": "true",
    "WANDB_ERROR_REPORTING": "false",  # no Sentry
    "WANDB_DISABLE_GIT": "true",
    "WANDB_DISABLE_CODE": "true",
    "WANDB_CONSOLE": "off",
}


def offline_environment(root: Path) -> dict[str, str]:
    """wandb offline with every directory under ``root`` (docs/integrations/wandb.md, Tests)."""
    return {**OFFLINE, "WANDB_DIR": str(root), "WANDB_CONFIG_DIR": str(root / "config"),
            "WANDB_CACHE_DIR": str(root / "cache"), "WANDB_DATA_DIR": str(root / "data")}


def records(path: Path) -> Iterator[pb.Record]:
    """A 7-byte header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB blocks of chunks
    ``[crc u32][length u16][type u8][data]``; type 1 = full, 2 = first, 3 = middle, 4 = last."""
    data = Path(path).read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), (ident, hex(magic), version)
    pos, buffer = 7, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # block trailer
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:  # zero padding
            pos += left
            continue
        if pos + 7 + length > len(data):  # not flushed yet
            return
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            yield pb.Record.FromString(chunk)
        elif kind == 2:
            buffer = chunk
        elif kind == 3:
            buffer += chunk
        elif kind == 4:
            yield pb.Record.FromString(buffer + chunk)
            buffer = b""


def _put(target: dict[str, Any], item: Any, value: Any) -> None:
    """``key`` or ``nested_key`` (a path: a histogram is ``["gradients/w", "bins"]``)."""
    path = [item.key] if item.key else list(item.nested_key)
    for name in path[:-1]:
        target = target.setdefault(name, {})
    target[path[-1]] = value


def _drop(target: dict[str, Any], item: Any) -> None:
    path = [item.key] if item.key else list(item.nested_key)
    for name in path[:-1]:
        target = target.get(name, {})
    target.pop(path[-1], None)


@dataclass
class Segment:
    """One ``wandb.init`` ... ``finish`` of a run: one offline run folder."""

    path: Path
    run_id: str = ""
    project: str = ""
    entity: str = ""
    name: str = ""
    start_time: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    artifacts: list[Any] = field(default_factory=list)  # pb.ArtifactRecord
    metrics: list[Any] = field(default_factory=list)  # pb.MetricRecord (define_metric)
    exit_code: int | None = None  # None: the run was not finished


def read_run_file(path: Path) -> Segment:
    segment = Segment(path=Path(path))
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            segment.run_id, segment.project, segment.entity = run.run_id, run.project, run.entity
            segment.name = run.display_name
            segment.start_time = run.start_time.ToMicroseconds() / 1e6
            for item in run.config.update:
                _put(segment.config, item, json.loads(item.value_json))
        elif kind == "config":
            for item in record.config.update:
                _put(segment.config, item, json.loads(item.value_json))
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _put(row, item, json.loads(item.value_json))
            segment.history.append(row)
        elif kind == "summary":
            for item in record.summary.update:
                _put(segment.summary, item, json.loads(item.value_json))
            for item in record.summary.remove:
                _drop(segment.summary, item)
        elif kind == "artifact":
            segment.artifacts.append(record.artifact)
        elif kind == "metric":
            segment.metrics.append(record.metric)
        elif kind == "exit":
            segment.exit_code = record.exit.exit_code
    return segment


def read_run(wandb_dir: Path, run_id: str, wait: float = 10.0) -> list[Segment]:
    """Every segment of run ``run_id`` under ``<wandb_dir>/wandb``, oldest first.

    ``run.finish()`` returns before wandb-core has flushed the file, so this waits up to ``wait``
    seconds for every segment's exit record.
    """
    deadline = time.monotonic() + wait
    while True:
        root = Path(wandb_dir, "wandb")
        folders = [*root.glob(f"offline-run-*-{run_id}"), *root.glob(f"offline-run-*-{run_id}-*")]
        segments = [read_run_file(folder / f"run-{run_id}.wandb") for folder in folders]
        done = all(s.exit_code is not None for s in segments)
        if (segments and done) or time.monotonic() > deadline:
            return sorted(segments, key=lambda s: (s.start_time, len(s.path.parent.name),
                                                   s.path.parent.name))
        time.sleep(0.05)
