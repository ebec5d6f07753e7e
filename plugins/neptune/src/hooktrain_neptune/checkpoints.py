"""Checkpoint files as neptune File fields (docs/integrations/neptune.md, Checkpoints)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any


def upload_dir(run: Any, directory: Path, target: str) -> None:
    """Every file as a File field ``<target>/<relative path without suffix>``.

    ``File.from_stream`` copies the bytes into neptune's upload queue now (offline: into
    the offline run's ``upload_path``), so a checkpoint rotated away later still uploads.
    Two files with one stem in a directory (``tokenizer.json``, ``tokenizer.model``) keep
    their suffixes, so neither replaces the other.
    """
    from neptune.types import File

    files = sorted(p.relative_to(directory) for p in directory.rglob("*") if p.is_file())
    stems = Counter((p.parent, p.stem) for p in files)
    for rel in files:
        leaf = rel.stem if stems[rel.parent, rel.stem] == 1 else rel.name
        path = "/".join((target, *rel.parent.parts, leaf))
        with open(directory / rel, "rb") as stream:
            run[path].upload(File.from_stream(stream, extension=rel.suffix[1:] or "bin"))
