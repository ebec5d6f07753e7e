"""Data sets without a length (``torch.utils.data.IterableDataset``, streamed ``datasets``).

As in HF, training on one needs ``max_steps``: an "epoch" is then ``max_steps`` optimizer steps
and ends early if the data runs out (the next epoch iterates the data set again, calling its
``set_epoch(epoch)`` when it has one). Under ``torchrun`` every process iterates the whole data
set and keeps its slice of each global batch (:class:`RankSlices`, HF's ``IterableDatasetShard``),
so N processes see the batches one process sees at the same global batch size. A resumed run
skips the batches the checkpoint had consumed by reading them (HF does the same): the data set
must give the same order when iterated again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from hooktrain.data import rank_share


def has_length(dataset: Any) -> bool:
    """Whether ``len(dataset)`` works: map-style data sets, lists, ``datasets.Dataset``."""
    try:
        len(dataset)
    except (TypeError, NotImplementedError):
        return False
    return True


class RankSlices(torch.utils.data.IterableDataset):
    """This process's samples of ``dataset``: slice ``rank`` of every global batch.

    A last global batch too short to give every process a sample leaves the others out
    (evaluation: each sample once) or, with ``pad_uneven`` (training, where processes step
    together), fills their slices from the start of that batch, as HF's shard does.
    """

    def __init__(self, dataset: Any, batch_size: int, rank: int, world_size: int,
                 pad_uneven: bool) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.pad_uneven = pad_uneven

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:
        step = self.batch_size * self.world_size
        batch: list[Any] = []
        for sample in self.dataset:
            batch.append(sample)
            if len(batch) == step:
                yield from batch[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
                batch = []
        if batch and self.pad_uneven:
            per_rank = -(-len(batch) // self.world_size)
            yield from batch[self.rank * per_rank:(self.rank + 1) * per_rank] or batch[:per_rank]
        elif batch:
            yield from rank_share(batch, self.rank, self.world_size)


def iterable_dataloader(dataset: Any, batch_size: int, collate_fn: Any, rank: int,
                        world_size: int, pad_uneven: bool, num_workers: int,
                        pin_memory: bool) -> torch.utils.data.DataLoader:
    """Batches of ``batch_size`` from this process's slices of ``dataset``."""
    if world_size > 1:
        dataset = RankSlices(dataset, batch_size, rank, world_size, pad_uneven)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate_fn,
                                       num_workers=num_workers, pin_memory=pin_memory)


def start_epoch(dataloader: Any, epoch: int, skip_batches: int) -> Iterator[Any]:
    """The epoch's batches: ``set_epoch`` on the data when it has one, resumed batches read
    and dropped."""
    dataset = dataloader.dataset
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    batches = iter(dataloader)
    for _ in range(skip_batches):
        if next(batches, None) is None:
            break
    return batches


class SignatureColumns:
    """A collator wrapper that drops dict keys ``model.forward`` cannot take, decided on the
    first batch (an iterable data set has no ``dataset[0]`` to look at beforehand)."""

    def __init__(self, collate_fn: Any, model: torch.nn.Module, keep: list[str]) -> None:
        self.collate_fn, self.model, self.keep = collate_fn, model, keep
        self.dropped: frozenset[str] | None = None

    def __call__(self, samples: list[Any]) -> Any:
        from hooktrain.data import unused_columns

        if self.dropped is None:
            self.dropped = frozenset(unused_columns(self.model, samples[0], self.keep))
        if self.dropped:
            samples = [{k: v for k, v in s.items() if k not in self.dropped} for s in samples]
        return self.collate_fn(samples)
