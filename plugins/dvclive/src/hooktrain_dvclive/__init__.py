"""DVCLive logging for hooktrain: ``params.yaml``, ``metrics.json``, ``plots/metrics/``, artifacts.

dvclive always writes local files; it needs no account and no network. The plugin opens one
``dvclive.Live`` per Trainer (``save_dvc_exp=False``: no DVC experiment is committed behind the
user's back), sets ``live.step`` to ``state.global_step`` before every log so a step in dvclive is
a step in ``log_history``, and ends the ``Live`` at train end and on an exception. Everything is
written on the training thread; a failing write raises inside the hook, where hooktrain reports it
once and switches the plugin off.
"""

from __future__ import annotations

import csv
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hooktrain import hookimpl
from hooktrain.errors import ConfigError
from hooktrain.integration import NumericFilter, rewrite_key, run_config, save_model
from hooktrain.plugin_host.settings import from_environment

__all__ = ["DVCLivePlugin", "DVCLiveSettings"]

logger = logging.getLogger("hooktrain")


@dataclass
class DVCLiveSettings:
    """The ``[plugins.dvclive]`` table."""

    #: dvclive's output directory; default ``<output_dir>/dvclive`` (dvclive's: ``./dvclive``).
    dir: str | None = None
    #: HF's meaning: ``true`` logs the final model at train end, ``all`` every checkpoint.
    log_model: bool | str = field(default=False, metadata={"env": "HF_DVCLIVE_LOG_MODEL"})
    #: Where dvclive writes its ``dvc.yaml`` (relative to the working directory); ``false``: none.
    dvcyaml: bool | str = "dvc.yaml"

    def __post_init__(self) -> None:
        if isinstance(self.log_model, str):
            value = self.log_model.strip().lower()
            if value in ("1", "true", "yes", "on"):
                self.log_model = True
            elif value in ("", "0", "false", "no", "off"):
                self.log_model = False
            elif value == "all":
                self.log_model = "all"
            else:
                raise ConfigError(
                    f"[plugins.dvclive] log_model (or $HF_DVCLIVE_LOG_MODEL) must be true, false "
                    f"or 'all', got {self.log_model!r}."
                )


class DVCLivePlugin:
    """Logs the run with dvclive; pass ``live=`` to log into a ``dvclive.Live`` of your own."""

    settings = DVCLiveSettings

    def __init__(self, settings: DVCLiveSettings | None = None, *, live: Any = None) -> None:
        os.environ.setdefault("DVC_NO_ANALYTICS", "1")
        self.config = settings or from_environment("dvclive", DVCLiveSettings)
        if live is not None:
            from dvclive import Live

            if not isinstance(live, Live):
                raise TypeError(f"live must be a dvclive.Live, got {type(live).__name__}.")
        #: The ``dvclive.Live`` this plugin logs to (``None`` until the first event that logs).
        self.live: Any = live
        self._numeric = NumericFilter("dvclive")
        self._stored_dir: str | None = None
        self._ended = False

    # ---- resumable identity: the dvclive directory ----------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"dir": os.path.abspath(self.live.dir)} if self.live is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._stored_dir = state.get("dir")

    # ---- hooks ---------------------------------------------------------------------------

    @hookimpl
    def on_load_checkpoint(self, args: Any, state: Any) -> None:
        if self.live is not None:  # a Live of the user's (they choose resume=True) or already open
            return
        stored = self._stored_dir
        if stored and os.path.isdir(stored):
            directory = stored
        else:
            directory = self._default_dir(args)
            if stored:
                logger.warning("dvclive: %s from the checkpoint is gone; resuming into %s.",
                               stored, directory)
        self._open(directory, resume=True)
        self._rewind(state.global_step)

    @hookimpl
    def on_train_begin(self, args: Any, model: Any) -> None:
        live = self._live(args)
        self._ended = False
        live.log_params(run_config(args, model))

    @hookimpl
    def on_log(self, args: Any, state: Any, logs: dict[str, Any]) -> None:
        live = self._live(args)
        live.step = state.global_step
        for key, value in self._numeric(logs).items():
            live.log_metric(rewrite_key(key), value)
        live.next_step()  # writes metrics.json and dvc.yaml; the next log sets the step again

    @hookimpl
    def on_save(self, state: Any, checkpoint_dir: Path) -> None:
        if self.config.log_model == "all" and self.live is not None:
            # Tracked in place (dvc add): the DVC cache keeps it after checkpoint rotation.
            self.live.log_artifact(str(checkpoint_dir), type="model",
                                   name=f"checkpoint-{state.global_step}")

    @hookimpl
    def on_train_end(self, args: Any, model: Any) -> None:
        if self.live is None:
            return
        if self.config.log_model is True:
            name = "best" if args.load_best_model_at_end else "last"
            with tempfile.TemporaryDirectory(prefix="hooktrain-dvclive-") as tmp:
                path = save_model(model, Path(tmp) / name)
                # copy=True: into <dir>/artifacts/<name>, then dvc add
                self.live.log_artifact(str(path), type="model", name=name, copy=True)
        self._end()

    @hookimpl
    def on_exception(self) -> None:
        # dvclive has no run status; ending writes the summary and dvc.yaml up to the failure.
        if self.live is not None:
            self._end()

    # ---- the Live ------------------------------------------------------------------------

    def _default_dir(self, args: Any) -> str:
        return self.config.dir or os.path.join(args.output_dir, "dvclive")

    def _live(self, args: Any) -> Any:
        if self.live is None:
            self._open(self._default_dir(args), resume=False)
        return self.live

    def _open(self, directory: str, resume: bool) -> None:
        from dvclive import Live

        self.live = Live(dir=directory, resume=resume, save_dvc_exp=False,
                         dvcyaml=self.config.dvcyaml)
        logger.info("dvclive: logging to %s%s.", directory, " (resumed)" if resume else "")

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self.live.end()

    def _rewind(self, step: int) -> None:
        """Forget what the interrupted run logged after ``step``: the resumed run logs it again.

        Rows past the checkpoint's step are dropped from ``plots/metrics/*.tsv`` and the summary
        is rebuilt from the rows kept, so the history matches the resumed run's ``log_history``.
        """
        root = Path(self.live.plots_dir) / "metrics"
        summary: dict[str, Any] = {}
        for path in sorted(root.rglob("*.tsv")):
            with open(path, encoding="utf-8", newline="") as handle:
                reader = csv.DictReader(handle, delimiter="\t")
                columns, rows = reader.fieldnames or [], list(reader)
            kept = [row for row in rows if int(row["step"]) <= step]
            if len(kept) < len(rows):
                with open(path, "w", encoding="utf-8", newline="") as handle:
                    writer = csv.DictWriter(handle, columns, delimiter="\t",
                                            lineterminator=os.linesep)
                    writer.writeheader()
                    writer.writerows(kept)
            if kept:
                *parents, leaf = path.relative_to(root).with_suffix("").parts
                node = summary
                for part in parents:
                    node = node.setdefault(part, {})
                node[leaf] = float(kept[-1][path.stem])
        summary["step"] = step
        self.live.summary = summary
        self.live.step = step
