"""The run's progress (:class:`TrainerState`), its flags (:class:`TrainerControl`) and the
protocol for plugin state that survives a resume (:class:`ExportableState`).

Field names, defaults and the ``trainer_state.json`` format are Hugging Face's, so state files move
between the two frameworks.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ExportableState:
    """A plugin whose state is saved in every checkpoint and restored on resume (HF protocol).

    :meth:`state` returns ``{"args": {...constructor kwargs...}, "attributes": {...}}``. On resume
    hooktrain sets the saved ``attributes`` on the *existing* instance (it keeps the arguments
    you passed now), so a changed patience or threshold is honoured.
    """

    def state(self) -> dict[str, Any]:
        raise TypeError(
            f"{type(self).__name__} subclasses ExportableState but does not define state(); "
            "return {'args': {...}, 'attributes': {...}} from it"
        )

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ExportableState:
        instance = cls(**state["args"])
        for name, value in state["attributes"].items():
            setattr(instance, name, value)
        return instance


@dataclass
class TrainerControl(ExportableState):
    """Flags that plugins set to steer the loop; the loop reads them right after each event.

    Attributes:
        should_training_stop: end training after the current step. Cleared at ``on_train_begin``.
        should_epoch_stop: end the current epoch. Cleared at ``on_epoch_begin``.
        should_save: save a checkpoint at this step. Cleared at ``on_step_begin`` and ``on_save``.
        should_evaluate: evaluate at this step. Cleared at ``on_step_begin`` and ``on_evaluate``.
        should_log: log at this step. Cleared at ``on_step_begin`` and ``on_log``.
    """

    should_training_stop: bool = False
    should_epoch_stop: bool = False
    should_save: bool = False
    should_evaluate: bool = False
    should_log: bool = False

    def _new_training(self) -> None:
        self.should_training_stop = False

    def _new_epoch(self) -> None:
        self.should_epoch_stop = False

    def _new_step(self) -> None:
        self.should_save = False
        self.should_evaluate = False
        self.should_log = False

    def state(self) -> dict[str, Any]:
        return {"args": dataclasses.asdict(self), "attributes": {}}


@dataclass
class TrainerState:
    """Where the run is: steps, epochs, logs and the best metric. Saved as ``trainer_state.json``.

    ``log_history`` holds one ``{**logs, "step": global_step}`` per :meth:`Trainer.log` call.
    ``stateful_callbacks`` maps each stateful plugin's key to its saved state (see
    ``docs/checkpoints.md``).
    """

    epoch: float = 0
    global_step: int = 0
    max_steps: int = 0
    logging_steps: int = 500
    eval_steps: int = 500
    save_steps: int = 500
    train_batch_size: int | None = None
    num_train_epochs: int = 0
    num_input_tokens_seen: int = 0
    total_flos: float = 0
    log_history: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float | None = None
    best_global_step: int | None = None
    best_model_checkpoint: str | None = None
    is_local_process_zero: bool = True
    is_world_process_zero: bool = True
    is_hyper_param_search: bool = False
    trial_name: str | None = None
    trial_params: dict[str, Any] | None = None
    stateful_callbacks: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.log_history is None:
            self.log_history = []
        if self.stateful_callbacks is None:
            self.stateful_callbacks = {}

    def save_to_json(self, json_path: str | Path) -> None:
        """Write the state as HF's ``trainer_state.json`` (sorted keys, 2-space indent)."""
        text = json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True, default=_plain) + "\n"
        Path(json_path).write_text(text, encoding="utf-8")

    @classmethod
    def load_from_json(cls, json_path: str | Path) -> TrainerState:
        """Read a ``trainer_state.json``; keys this version does not know are ignored."""
        data = json.loads(Path(json_path).read_text(encoding="utf-8"))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def compute_steps(self, args: Any, max_steps: int) -> None:
        """Turn fractional ``logging/eval/save_steps`` (< 1) into absolute step counts, as HF."""
        for kind in ("logging", "eval", "save"):
            value = getattr(args, f"{kind}_steps")
            if value is not None:
                if value < 1:
                    value = math.ceil(max_steps * value)
                setattr(self, f"{kind}_steps", int(value))


def _plain(value: Any) -> Any:
    """JSON fallback: numpy values and tensors become numbers or lists (HF #10299, #30038)."""
    if hasattr(value, "tolist"):  # numpy arrays and scalars, tensors of any shape
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"trainer_state.json cannot hold a {type(value).__name__}: {value!r}")
