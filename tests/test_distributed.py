"""Real ``torchrun`` runs with 2 CPU processes (gloo): parity, rank-zero plugins, checkpoints.

Each run is a subprocess of ``tests/ddp_worker.py``; see its docstring for the options.
"""

from __future__ import annotations

import atexit
import json
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torchrun_runs import ENV, WORKER, env_for, losses, result, single, torchrun, weights

from hooktrain import Trainer, distributed
from hooktrain.checkpoint import load_weights
from hooktrain.testing import RegressionDataset, TinyRegressor, tiny_args

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One process with batch 4, and 2 processes with batch 2 each: the same global batch."""
    root = tmp_path_factory.mktemp("ddp")
    single(root / "one", "batch=4", "eval=1", "save=2")
    torchrun(root / "two", "batch=2", "eval=1", "save=2")
    return {"one": root / "one", "two": root / "two", "root": root}


def test_two_processes_train_the_run_one_process_trains(runs) -> None:
    one, two = weights(runs["one"]), weights(runs["two"])
    for name in one:
        np.testing.assert_allclose(two[name], one[name], rtol=0, atol=1e-6)
    assert result(runs["two"])["world_size"] == 2
    for (step_a, key_a, a), (step_b, key_b, b) in zip(losses(runs["one"]), losses(runs["two"]),
                                                       strict=True):
        assert (step_a, key_a) == (step_b, key_b)
        assert b == pytest.approx(a, rel=1e-6)  # the eval set (11) splits unevenly: no padding


def test_logging_plugins_run_on_rank_zero_and_callbacks_on_every_rank(runs) -> None:
    two = runs["two"]
    assert (two / "logger-0.jsonl").exists() and not (two / "logger-1.jsonl").exists()
    logged = [json.loads(line) for line in (two / "logger-0.jsonl").read_text().splitlines()]
    assert len(logged) == len(result(two)["log_history"])
    for rank in (0, 1):
        seen = json.loads((two / f"events-{rank}.json").read_text())
        assert seen["events"][-1] == "train_end"
        assert seen["zero"] == [rank == 0]
        assert seen["events"].count("step 8") == 1


def test_checkpoint_is_written_once_with_every_ranks_rng_state(runs) -> None:
    checkpoint = runs["two"] / "run" / "checkpoint-4"
    assert {p.name for p in checkpoint.iterdir()} >= {"rng_state.pth", "rng_state_1.pth",
                                                     "model.safetensors", "manifest.json"}
    leftovers = [p.name for p in (runs["two"] / "run").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_a_run_killed_under_torchrun_resumes_to_the_same_weights(runs, tmp_path) -> None:
    failed = torchrun(tmp_path, "batch=2", "eval=1", "save=2", "fail_rank=0", "fail_step=5",
                      check=False)
    assert failed.returncode != 0
    torchrun(tmp_path, "batch=2", "eval=1", "save=2", "resume=1")
    reference = weights(runs["two"])
    resumed = weights(tmp_path)
    assert all(np.array_equal(resumed[k], reference[k]) for k in reference)
    assert losses(tmp_path) == losses(runs["two"])


def test_a_run_a_callback_stopped_resumes_to_the_uninterrupted_weights(runs, tmp_path) -> None:
    torchrun(tmp_path, "batch=2", "eval=1", "save=2", "stop_step=4")
    assert max(e["step"] for e in result(tmp_path)["log_history"]) == 4
    torchrun(tmp_path, "batch=2", "eval=1", "save=2", "resume=1")
    reference, resumed = weights(runs["two"]), weights(tmp_path)
    assert all(np.array_equal(resumed[k], reference[k]) for k in reference)


def test_a_stream_splits_between_processes_as_one_process_reads_it(tmp_path) -> None:
    """Each process keeps its slice of every global batch of an IterableDataset."""
    single(tmp_path / "one", "batch=4", "eval=1", "iterable=1")
    torchrun(tmp_path / "two", "batch=2", "eval=1", "iterable=1")
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    for name in one:
        np.testing.assert_allclose(two[name], one[name], rtol=0, atol=1e-6)
    for (step_a, key_a, a), (step_b, key_b, b) in zip(losses(tmp_path / "one"),
                                                       losses(tmp_path / "two"), strict=True):
        assert (step_a, key_a) == (step_b, key_b) and b == pytest.approx(a, rel=1e-6)


def test_a_checkpoint_from_two_processes_evaluates_in_one(runs, tmp_path) -> None:
    torch.manual_seed(0)
    model = TinyRegressor(dropout=0.0)
    load_weights(model, runs["two"] / "run" / "checkpoint-4")
    trainer = Trainer(model, tiny_args(tmp_path, per_device_eval_batch_size=3),
                      eval_dataset=RegressionDataset(11, seed=1))
    metrics = trainer.evaluate()
    logged = [e["eval_loss"] for e in result(runs["two"])["log_history"]
              if e.get("eval_loss") is not None and e["step"] == 4]
    assert metrics["eval_loss"] == pytest.approx(logged[0], rel=1e-6)


def test_a_failing_rank_stops_every_rank_with_on_exception(tmp_path) -> None:
    failed = torchrun(tmp_path, "batch=2", "fail_rank=1", "fail_step=3", check=False)
    assert failed.returncode != 0
    for rank in (0, 1):
        events = json.loads((tmp_path / f"events-{rank}.json").read_text())["events"]
        assert events[-1].startswith("exception"), (rank, events)
    assert "rank 1 fails at step 3" in failed.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_nodes_on_localhost(runs, tmp_path) -> None:
    """``--nnodes 2`` with the c10d rendezvous, as across machines, both "nodes" on 127.0.0.1.

    Node 0 hosts the rendezvous store, said explicitly: on one machine both nodes match the
    endpoint's address, and left to guess they can both try to host it.
    """
    port = _free_port()
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
             "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=hooktrain",
             f"--rdzv-conf=is_host={int(rank == 0)},join_timeout=120", f"--node-rank={rank}",
             str(WORKER), str(tmp_path), "batch=2", "eval=1", "save=2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env_for(tmp_path),
        )
        for rank in (0, 1)
    ]
    try:
        errors = [node.communicate(timeout=200)[1] for node in nodes]
    except subprocess.TimeoutExpired:
        for node in nodes:
            node.kill()
        errors = [node.communicate()[1] for node in nodes]
        pytest.fail("two-node run timed out:\n" + "\n---\n".join(e[-3000:] for e in errors))
    for node, stderr in zip(nodes, errors, strict=True):
        assert node.returncode == 0, stderr[-3000:]
    reference, two_nodes = weights(runs["two"]), weights(tmp_path)
    assert all(np.array_equal(two_nodes[k], reference[k]) for k in reference)


def test_the_process_group_the_trainer_joins_is_left_at_exit(monkeypatch) -> None:
    """Left to interpreter shutdown, gloo can abort a process whose training ended well."""
    at_exit = []
    monkeypatch.setattr(atexit, "register", at_exit.append)
    for name, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
                        "RANK": "0", "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(name, value)
    # a group of one real process: joined through the same path torchrun's workers take
    args = SimpleNamespace(world_size=2, ddp_backend="gloo", ddp_timeout=30)
    try:
        assert distributed.setup(args, torch.device("cpu"))
        # torch._dynamo, imported before joining, registers handlers of its own
        assert dist.is_initialized() and distributed.leave_process_group in at_exit
        distributed.leave_process_group()
        assert not dist.is_initialized()
        distributed.leave_process_group()  # the user destroyed it first: nothing to do
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_no_native_thread_of_the_group_is_left_for_interpreter_shutdown(runs) -> None:
    """A gloo or store thread still running at finalization can abort a good run (SIGABRT).

    The worker notes its threads after every other ``atexit`` handler ran: by then the Trainer's
    teardown has destroyed the group and joined its threads, leaving the main thread alone.
    """
    for rank in (0, 1):
        threads = json.loads((runs["two"] / f"exit-threads-{rank}.json").read_text())
        assert len(threads) == 1, f"rank {rank} left threads for shutdown: {threads}"


LEAVE_AFTER_DDP = """
import json, sys, types, torch
from pathlib import Path
from hooktrain import distributed
args = types.SimpleNamespace(world_size=2, ddp_backend="gloo", ddp_timeout=30)
distributed.setup(args, torch.device("cpu"))
wrapped = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3, 1))
wrapped(torch.ones(2, 3)).sum().backward()
del wrapped
distributed.leave_process_group()
names = [(task / "comm").read_text().strip() for task in Path("/proc/self/task").iterdir()]
print(json.dumps(names))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="lists threads through /proc")
def test_leaving_the_group_joins_its_threads_after_a_ddp_wrapper_existed() -> None:
    """Importing torch._dynamo (DDP's constructor does) while a group exists pins the group for
    good; the Trainer imports it before joining, so destroying the group still joins gloo's and
    the store's threads. Run in a fresh interpreter: pytest's may have imported it already."""
    env = {**ENV, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0",
           "WORLD_SIZE": "1"}
    finished = subprocess.run([sys.executable, "-c", LEAVE_AFTER_DDP], capture_output=True,
                              text=True, env=env, timeout=120)
    assert finished.returncode == 0, finished.stderr[-3000:]
    threads = json.loads(finished.stdout.strip().splitlines()[-1])
    assert len(threads) == 1, f"threads left after leaving the group: {threads}"
