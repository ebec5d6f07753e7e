"""DVCLive logging for hooktrain: ``params.yaml``, ``metrics.json``, ``plots/metrics/``, artifacts.

dvclive always writes local files; it needs no account and no network. The plugin's "run" is one
``dvclive.Live`` (``save_dvc_exp=False``: no DVC experiment is committed behind the user's back)
and its id, saved in checkpoints, is the Live's directory; :class:`~hooktrain.plugin.TrackerPlugin`
opens, resumes and ends it. ``live.step`` is set to ``state.global_step`` before every log so a
step in dvclive is a step in ``log_history``. See docs/integrations/dvclive.md.
"""

from __future__ import annotations

import csv
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hooktrain.plugin import (
    ConfigError,
    TrackerPlugin,
    hookimpl,
    parse_bool,
    rewrite_key,
    run_config,
    save_model,
    setting,
)

__all__ = ["DVCLivePlugin", "DVCLiveSettings"]

logger = logging.getLogger("hooktrain")


@dataclass
class DVCLiveSettings:
    """The ``[plugins.dvclive]`` table."""

    #: dvclive's output directory; default ``<output_dir>/dvclive`` (dvclive's: ``./dvclive``).
    dir: str | None = None
    #: HF's meaning: ``true`` logs the final model at train end, ``all`` every checkpoint.
    log_model: bool | str = setting(False, env="HF_DVCLIVE_LOG_MODEL")
    #: Where dvclive writes its ``dvc.yaml`` (relative to the working directory); ``false``: none.
    dvcyaml: bool | str = "dvc.yaml"

    def __post_init__(self) -> None:
        # A boolean or "all": not expressible as one Literal (HF's spellings 1/yes/on of true
        # are booleans), so the string left over by the settings parser is checked here.
        if isinstance(self.log_model, str):
            value = self.log_model.strip().lower()
            try:
                self.log_model = "all" if value == "all" else parse_bool(value or "false")
            except ConfigError:
                raise ConfigError(
                    f"[plugins.dvclive] log_model (or $HF_DVCLIVE_LOG_MODEL) must be true, false "
                    f"or 'all', got {self.log_model!r}."
                ) from None


class DVCLivePlugin(TrackerPlugin):
    """Logs the run with dvclive; pass ``live=`` to log into a ``dvclive.Live`` of your own."""

    plugin_name = "dvclive"
    settings = DVCLiveSettings
    run_id_key = "dir"

    def __init__(self, settings: DVCLiveSettings | None = None, *, live: Any = None) -> None:
        os.environ.setdefault("DVC_NO_ANALYTICS", "1")
        super().__init__(settings)
        if live is not None:
            from dvclive import Live

            if not isinstance(live, Live):
                raise TypeError(f"live must be a dvclive.Live, got {type(live).__name__}.")
        #: The user's own ``dvclive.Live``: logged into and ended, never re-opened or rewound.
        self.user_live: Any = live
        self.resuming = False

    @property
    def live(self) -> Any:
        """The ``dvclive.Live`` this plugin logs to (``None`` while none is open)."""
        return self.run if self.run is not None else self.user_live

    # ---- the run: a Live and its directory -----------------------------------------------

    def open_run(self, args: Any, state: Any, model: Any, run_id: str | None) -> Any:
        if self.user_live is not None:  # the user chooses resume=True for their own Live
            return self.user_live
        from dvclive import Live

        directory = self.config.dir or os.path.join(args.output_dir, "dvclive")
        if run_id and os.path.isdir(run_id):
            directory = run_id
        elif run_id:
            logger.warning("dvclive: %s from the checkpoint is gone; resuming into %s.",
                           run_id, directory)
        # A new (not resumed) Live deletes what its directory holds: resume whenever a
        # checkpoint is loaded or evaluate() logs after train(), even without a stored directory.
        resume = bool(run_id) or self.resuming
        self.resuming = False
        live = Live(dir=directory, resume=resume, save_dvc_exp=False, dvcyaml=self.config.dvcyaml)
        logger.info("dvclive: logging to %s%s.", directory, " (resumed)" if resume else "")
        if resume:
            _rewind(live, state.global_step)
        return live

    def run_id_of(self, run: Any) -> str:
        return os.path.abspath(run.dir)

    def log_metrics(self, run: Any, metrics: dict[str, float], state: Any) -> None:
        run.step = state.global_step
        for key, value in metrics.items():
            run.log_metric(rewrite_key(key), value)
        run.next_step()  # writes metrics.json and dvc.yaml; the next log sets the step again

    def before_finish(self, run: Any, args: Any, state: Any, model: Any) -> None:
        if self.config.log_model is True:
            name = "best" if args.load_best_model_at_end else "last"
            with tempfile.TemporaryDirectory(prefix="hooktrain-dvclive-") as tmp:
                path = save_model(model, Path(tmp) / name)
                # copy=True: into <dir>/artifacts/<name>, then dvc add
                run.log_artifact(str(path), type="model", name=name, copy=True)

    def finish_run(self, run: Any, failure: BaseException | None) -> None:
        # dvclive has no run status; ending writes the summary and dvc.yaml up to the failure.
        run.end()

    # ---- hooks beyond the run lifecycle -------------------------------------------------

    @hookimpl
    def on_load_checkpoint(self) -> None:
        self.resuming = True

    @hookimpl
    def on_train_begin(self, args: Any, state: Any, model: Any) -> None:
        super().on_train_begin(args, state, model)
        with self.failing():
            if self.run is not None:
                self.run.log_params(run_config(args, model))

    @hookimpl
    def on_save(self, state: Any, checkpoint_dir: Path) -> None:
        if self.config.log_model == "all" and self.run is not None:
            with self.failing():
                # Tracked in place (dvc add): the DVC cache keeps it after checkpoint rotation.
                self.run.log_artifact(str(checkpoint_dir), type="model",
                                      name=f"checkpoint-{state.global_step}")


def _rewind(live: Any, step: int) -> None:
    """Forget what the interrupted run logged after ``step``: the resumed run logs it again.

    Rows past the checkpoint's step are dropped from ``plots/metrics/*.tsv`` and the summary is
    rebuilt from the rows kept, so the history matches the resumed run's ``log_history``.
    """
    root = Path(live.plots_dir) / "metrics"
    summary: dict[str, Any] = {}
    for path in sorted(root.rglob("*.tsv")):
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t")
            columns, rows = reader.fieldnames or [], list(reader)
        kept = [row for row in rows if int(row["step"]) <= step]
        if len(kept) < len(rows):
            with open(path, "w", encoding="utf-8", newline="") as handle:
                writer = csv.DictWriter(handle, columns, delimiter="\t", lineterminator=os.linesep)
                writer.writeheader()
                writer.writerows(kept)
        if kept:
            *parents, leaf = path.relative_to(root).with_suffix("").parts
            node = summary
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = float(kept[-1][path.stem])
    summary["step"] = step
    live.summary = summary
    live.step = step
