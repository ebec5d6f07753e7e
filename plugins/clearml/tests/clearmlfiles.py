"""Reading back a ClearML offline session: ``<cache>/offline/<task id>/`` and its ``.zip``.

``task.json`` is the exported task (hyperparameters, artifacts, status); ``metrics.jsonl`` holds
one JSON list of event dicts per line, what ``Task.import_offline_session`` sends to the server.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: ``report_single_value`` events: title "Summary", this iteration (ClearML's convention).
SUMMARY_ITERATION = -(2**31)


@dataclass
class Session:
    folder: Path
    task: dict[str, Any]
    events: list[dict[str, Any]]

    @property
    def hyperparams(self) -> dict[str, dict[str, str]]:
        """``{section: {name: value}}``; ClearML stores every value as a string."""
        return {section: {name: p["value"] for name, p in params.items()}
                for section, params in (self.task.get("hyperparams") or {}).items()}

    def scalars(self, titles: tuple[str, ...] = ("train", "eval", "test")) -> dict[str, dict]:
        """``{"title/series": {iteration: value}}``; a value reported again at the same
        iteration replaces the earlier one, as on the server (one event id per iteration)."""
        found: dict[str, dict[int, float]] = {}
        for event in self.events:
            if event.get("type") == "training_stats_scalar" and event["metric"] in titles:
                found.setdefault(f"{event['metric']}/{event['variant']}", {})[event["iter"]] = \
                    event["value"]
        return found

    def scalar_events(self, name: str) -> list[tuple[int, float]]:
        """Every event of one ``title/series`` in the order written, repeats included."""
        title, series = name.split("/", 1)
        return [(e["iter"], e["value"]) for e in self.events
                if e.get("type") == "training_stats_scalar"
                and (e["metric"], e["variant"]) == (title, series)]

    @property
    def summary(self) -> dict[str, float]:
        """``report_single_value`` values: ClearML's run summary."""
        return {e["variant"]: e["value"] for e in self.events
                if e.get("type") == "training_stats_scalar" and e["metric"] == "Summary"
                and e["iter"] == SUMMARY_ITERATION}

    @property
    def artifacts(self) -> dict[str, dict[str, Any]]:
        return {a["key"]: a for a in (self.task.get("execution") or {}).get("artifacts") or []}

    def artifact_files(self, key: str) -> dict[str, bytes]:
        """The members of a directory artifact (ClearML uploads a directory as one zip)."""
        data = Path(self.artifacts[key]["uri"]).read_bytes()
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}


def offline_folder(task_id: str) -> Path:
    from clearml.config import get_offline_dir

    return Path(get_offline_dir(task_id))


def read_session(task_id: str) -> Session:
    folder = offline_folder(task_id)
    events: list[dict[str, Any]] = []
    with open(folder / "metrics.jsonl") as handle:
        for line in handle:
            if line.strip():
                events.extend(json.loads(line))
    return Session(folder, json.loads((folder / "task.json").read_text()), events)


def zip_members(task_id: str) -> dict[str, bytes]:
    """The session's zip, what ``clearml-task --import-offline-session`` uploads."""
    with zipfile.ZipFile(offline_folder(task_id).with_suffix(".zip")) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def expected_scalars(log_history: list[dict[str, Any]]) -> dict[str, dict[int, float]]:
    """What the plugin should have reported: ``{"train/loss": {step: value}}``."""
    from hooktrain.testing import logged_series

    return {name: dict(points) for name, points in logged_series(log_history).items()}


def session_of(run):
    """The offline session of a ``run_training`` result's or a ``Trainer``'s ClearML task."""
    from hooktrain.testing import find_plugin

    return read_session(find_plugin(getattr(run, "trainer", run), "ClearMLPlugin").task_id)
