"""FSDP2 under real ``torchrun`` (2 CPU processes, gloo): parity with DDP and one process,
sharded checkpoints, resume on the same and on a different number of processes, failures.

Each run is a subprocess of ``tests/ddp_worker.py`` with ``fsdp=...``; its weights come from
``trainer.save_model()``'s full safetensors file, as a user gets them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torchrun_runs import losses, result, single, torchrun, weights

from hooktrain import Trainer, TrainingArguments
from hooktrain.checkpoint import list_checkpoints
from hooktrain.errors import ConfigError
from hooktrain.fsdp import SHARDED, load_sharded, plan_from, units
from hooktrain.testing import RegressionDataset, TinyRegressor, tiny_args

pytestmark = pytest.mark.timeout(240)
SHARD = ("fsdp=full_shard", "wrap=Linear")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same global batch of 4: one process, DDP with 2, FSDP with 2 (checkpoints at 2, 4,
    6 and 8, evaluation every 2 steps on 11 samples: the last global batch is short)."""
    root = tmp_path_factory.mktemp("fsdp")
    single(root / "one", "batch=4", "eval=1", "save=2")
    torchrun(root / "ddp", "batch=2", "eval=1", "save=2")
    torchrun(root / "fsdp", "batch=2", "eval=1", "save=2", *SHARD)
    return {name: root / name for name in ("one", "ddp", "fsdp")}


def assert_same_run(a: Path, b: Path, atol: float = 1e-5) -> None:
    wa, wb = weights(a), weights(b)
    assert set(wa) == set(wb)
    for name in wa:
        np.testing.assert_allclose(wb[name], wa[name], rtol=0, atol=atol, err_msg=name)
    for (step_a, key_a, x), (step_b, key_b, y) in zip(losses(a), losses(b), strict=True):
        assert (step_a, key_a) == (step_b, key_b)
        assert y == pytest.approx(x, abs=atol), (step_a, key_a)


def test_fsdp_trains_what_ddp_and_one_process_train(runs) -> None:
    assert_same_run(runs["one"], runs["fsdp"])
    assert_same_run(runs["ddp"], runs["fsdp"])
    logged = result(runs["fsdp"])["log_history"]
    assert all(e["grad_norm"] > 0 for e in logged if "grad_norm" in e)  # a DTensor, logged
    assert sum("eval_loss" in e for e in logged) == 4  # 11 samples: the ranks stay in step


def test_gradient_accumulation_under_fsdp_trains_the_same_global_batch(runs, tmp_path) -> None:
    """Batch 1 x 2 micro-batches x 2 processes = the global batch of 4 of the other runs, with
    the units' activations recomputed in backward (the same numbers, less memory)."""
    torchrun(tmp_path, "batch=1", "accum=2", "eval=1", "ac=1", *SHARD)
    assert_same_run(runs["one"], tmp_path)


def test_a_save_model_override_and_torch_compile_under_accumulation(runs, tmp_path) -> None:
    """A subclass's save_model is called into each checkpoint on every process (it gathers the
    weights, a collective), and a compiled FSDP model skips no gradient sync it cannot skip."""
    torchrun(tmp_path, "batch=1", "accum=2", "eval=1", "save=4", "override=1", "compile=1",
             *SHARD)
    assert_same_run(runs["one"], tmp_path)
    checkpoint = tmp_path / "run" / "checkpoint-4"
    assert (checkpoint / SHARDED).is_dir() and (checkpoint / "saved-by-override.txt").exists()
    assert "saved-by-override.txt" in json.loads((checkpoint / "manifest.json").read_text())[
        "files"]


def test_a_short_last_evaluation_batch_keeps_the_ranks_in_step(tmp_path) -> None:
    """13 samples, batch 3, 2 processes: the last global batch has one sample, so rank 1 runs a
    spare forward and drops it; the evaluation still counts each sample once."""
    single(tmp_path / "one", "batch=4", "eval=1", "eval_size=13", "steps=4")
    torchrun(tmp_path / "two", "batch=2", "eval=1", "eval_size=13", "steps=4", *SHARD)
    assert_same_run(tmp_path / "one", tmp_path / "two")


def test_too_small_an_evaluation_set_fails_every_rank_before_the_first_step(tmp_path) -> None:
    failed = torchrun(tmp_path, "batch=2", "eval=1", "eval_size=1", *SHARD, check=False)
    assert failed.returncode != 0
    assert failed.stderr.count("eval_dataset has 1 samples for 2 processes") >= 2
    for rank in (0, 1):
        events = json.loads((tmp_path / f"events-{rank}.json").read_text())["events"]
        assert not any(event.startswith("step") for event in events), events


def test_each_rank_holds_about_half_of_the_parameters_and_optimizer_state(runs) -> None:
    shards = [json.loads((runs["fsdp"] / f"local-{rank}.json").read_text()) for rank in (0, 1)]
    whole = json.loads((runs["one"] / "local-0.json").read_text())
    assert sum(s["params"] for s in shards) == whole["params"] == 49
    assert sum(s["optimizer"] for s in shards) == whole["optimizer"] == 2 * 49
    for shard in shards:  # dim 0 of each tensor split in two, the odd row to rank 0
        assert shard["params"] <= whole["params"] * 0.6


