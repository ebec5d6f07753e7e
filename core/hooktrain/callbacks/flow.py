"""``DefaultFlowCallback``: turns the logging, evaluation and save schedule into control flags."""

from __future__ import annotations

from typing import Any

from hooktrain.trainer_callback import TrainerCallback


class DefaultFlowCallback(TrainerCallback):
    """Sets ``should_log`` / ``should_evaluate`` / ``should_save`` / ``should_training_stop``.

    Always runs first (the FLOW band, docs/architecture.md, "Order"), so every other plugin
    sees its flags and may change them.
    Behaviour is HF 5.x's: at the last step it stops training, forces a final evaluation when the
    ``steps`` schedule would miss it, and forces a final checkpoint under ``save_strategy="steps"``;
    it never forces a final log (the summary log covers it).
    """

    #: The order band the plugin manager puts it in (docs/architecture.md, "Order").
    hooktrain_band = "flow"

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        step = state.global_step
        if step == 1 and args.logging_first_step:
            control.should_log = True
        if args.logging_strategy == "steps" and step % state.logging_steps == 0:
            control.should_log = True
        if (
            args.eval_strategy == "steps"
            and step % state.eval_steps == 0
            and args.eval_delay <= step
        ):
            control.should_evaluate = True
        if args.save_strategy == "steps" and state.save_steps > 0 and step % state.save_steps == 0:
            control.should_save = True
        if step >= state.max_steps:
            control.should_training_stop = True
            if (
                args.eval_strategy == "steps"
                and step % state.eval_steps != 0
                and args.eval_delay <= step
            ):
                control.should_evaluate = True
            if args.save_strategy == "steps":
                control.should_save = True
        return control

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if args.logging_strategy == "epoch":
            control.should_log = True
        if args.eval_strategy == "epoch" and args.eval_delay <= state.epoch:
            control.should_evaluate = True
        if args.save_strategy == "epoch":
            control.should_save = True
        return control
