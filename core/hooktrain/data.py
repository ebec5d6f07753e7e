"""Data loading: a seeded, resumable batch order and moving batches to the device.

The training order depends only on ``seed`` and the epoch, never on the global RNG or the number
of processes: epoch ``e`` shuffles with a generator seeded ``seed + e``. That is what lets a run
resumed in the middle of an epoch skip exactly the batches it had already seen.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data import default_collate as torch_default_collate


class EpochBatchSampler:
    """Yields lists of sample indices: shuffled per epoch by seed, resumable, rank-sliced.

    The permutation covers the whole data set; each global batch of ``batch_size * world_size``
    indices is cut into ``world_size`` slices and rank ``r`` takes slice ``r``, so one process
    and N processes see the same global batches. A last global batch too short to give every
    rank a sample leaves the others out (evaluation: each sample is seen exactly once) or, with
    ``pad_uneven`` (training, where ranks must step together), lends them samples from the start
    of the epoch's order, as ``DistributedSampler`` pads.
    """

    def __init__(
        self, num_samples: int, batch_size: int, *, shuffle: bool, seed: int,
        drop_last: bool = False, rank: int = 0, world_size: int = 1, pad_uneven: bool = False,
    ) -> None:
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.pad_uneven = pad_uneven
        self.epoch = 0
        self.skip_batches = 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Select the epoch's order; ``skip_batches`` batches are left out once (resume)."""
        self.epoch = epoch
        self.skip_batches = skip_batches

    def _global_batch(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        full, rest = divmod(self.num_samples, self._global_batch())
        return full if self.drop_last or rest == 0 else full + 1

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator).tolist()
        else:
            order = list(range(self.num_samples))
        step = self._global_batch()
        skip, self.skip_batches = self.skip_batches, 0
        for index in range(skip, len(self)):
            batch = order[index * step:(index + 1) * step]
            if self.pad_uneven:
                per_rank = -(-len(batch) // self.world_size)
                mine = batch[self.rank * per_rank:(self.rank + 1) * per_rank]
                if not mine:
                    mine = order[:per_rank]  # training ranks step together: borrow from the start
            else:
                mine = rank_share(batch, self.rank, self.world_size)
            if mine:
                yield mine


def rank_share(batch: list[Any], rank: int, world_size: int) -> list[Any]:
    """Slice ``rank`` of a global batch, the slices in rank order and differing in length by at
    most one: a short last evaluation batch leaves a process empty only when it holds fewer
    samples than there are processes (FSDP needs every process to run the model)."""
    base, extra = divmod(len(batch), world_size)
    start = rank * base + min(rank, extra)
    return batch[start:start + base + (rank < extra)]


def make_dataloader(
    dataset: Dataset, batch_sampler: EpochBatchSampler, collate_fn: Callable[[list], Any],
    num_workers: int, pin_memory: bool, seed: int, persistent_workers: bool = False,
    prefetch_factor: int | None = None, multiprocessing_context: str | None = None,
) -> DataLoader:
    # The loader gets its own generator: left alone, each new iterator draws a seed from the
    # global torch RNG, so a resumed run would consume RNG at a different point than the
    # uninterrupted one and dropout masks would differ.
    generator = torch.Generator()
    generator.manual_seed(seed)
    workers = {}
    if num_workers > 0:  # DataLoader refuses these options without worker processes
        workers = {"persistent_workers": persistent_workers, "prefetch_factor": prefetch_factor,
                   "multiprocessing_context": multiprocessing_context}
    return DataLoader(
        dataset, batch_sampler=batch_sampler, collate_fn=collate_fn, num_workers=num_workers,
        pin_memory=pin_memory, generator=generator, **workers,
    )


def default_collate(samples: list[Any]) -> Any:
    """HF-style collation: dicts of tensors/numbers or tuples, stacked with torch's collate.

    As HF's ``default_data_collator``, a dict sample's ``label`` or ``label_ids`` (GLUE-style
    data sets) becomes the batch's ``labels``: integers as int64, floats as float32.
    """
    first = samples[0] if samples else None
    if isinstance(first, Mapping) and "labels" not in first:
        key = next((k for k in ("label", "label_ids") if first.get(k) is not None), None)
        if key is not None:
            labels = _stack_labels([sample[key] for sample in samples])
            rest = [{k: v for k, v in sample.items() if k not in ("label", "label_ids")}
                    for sample in samples]
            batch = torch_default_collate(rest) if rest[0] else {}
            return {**batch, "labels": labels}
    return torch_default_collate(samples)


def _stack_labels(values: list[Any]) -> torch.Tensor:
    if isinstance(values[0], torch.Tensor):
        return torch.stack(values)
    probe = values[0]
    while isinstance(probe, (list, tuple)) and probe:
        probe = probe[0]
    if hasattr(probe, "item"):  # numpy scalars and arrays
        probe = probe.item() if getattr(probe, "ndim", 0) == 0 else probe.flat[0].item()
    dtype = torch.long if isinstance(probe, int) and not isinstance(probe, bool) else torch.float
    return torch.tensor(np.asarray(values).tolist() if hasattr(values[0], "shape") else values,
                        dtype=dtype)


def unused_columns(model: torch.nn.Module, sample: Any, keep: Sequence[str]) -> list[str]:
    """Dict keys of ``sample`` that ``model.forward`` cannot take (HF's remove_unused_columns)."""
    if not isinstance(sample, Mapping):
        return []
    parameters = inspect.signature(model.forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return []
    keep = {*keep, "label", "label_ids"}  # the collator renames these to ``labels`` (HF)
    return [key for key in sample if key not in parameters and key not in keep]


def drop_columns(collate_fn: Callable[[list], Any],
                 columns: Sequence[str]) -> Callable[[list], Any]:
    dropped = frozenset(columns)

    def collate(samples: list[Any]) -> Any:
        return collate_fn([{k: v for k, v in s.items() if k not in dropped} for s in samples])

    return collate


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) batch to ``device`` without blocking the host."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return type(batch)({k: to_device(v, device) for k, v in batch.items()})
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def split_labels(inputs: Any, label_names: Sequence[str]) -> tuple[Any, Any]:
    """``(inputs without their labels, labels)``; labels are None when the batch has none.

    A dict's labels are its ``label_names`` keys (one tensor, or a tuple of several); a tuple or
    list of two or more holds them last.
    """
    if isinstance(inputs, Mapping):
        rest = dict(inputs)
        found = [rest.pop(name) for name in label_names if name in rest]
        return rest, (found[0] if len(found) == 1 else tuple(found) or None)
    if isinstance(inputs, (tuple, list)) and len(inputs) > 1:
        return inputs[:-1], inputs[-1]
    return inputs, None


def batch_size_of(batch: Any) -> int:
    """Number of samples in a collated batch (the first tensor's first dimension)."""
    if isinstance(batch, torch.Tensor):
        return batch.shape[0] if batch.dim() else 1
    values = batch.values() if isinstance(batch, Mapping) else batch
    for value in values:
        if isinstance(value, torch.Tensor) and value.dim():
            return value.shape[0]
    return 1
