"""``PrinterCallback``: prints each log as a dict (used when ``disable_tqdm=True``)."""

from __future__ import annotations

from typing import Any

from hooktrain.trainer_callback import TrainerCallback


class PrinterCallback(TrainerCallback):
    """Prints logs on the local main process; floats shown with 4 significant digits (HF 5.x).

    It pops ``total_flos`` from the logs as HF's does, but hooktrain hands every plugin its own
    copy, so neither ``train()``'s metrics nor any other plugin lose the key (HF loses it).
    """

    #: The order band the plugin manager puts it in (docs/architecture.md, "Order").
    hooktrain_band = "reporter"

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        logs = logs if logs is not None else {}
        logs.pop("total_flos", None)
        if state.is_local_process_zero:
            print({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in logs.items()})
