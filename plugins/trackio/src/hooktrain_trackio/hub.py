"""A bound on trackio's Hugging Face Hub user lookup, which has no timeout of its own."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator

logger = logging.getLogger("hooktrain")


@contextlib.contextmanager
def hub_bounded(timeout: float, space_id: str | None) -> Iterator[None]:
    """Bound the user lookup (huggingface_hub's ``whoami``, no timeout) of ``trackio.init``.

    Asked first on a daemon thread for at most ``timeout`` s; the answer is cached, so
    trackio's own call returns at once. Unanswered: a Space is an error, a local run is
    created with huggingface_hub's offline switch on (no user name in its config).
    """
    import huggingface_hub
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or huggingface_hub.get_token() is None:
        yield
        return
    answered = threading.Event()

    def ask() -> None:
        with contextlib.suppress(Exception):  # trackio takes a failure as "no user name"
            huggingface_hub.whoami(cache=True)
        answered.set()

    threading.Thread(target=ask, name="hooktrain-trackio-whoami", daemon=True).start()
    if answered.wait(timeout):
        yield
        return
    if space_id or os.environ.get("TRACKIO_SPACE_ID"):
        raise TimeoutError(f"trackio: the Hugging Face Hub did not answer within {timeout:g} s; "
                           f"cannot log to a Space.")
    logger.warning("trackio: the Hugging Face Hub did not answer within %g s; the local run "
                   "is created without your user name.", timeout)
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = False
