"""Running under ``torchrun``: process group, reductions and gathers the loop needs.

hooktrain has no launcher of its own. ``torchrun`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``
and the rendezvous variables; when ``WORLD_SIZE`` is above 1 the Trainer joins the process group
(gloo on CPU, NCCL on CUDA, with ``ddp_timeout`` so a lost peer fails instead of hanging) and
wraps the model in ``DistributedDataParallel``. Everything here is a no-op in one process.
"""

from __future__ import annotations

import atexit
import datetime
import gc
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist

from hooktrain.errors import TrainingTerminated

logger = logging.getLogger("hooktrain")


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if world_size() > 1 else 0


def setup(args: Any, device: torch.device) -> bool:
    """Join the process group when launched with several processes; True when distributed."""
    if args.world_size <= 1:
        return False
    if not dist.is_initialized():
        # Importing torch._dynamo while a group exists pins it for good (DDP's constructor
        # imports it), so destroy_process_group could not join its threads at exit.
        import torch._dynamo  # noqa: F401

        backend = args.ddp_backend or ("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(
            backend=backend, timeout=datetime.timedelta(seconds=args.ddp_timeout)
        )
        logger.info("Joined process group: rank %d of %d (%s).", dist.get_rank(),
                    dist.get_world_size(), backend)
        atexit.register(leave_process_group)
    return True


def leave_process_group() -> None:
    """Destroy the process group the Trainer joined; runs at exit unless the user did it first.

    A gloo group runs native threads (``pt_gloo_runloop``, ``gloo_tcp_loop``) that release the
    tensors of finished collectives. Left running into interpreter finalization, one that drops
    a tensor Python created must take the GIL, which a finalizing interpreter refuses by ending
    the thread; that unwinds through C++ ``noexcept`` frames and the process aborts
    (``terminate called without an active exception``, SIGABRT), so ``torchrun`` reports a
    failed run although training ended well. Destroying the group while the interpreter is
    still whole joins those threads, but only if nothing else holds the group: ``train()``
    drops its ``DistributedDataParallel`` wrapper when it returns, and the collection below
    frees wrappers left in reference cycles.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, device: torch.device, args: Any = None) -> torch.nn.Module:
    """``DistributedDataParallel`` around ``model`` when distributed, else ``model``.

    HF's ``ddp_find_unused_parameters``, ``ddp_bucket_cap_mb``, ``ddp_broadcast_buffers`` and
    ``ddp_static_graph`` are passed on when set.
    """
    if world_size() <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    options = {}
    for name, option in (("ddp_find_unused_parameters", "find_unused_parameters"),
                         ("ddp_bucket_cap_mb", "bucket_cap_mb"),
                         ("ddp_broadcast_buffers", "broadcast_buffers"),
                         ("ddp_static_graph", "static_graph")):
        value = getattr(args, name, None)
        if value is not None:
            options[option] = value
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, **options)


def mean_over_processes(value: torch.Tensor) -> torch.Tensor:
    """The mean of ``value`` across processes (HF averages the logged loss this way)."""
    if world_size() <= 1:
        return value
    reduced = value.detach().clone()
    dist.all_reduce(reduced)
    return reduced / world_size()


def sum_over_processes(value: torch.Tensor) -> torch.Tensor:
    if world_size() <= 1:
        return value
    reduced = value.detach().clone()
    dist.all_reduce(reduced)
    return reduced


def any_over_processes(*flags: bool) -> tuple[bool, ...]:
    """Each flag: true when it is true on any process (one collective every process calls)."""
    if world_size() <= 1:
        return flags
    device = torch.device("cuda", torch.cuda.current_device()) \
        if dist.get_backend() == "nccl" else torch.device("cpu")
    values = torch.tensor([int(flag) for flag in flags], device=device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return tuple(bool(value) for value in values.tolist())


def gather_objects(value: Any) -> list[Any]:
    """Every process's ``value``, in rank order (``[value]`` in one process)."""
    if world_size() <= 1:
        return [value]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


@contextmanager
def terminate_as_exception() -> Iterator[None]:
    """Turn SIGTERM into :class:`TrainingTerminated` while training, so ``on_exception`` fires.

    ``torchrun`` sends SIGTERM to the surviving workers when one fails, and schedulers send it
    before preempting a job; Python's default would end the process without a word to plugins.
    """
    try:
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum: int, frame: Any) -> None:
    raise TrainingTerminated("received SIGTERM; training stops")