def test_the_checkpoint_holds_every_ranks_shard_in_its_manifest(runs) -> None:
    checkpoint = runs["fsdp"] / "run" / "checkpoint-4"
    names = {p.name for p in checkpoint.iterdir()}
    assert SHARDED in names and "model.safetensors" not in names and "optimizer.pt" not in names
    shards = sorted(p.name for p in (checkpoint / SHARDED).iterdir())
    assert shards == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    manifest = json.loads((checkpoint / "manifest.json").read_text())["files"]
    assert {f"{SHARDED}/{name}" for name in shards} <= set(manifest)
    assert [p.name for p in (runs["fsdp"] / "run").iterdir() if p.name.startswith(".")] == []


def test_the_saved_model_loads_without_hooktrain_or_fsdp(runs) -> None:
    saved = load_file(runs["fsdp"] / "final" / "model.safetensors")
    model = TinyRegressor(dropout=0.0)
    model.load_state_dict(saved)  # plain names, full shapes
    assert {k: tuple(v.shape) for k, v in saved.items()} == {
        k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_a_sharded_checkpoint_loads_resharded_into_one_process(runs) -> None:
    """The weights a 2-rank checkpoint holds, read by one plain process (no process group)."""
    model = TinyRegressor(dropout=0.0)
    load_sharded(model, None, runs["fsdp"] / "run" / "checkpoint-8" / SHARDED)
    final = weights(runs["fsdp"])
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), final[name].astype(np.float32))


def test_a_killed_run_resumes_on_the_same_world_size_bit_identically(runs, tmp_path) -> None:
    failed = torchrun(tmp_path, "batch=2", "eval=1", "save=2", "fail_rank=0", "fail_step=5",
                      *SHARD, check=False)
    assert failed.returncode != 0
    torchrun(tmp_path, "batch=2", "eval=1", "save=2", "resume=1", *SHARD)
    reference, resumed = weights(runs["fsdp"]), weights(tmp_path)
    assert all(np.array_equal(resumed[k], reference[k]) for k in reference)
    assert losses(tmp_path) == losses(runs["fsdp"])


def test_a_two_rank_checkpoint_resumes_in_one_process(runs, tmp_path) -> None:
    """2 -> 1: the weights and AdamW state load resharded and the run goes on with the same
    global batch (one process, batch 4), ending where the uninterrupted runs end."""
    torchrun(tmp_path, "batch=2", "eval=1", "save=2", "stop_step=4", *SHARD)
    assert max(e["step"] for e in result(tmp_path)["log_history"]) == 4
    single(tmp_path, "batch=4", "eval=1", "save=2", "resume=1", *SHARD)
    assert result(tmp_path)["world_size"] == 1
    assert_same_run(runs["one"], tmp_path)
    steps = [e["step"] for e in result(tmp_path)["log_history"] if "loss" in e]
    assert steps == [2, 4, 6, 8]  # the first four from the checkpoint's log


def test_a_two_rank_checkpoint_resumes_on_four_processes(runs, tmp_path) -> None:
    """2 -> 4, each process with batch 1: the same global batch, the same end."""
    torchrun(tmp_path, "batch=2", "eval=1", "save=2", "stop_step=4", *SHARD)
    torchrun(tmp_path, "batch=1", "eval=1", "save=2", "resume=1", *SHARD, nproc=4)
    assert result(tmp_path)["world_size"] == 4
    assert_same_run(runs["one"], tmp_path)


def test_the_best_sharded_checkpoint_is_loaded_at_the_end(tmp_path) -> None:
    torchrun(tmp_path, "batch=2", "eval=1", "save=2", "best=1", "steps=12", "eval_size=3",
             *SHARD)
    history = result(tmp_path)["log_history"]
    evaluations = {e["step"]: e["eval_loss"] for e in history if "eval_loss" in e}
    best_step = min(evaluations, key=evaluations.get)
    assert best_step < max(evaluations), evaluations  # else the last weights are the best
    best = tmp_path / "run" / f"checkpoint-{best_step}"
    assert (best / SHARDED).is_dir()
    model = TinyRegressor(dropout=0.0)
    load_sharded(model, None, best / SHARDED)
    final = weights(tmp_path)  # trainer.save_model() after train(): the best weights
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), final[name].astype(np.float32))


def test_a_failing_rank_stops_every_rank_with_on_exception(tmp_path) -> None:
    failed = torchrun(tmp_path, "batch=2", "fail_rank=1", "fail_step=3", *SHARD, check=False)
    assert failed.returncode != 0
    for rank in (0, 1):
        events = json.loads((tmp_path / f"events-{rank}.json").read_text())["events"]
        assert events[-1].startswith("exception"), (rank, events)
        assert events.count("step 2") == 1 and "step 4" not in events
    assert "rank 1 fails at step 3" in failed.stderr


