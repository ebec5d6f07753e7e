"""``ProgressCallback``: a tqdm bar for training and one for each evaluation, on rank zero."""

from __future__ import annotations

from typing import Any

from hooktrain.trainer_callback import TrainerCallback


class ProgressCallback(TrainerCallback):
    """Shows training progress with tqdm and writes each log line above the bar (HF behaviour).

    Args:
        max_str_len: strings longer than this are replaced by a note in the printed logs.
            Defaults to `100`.
    """

    #: The order band the plugin manager puts it in (docs/architecture.md, "Order").
    hooktrain_band = "reporter"

    def __init__(self, max_str_len: int = 100) -> None:
        self.max_str_len = max_str_len
        self.training_bar: Any = None
        self.prediction_bar: Any = None
        self.current_step = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.training_bar = tqdm(total=state.max_steps, dynamic_ncols=True)
        self.current_step = 0

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.training_bar is not None:
            self.training_bar.update(state.global_step - self.current_step)
            self.current_step = state.global_step

    def on_prediction_step(
        self, args: Any, state: Any, control: Any, eval_dataloader: Any = None, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero or not _has_length(eval_dataloader):
            return
        if self.prediction_bar is None:
            from tqdm.auto import tqdm

            self.prediction_bar = tqdm(
                total=len(eval_dataloader), leave=self.training_bar is None, dynamic_ncols=True
            )
        self.prediction_bar.update(1)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._close_prediction_bar(state)

    def on_predict(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._close_prediction_bar(state)

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or self.training_bar is None:
            return
        shown = {}
        for key, value in (logs or {}).items():
            if key == "total_flos":
                continue
            if isinstance(value, str) and len(value) > self.max_str_len:
                value = (
                    f"[String too long to display, length: {len(value)} > {self.max_str_len}. "
                    "Consider increasing `max_str_len` if needed.]"
                )
            elif isinstance(value, float):
                value = f"{value:.4g}"
            shown[key] = value
        self.training_bar.write(str(shown))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero and self.training_bar is not None:
            self.training_bar.close()
            self.training_bar = None

    def on_exception(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        for bar in (self.prediction_bar, self.training_bar):
            if bar is not None:
                bar.close()
        self.prediction_bar = self.training_bar = None

    def _close_prediction_bar(self, state: Any) -> None:
        if state.is_world_process_zero and self.prediction_bar is not None:
            self.prediction_bar.close()
        self.prediction_bar = None


def _has_length(obj: Any) -> bool:
    try:
        return obj is not None and len(obj) is not None
    except TypeError:
        return False
