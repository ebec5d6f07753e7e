"""How the neptune tests train: the plugin switched on by ``report_to``, neptune's monitoring off
(:data:`FAST`), the plugin read back from the trainer, and its "logging offline" announcements."""

from __future__ import annotations

from typing import Any

from hooktrain.testing import run_training

#: neptune's monitoring off: no stdout capture, hardware thread, source upload or git lookup.
FAST = {"capture_stdout": False, "capture_stderr": False, "capture_hardware_metrics": False,
        "capture_traceback": False, "source_files": [], "git_ref": False}


def train(settings: dict[str, Any] | None = None, **kwargs: Any):
    kwargs.setdefault("output_dir", "out")
    kwargs.setdefault("report_to", ["neptune"])
    table = {"init_run": FAST, **(settings or {})}
    return run_training(plugin_settings={"neptune": table}, **kwargs)


def offline_messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("hooktrain")
            if "logging offline" in r.getMessage()]
