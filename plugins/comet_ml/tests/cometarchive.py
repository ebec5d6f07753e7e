"""Read comet's offline archives (``<key>[-suffix].zip``) back, as comet's uploader would."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Archive:
    path: Path
    meta: dict[str, Any]  # experiment.json
    parameters: dict[str, Any] = field(default_factory=dict)  # logged by hand, not comet's own
    metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    epochs: dict[str, list[float | None]] = field(default_factory=dict)
    others: dict[str, Any] = field(default_factory=dict)
    assets: dict[str, bytes] = field(default_factory=dict)  # fileName -> bytes
    asset_steps: dict[str, int | None] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.meta["offline_id"]


def read_archive(path: Path) -> Archive:
    with zipfile.ZipFile(path) as archive:
        result = Archive(path, json.loads(archive.read("experiment.json")))
        for line in archive.read("messages.json").decode().splitlines():
            if not line.strip():
                continue
            message = json.loads(line)
            kind, payload = message["type"], message["payload"]
            if kind == "parameter_msg":
                param = payload.get("param") or payload.get("params")  # lists come as "params"
                if param["source"] == "manual":
                    result.parameters[param["paramName"]] = param["paramValue"]
            elif kind == "metric_msg":
                metric = payload["metric"]
                result.metrics.setdefault(metric["metricName"], []).append(
                    (metric["step"], metric["metricValue"]))
                result.epochs.setdefault(metric["metricName"], []).append(metric.get("epoch"))
            elif kind == "log_other":
                result.others[payload["key"]] = payload["value"]
            elif kind == "file_upload" and payload.get("upload_type") == "asset":
                name = payload["additional_params"]["fileName"]
                result.assets[name] = archive.read(payload["file_path"])
                result.asset_steps[name] = payload["additional_params"].get("step")
    return result


def read_archives(directory: Path) -> list[Archive]:
    """Every archive in ``directory``, oldest first."""
    paths = sorted(Path(directory).glob("*.zip"), key=lambda p: p.stat().st_mtime_ns)
    return [read_archive(p) for p in paths]
