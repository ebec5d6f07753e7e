"""A training run for the torchrun tests; also runs as one plain process.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/ddp_worker.py OUT [opts]

Options (key=value): batch (per device), steps, save (save_steps), resume (1), fail_rank,
fail_step, stop_step (a callback stops training there), eval (1: evaluate every 2 steps),
iterable (1: the data sets as streams without a length, read in order), fsdp (HF's fsdp
string, e.g. full_shard; the weights then come from trainer.save_model's full safetensors),
wrap (fsdp_config's transformer_layer_cls_to_wrap), eval_size (evaluation samples, 11),
accum (gradient_accumulation_steps, 1), best (1: load_best_model_at_end on eval loss),
ac (1: fsdp_config activation_checkpointing), compile (1: torch_compile, eager backend),
override (1: a Trainer subclass with its own save_model).
Rank zero writes OUT/result.json (weights and logs); every rank writes OUT/events-<rank>.json
with the events its plugins saw, and OUT/exit-threads-<rank>.json with the native threads still
running after every other ``atexit`` handler (hooktrain's teardown of the process group among
them) has run.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from hooktrain import Trainer, TrainerCallback, hookimpl
from hooktrain.plugin_host import Band
from hooktrain.testing import RegressionDataset, TinyRegressor, tiny_args


class RankRecorder(TrainerCallback):
    """A user callback: runs on every rank and notes what it saw."""

    def __init__(self, out: Path, fail_rank: int, fail_step: int, stop_step: int = -1) -> None:
        self.out, self.fail_rank, self.fail_step = out, fail_rank, fail_step
        self.stop_step = stop_step
        self.events: list[str] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.events.append(f"step {state.global_step}")
        if state.global_step == self.fail_step and args.process_index == self.fail_rank:
            raise RuntimeError(f"rank {self.fail_rank} fails at step {self.fail_step}")
        if state.global_step == self.stop_step:  # every rank stops, as a callback would
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.events.append("log")

    def on_exception(self, args, state, control, exception=None, **kwargs):
        self.events.append(f"exception {type(exception).__name__}")
        self.dump(args)

    def on_train_end(self, args, state, control, **kwargs):
        self.events.append("train_end")
        self.dump(args)

    def dump(self, args) -> None:
        path = self.out / f"events-{args.process_index}.json"
        path.write_text(json.dumps({"events": self.events,
                                    "zero": [args.process_index == 0]}))


class LoggingPlugin:
    """Stands in for an entry-point logging plugin: the manager runs it on rank zero only."""

    def __init__(self, out: Path) -> None:
        self.out = out

    @hookimpl
    def on_log(self, args, logs):
        with open(self.out / f"logger-{args.process_index}.jsonl", "a") as handle:
            handle.write(json.dumps(logs) + "\n")


class Stream(torch.utils.data.IterableDataset):
    """A data set's samples in order, with no length."""

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset

    def __iter__(self):
        return (self.dataset[i] for i in range(len(self.dataset)))


class SavesModelItself(Trainer):
    """A subclass with its own ``save_model``, which HF calls into every checkpoint too."""

    def save_model(self, output_dir=None, _internal_call=False):
        super().save_model(output_dir, _internal_call)
        if self.args.should_save:
            Path(output_dir or self.args.output_dir, "saved-by-override.txt").write_text("yes")


def native_threads() -> list[str]:
    """The names of this process's native threads (Linux; empty elsewhere)."""
    names = []
    for task in Path("/proc/self/task").glob("*"):
        try:
            names.append((task / "comm").read_text().strip())
        except OSError:
            continue
    return sorted(names)


def record_exit_threads(out: Path) -> None:
    """Note the threads left for interpreter shutdown: gloo's or the store's may abort it."""
    rank = os.environ.get("RANK", "0")
    (out / f"exit-threads-{rank}.json").write_text(json.dumps(native_threads()))


def local_numel(tensor: torch.Tensor) -> int:
    """Elements this process holds: its shard of a DTensor (FSDP), else the whole tensor."""
    return (tensor.to_local() if hasattr(tensor, "to_local") else tensor).numel()


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    options = dict(item.split("=", 1) for item in sys.argv[2:])
    # Registered before the Trainer registers its teardown, so it runs after it (atexit is LIFO).
    atexit.register(record_exit_threads, out)
    torch.set_num_threads(1)
    steps = int(options.get("steps", 8))
    extra = {}
    if options.get("eval") == "1":
        extra = {"eval_strategy": "steps", "eval_steps": 2}
    if options.get("best") == "1":  # keep the checkpoint with the lowest eval loss, load it
        extra.update(load_best_model_at_end=True, metric_for_best_model="loss",
                     save_total_limit=1)
    args = tiny_args(
        out / "run", per_device_train_batch_size=int(options.get("batch", 4)), max_steps=steps,
        logging_steps=2, save_strategy="steps" if "save" in options else "no",
        save_steps=int(options.get("save", 500)), learning_rate=0.05, ddp_timeout=60,
        per_device_eval_batch_size=3, gradient_accumulation_steps=int(options.get("accum", 1)),
        **extra,
    )
    recorder = RankRecorder(out, int(options.get("fail_rank", -1)),
                            int(options.get("fail_step", -1)), int(options.get("stop_step", -1)))
    torch.manual_seed(0)  # the same initial weights in one process and in N
    train_set = RegressionDataset(32)
    eval_set = RegressionDataset(int(options.get("eval_size", 11)), seed=1)
    if options.get("iterable") == "1":
        train_set, eval_set = Stream(train_set), Stream(eval_set)
        args.train_sampling_strategy = "sequential"
    if "fsdp" in options:
        args.fsdp = options["fsdp"]
        if "wrap" in options:
            args.fsdp_config = {"transformer_layer_cls_to_wrap": options["wrap"].split(","),
                                "activation_checkpointing": options.get("ac") == "1"}
    if options.get("compile") == "1":
        args.torch_compile, args.torch_compile_backend = True, "eager"
    trainer_class = SavesModelItself if options.get("override") == "1" else Trainer
    trainer = trainer_class(TinyRegressor(dropout=0.0), args, train_dataset=train_set,
                            eval_dataset=eval_set, callbacks=[recorder])
    trainer.plugin_manager.register_plugin(LoggingPlugin(out), band=Band.ENTRY_POINT,
                                           name="logger", isolated=True, all_ranks=False)
    trainer.train(resume_from_checkpoint=True if options.get("resume") == "1" else None)
    weights = trainer.model.state_dict()
    if "fsdp" in options:  # sharded: the full weights as a user gets them, from save_model
        trainer.save_model(str(out / "final"))
        weights = load_file(out / "final" / "model.safetensors") if \
            trainer.args.process_index == 0 else {}
    local = {"params": sum(local_numel(p) for p in trainer.model.parameters()),
             "optimizer": sum(local_numel(t) for state in trainer.optimizer.state.values()
                              for t in state.values() if torch.is_tensor(t) and t.ndim > 0)}
    (out / f"local-{trainer.args.process_index}.json").write_text(json.dumps(local))
    if trainer.args.process_index == 0:
        result = {
            "weights": {k: v.tolist() for k, v in weights.items()},
            "log_history": trainer.state.log_history,
            "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        }
        (out / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
