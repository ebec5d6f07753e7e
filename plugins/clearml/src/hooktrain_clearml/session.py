"""Where a ClearML task goes: credentials, the offline session, continuing a task, the server.

clearml's offline mode keeps no task status and its client retries a dead server for hours;
these helpers fill both gaps (docs/integrations/clearml.md, "Where" and "Resume").
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger("hooktrain")


def credentials() -> bool:
    """Whether ClearML credentials are configured (or clearml-agent runs this process)."""
    from clearml.backend_api.session.defs import ENV_ACCESS_KEY, ENV_AUTH_TOKEN, ENV_SECRET_KEY
    from clearml.config import config_obj, running_remotely

    key = ENV_ACCESS_KEY.get() or config_obj.get("api.credentials.access_key", None)
    secret = ENV_SECRET_KEY.get() or config_obj.get("api.credentials.secret_key", None)
    return bool(ENV_AUTH_TOKEN.get() or (key and secret) or running_remotely())


def offline_dir(task_id: str | None = None) -> Path:
    """``<cache>/offline``, or a task's offline session folder in it."""
    from clearml.config import get_offline_dir

    return Path(get_offline_dir(task_id))


def record(task: Any, status: str, message: str = "") -> None:
    """Offline, clearml keeps no task status (its status calls are requests to the server,
    dropped offline): write it into the session's ``task.json`` as the server would."""
    if task.is_offline():
        task._edit(status=status, status_reason=message or status, status_message=message)


def continuable(task_id: str | None, offline: bool) -> str | None:
    """``task_id`` when the task can be continued in this mode, else ``None`` (with a warning)."""
    if not task_id:
        return None
    if offline:
        folder = offline_dir(task_id)
        if (folder / "task.json").is_file():
            return task_id
        why = f"its offline session {folder} is not here"
    elif not task_id.startswith("offline-"):
        return task_id
    else:
        why = "it was logged offline (import it with `clearml-task --import-offline-session`)"
    logger.warning("clearml: not continuing task %s from the checkpoint: %s; logging the "
                   "resumed run to a new task.", task_id, why)
    return None


def check_server(timeout: float) -> None:
    """Raise unless the ClearML API server answers within ``timeout`` seconds."""
    import requests
    from clearml.backend_api import Session

    host = Session.get_api_server_host()
    try:
        requests.get(f"{host}/debug.ping", timeout=timeout)
    except requests.exceptions.SSLError:
        pass  # it answered; clearml applies its own certificate settings
    except requests.RequestException as exc:
        raise ConnectionError(
            f"clearml: the ClearML API server {host} did not answer within {timeout:g} s "
            f"({type(exc).__name__}); clearml's own client would retry it for hours."
        ) from exc
