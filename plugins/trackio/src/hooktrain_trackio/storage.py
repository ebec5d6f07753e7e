"""The local SQLite store behind a trackio run: what a resumed run drops, what must be there.

trackio writes on its own thread and turns a failed write into a warning; these read and
correct its database directly (docs/integrations/trackio.md, "Resume" and "Faults").
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path
from typing import Any

logger = logging.getLogger("hooktrain")


def rewind(db: Path | None, run_id: str, step: int) -> None:
    """Drop the rows the interrupted run logged after ``step``: the resumed run logs them
    again. Best effort: a database trackio cannot open either is reported by trackio."""
    if db is None or not db.exists():
        return
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as con, con:
            con.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", (run_id, step))
    except sqlite3.Error as error:
        logger.warning("trackio: could not drop the rows logged after step %d from %s (%s); "
                       "those steps appear twice.", step, db, error)


def check_stored(db: Path, identity: dict[str, Any], last_step: int) -> None:
    """Trackio warns and goes on when a write fails: make a lost tail a plugin fault."""
    import trackio

    stored = trackio.SQLiteStorage.get_max_step_for_run(
        identity["project"], identity["name"], run_id=identity["id"])
    if stored is None or stored < last_step:
        raise RuntimeError(f"trackio stored steps up to {stored} of {last_step} in {db}: "
                           f"writes failed (see trackio's warnings).")
