"""Read TensorBoard event files back with tensorboardX's own protobufs (TFRecord framing)."""

from __future__ import annotations

import struct
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tensorboardX.proto import event_pb2
from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData


@dataclass
class EventLog:
    scalars: dict[str, list[tuple[int, float]]] = field(default_factory=lambda: defaultdict(list))
    texts: dict[str, str] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)
    session_ended: bool = False
    files: list[Path] = field(default_factory=list)


def events(path: Path):
    """Each record is [length u64][crc u32][data][crc u32]."""
    with open(path, "rb") as handle:
        while header := handle.read(12):
            (length,) = struct.unpack("<Q", header[:8])
            data = handle.read(length)
            handle.read(4)
            yield event_pb2.Event.FromString(data)


def read_log_dir(log_dir: Path) -> EventLog:
    log = EventLog(files=sorted(Path(log_dir).glob("events.out.tfevents.*")))
    for path in log.files:
        for event in events(path):
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                if value.HasField("simple_value"):
                    log.scalars[value.tag].append((event.step, value.simple_value))
                elif plugin == "text":
                    log.texts[value.tag] = value.tensor.string_val[0].decode()
                elif plugin == "hparams":
                    data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    if data.HasField("session_start_info"):
                        for key, item in data.session_start_info.hparams.items():
                            log.hparams[key] = getattr(item, item.WhichOneof("kind"))
                    if data.HasField("session_end_info"):
                        log.session_ended = True
    return log