def test_every_rank_sees_the_events_and_logging_plugins_run_on_rank_zero(runs) -> None:
    run = runs["fsdp"]
    assert (run / "logger-0.jsonl").exists() and not (run / "logger-1.jsonl").exists()
    seen = [json.loads((run / f"events-{rank}.json").read_text())["events"] for rank in (0, 1)]
    assert seen[0] == seen[1]
    assert seen[0][-1] == "train_end" and seen[0].count("step 8") == 1


# ---- the arguments, in one process ----------------------------------------------------------


@pytest.mark.parametrize(("fsdp", "config", "message"), [
    ("full", None, "Unknown fsdp option 'full'. Allowed: full_shard, shard_grad_op"),
    ("full_shard shard_grad_op", None, "choose one"),
    ("hybrid_shard", None, "hybrid sharding"),
    ("no_shard", None, "DistributedDataParallel"),
    ("full_shard", {"wrap_everything": True}, "Unknown fsdp_config key 'wrap_everything'"),
    ("full_shard", {"version": 1}, "FSDP2"),
    ("full_shard", {"reshard_after_forward": "sometimes"}, "true or false"),
    ("full_shard", {"mixed_precision": {"param_dtype": "float8"}}, "float8"),
    ("full_shard", {"state_dict_type": "LOCAL_STATE_DICT"}, "not one of SHARDED_STATE_DICT"),
    ("full_shard", {"xla": True}, "TPUs"),
    ("full_shard", {"min_num_params": -1}, "min_num_params"),
])
def test_a_wrong_value_is_one_clear_error(tmp_path, fsdp, config, message) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainingArguments(output_dir=str(tmp_path), fsdp=fsdp, fsdp_config=config)


def test_hf_spellings_are_accepted(tmp_path) -> None:
    config = tmp_path / "fsdp.json"
    config.write_text(json.dumps({"fsdp_transformer_layer_cls_to_wrap": "Linear",
                                  "fsdp_backward_prefetch": "backward_pre",
                                  "fsdp_reshard_after_forward": "false"}))
    plan = plan_from(TrainingArguments(output_dir=str(tmp_path), fsdp=["shard_grad_op", "offload"],
                                       fsdp_config=str(config), bf16=True))
    assert plan.layer_classes == ("Linear",) and plan.reshard_after_forward is False
    assert plan.offload and plan.param_dtype == "bfloat16" and plan.reduce_dtype == "float32"
    assert [type(m).__name__ for m in units(TinyRegressor(), plan)] == ["Linear", "Linear"]


def test_what_transformers_5_writes_is_accepted(tmp_path, caplog) -> None:
    """fsdp=True (a bare --fsdp), the XLA keys at false, version 2.0, HF's FULL_STATE_DICT
    default (a warning: checkpoints are sharded anyway) and a pathlib.Path to the JSON."""
    config = tmp_path / "fsdp.json"
    config.write_text(json.dumps({"fsdp_version": 2.0, "xla": False, "xla_fsdp_v2": False,
                                  "xla_fsdp_grad_ckpt": False,
                                  "state_dict_type": "FULL_STATE_DICT"}))
    with caplog.at_level("WARNING", logger="hooktrain"):
        args = TrainingArguments(output_dir=str(tmp_path), fsdp=True, fsdp_config=config)
    assert plan_from(args).reshard_after_forward
    assert args.fsdp_config == str(config)  # kept JSON-serialisable for training_args.json
    json.dumps(args.to_dict())
    assert any("FULL_STATE_DICT" in r.getMessage() for r in caplog.records)


def test_units_default_to_the_models_no_split_modules(tmp_path) -> None:
    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(2, 2)

    class Model(torch.nn.Module):
        _no_split_modules = ["Block"]

        def __init__(self) -> None:
            super().__init__()
            self.blocks = torch.nn.Sequential(Block(), Block())

    plan = plan_from(TrainingArguments(output_dir=str(tmp_path), fsdp="full_shard"))
    assert [type(m).__name__ for m in units(Model(), plan)] == ["Block", "Block"]


def test_a_class_the_model_lacks_is_named(tmp_path) -> None:
    plan = plan_from(TrainingArguments(output_dir=str(tmp_path), fsdp="full_shard",
                                       fsdp_config={"transformer_layer_cls_to_wrap": ["Block"]}))
    with pytest.raises(ConfigError, match=r"names \['Block'\].*Its module classes: Dropout"):
        units(TinyRegressor(), plan)


def test_one_process_trains_unsharded_with_a_warning(tmp_path, caplog) -> None:
    args = tiny_args(tmp_path, fsdp="full_shard", max_steps=2, save_strategy="steps",
                     save_steps=2)
    with caplog.at_level("WARNING", logger="hooktrain"):
        Trainer(TinyRegressor(), args, train_dataset=RegressionDataset(8)).train()
    assert any("one process: the model trains unsharded" in r.getMessage()
               for r in caplog.records)
    (checkpoint,) = list_checkpoints(tmp_path)  # the usual format: nothing is sharded
    assert {"model.safetensors", "optimizer.pt"} <= {p.name for p in checkpoint.iterdir()}
    assert not torch.distributed.is_initialized()
