"""``DataLoaderBuilder``: how the Trainer's DataLoaders are built.

``Trainer.get_train_dataloader``, ``get_eval_dataloader(eval_dataset=None)`` and
``get_test_dataloader`` delegate here, and the loop and ``evaluate``/``predict`` call those
Trainer methods, so a subclass that overrides one is what runs. Map-style data sets get an
:class:`~hooktrain.data.EpochBatchSampler` (seeded, resumable, sliced per process); data sets
without a length go through :mod:`hooktrain.iterable`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from hooktrain.data import (
    EpochBatchSampler,
    drop_columns,
    make_dataloader,
    unused_columns,
)
from hooktrain.errors import ConfigError
from hooktrain.iterable import SignatureColumns, has_length, iterable_dataloader

if TYPE_CHECKING:
    from hooktrain.trainer import Trainer


class DataLoaderBuilder:
    """The training, evaluation and test loaders of one Trainer, from its current settings."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def train(self) -> torch.utils.data.DataLoader:
        """Over ``train_dataset``: shuffled (``train_sampling_strategy``), padded across ranks."""
        trainer = self.trainer
        args, dataset = trainer.args, trainer.train_dataset
        if not has_length(dataset):
            return self._iterable(dataset, args.per_device_train_batch_size, pad_uneven=True)
        sampler = EpochBatchSampler(
            len(dataset), args.per_device_train_batch_size,
            shuffle=args.train_sampling_strategy == "random",
            seed=args.data_seed if args.data_seed is not None else args.seed,
            drop_last=args.dataloader_drop_last, rank=args.process_index,
            world_size=args.world_size, pad_uneven=True,
        )
        return self._mapped(dataset, sampler)

    def evaluation(self, eval_dataset: Any) -> torch.utils.data.DataLoader:
        """Over ``eval_dataset`` (default: the Trainer's; a name picks one of a dict)."""
        trainer = self.trainer
        dataset = trainer.eval_dataset if eval_dataset is None else eval_dataset
        if isinstance(dataset, str) and isinstance(trainer.eval_dataset, Mapping):
            dataset = trainer.eval_dataset[dataset]
        if dataset is None:
            raise ConfigError("get_eval_dataloader() needs an eval_dataset (in the Trainer or "
                              "here).")
        return self.ordered(dataset)

    def ordered(self, dataset: Any) -> torch.utils.data.DataLoader:
        """In data-set order, each sample once over all processes (evaluation, prediction)."""
        args = self.trainer.args
        if not has_length(dataset):
            return self._iterable(dataset, args.per_device_eval_batch_size, pad_uneven=False)
        sampler = EpochBatchSampler(
            len(dataset), args.per_device_eval_batch_size, shuffle=False, seed=0,
            rank=args.process_index, world_size=args.world_size,
        )
        return self._mapped(dataset, sampler)

    def _mapped(self, dataset: Any, sampler: EpochBatchSampler) -> torch.utils.data.DataLoader:
        trainer = self.trainer
        args = trainer.args
        collate = trainer.data_collator
        if args.remove_unused_columns and len(dataset) > 0:
            columns = unused_columns(trainer.model, dataset[0], trainer.label_names)
            if columns:
                collate = drop_columns(collate, columns)
        pin = args.dataloader_pin_memory and trainer.device.type == "cuda"
        return make_dataloader(
            dataset, sampler, collate, args.dataloader_num_workers, pin, args.seed,
            persistent_workers=args.dataloader_persistent_workers,
            prefetch_factor=args.dataloader_prefetch_factor,
            multiprocessing_context=args.dataloader_multiprocessing_context,
        )

    def _iterable(self, dataset: Any, batch_size: int,
                  pad_uneven: bool) -> torch.utils.data.DataLoader:
        trainer = self.trainer
        args = trainer.args
        collate = trainer.data_collator
        if args.remove_unused_columns:
            collate = SignatureColumns(collate, trainer.model, trainer.label_names)
        return iterable_dataloader(
            dataset, batch_size, collate, args.process_index, args.world_size, pad_uneven,
            args.dataloader_num_workers,
            args.dataloader_pin_memory and trainer.device.type == "cuda",
        )
