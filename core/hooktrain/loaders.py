"""The DataLoaders of :class:`~hooktrain.Trainer`: HF's override points and how they are built.

``get_train_dataloader``, ``get_eval_dataloader(eval_dataset=None)`` and
``get_test_dataloader`` are what the loop and ``evaluate``/``predict`` call, so a Trainer
subclass that overrides one is what runs. Map-style data sets get an
:class:`~hooktrain.data.EpochBatchSampler` (seeded, resumable, sliced per process); data sets
without a length go through :mod:`hooktrain.iterable`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from hooktrain.data import EpochBatchSampler, drop_columns, make_dataloader, unused_columns
from hooktrain.errors import ConfigError
from hooktrain.iterable import SignatureColumns, has_length, iterable_dataloader

if TYPE_CHECKING:
    from hooktrain.trainer import Trainer


class DataLoadersMixin:
    """The training, evaluation and test loaders; mixed into :class:`~hooktrain.Trainer`."""

    def get_train_dataloader(self: Trainer) -> torch.utils.data.DataLoader:
        args = self.args
        if not has_length(self.train_dataset):
            return self._iterable_dataloader(self.train_dataset,
                                             args.per_device_train_batch_size, pad_uneven=True)
        sampler = EpochBatchSampler(
            len(self.train_dataset), args.per_device_train_batch_size,
            shuffle=args.train_sampling_strategy == "random",
            seed=args.data_seed if args.data_seed is not None else args.seed,
            drop_last=args.dataloader_drop_last, rank=args.process_index,
            world_size=args.world_size, pad_uneven=True,
        )
        return self._dataloader(self.train_dataset, sampler)

    def _dataloader(self: Trainer, dataset: Any, sampler: EpochBatchSampler) -> torch.utils.data.DataLoader:
        args = self.args
        collate = self.data_collator
        if args.remove_unused_columns and len(dataset) > 0:
            columns = unused_columns(self.model, dataset[0], self.label_names)
            if columns:
                collate = drop_columns(collate, columns)
        pin = args.dataloader_pin_memory and self.device.type == "cuda"
        return make_dataloader(
            dataset, sampler, collate, args.dataloader_num_workers, pin, args.seed,
            persistent_workers=args.dataloader_persistent_workers,
            prefetch_factor=args.dataloader_prefetch_factor,
            multiprocessing_context=args.dataloader_multiprocessing_context,
        )

    def _iterable_dataloader(self: Trainer, dataset: Any, batch_size: int,
                             pad_uneven: bool) -> torch.utils.data.DataLoader:
        args = self.args
        collate = self.data_collator
        if args.remove_unused_columns:
            collate = SignatureColumns(collate, self.model, self.label_names)
        return iterable_dataloader(
            dataset, batch_size, collate, args.process_index, args.world_size, pad_uneven,
            args.dataloader_num_workers, args.dataloader_pin_memory and self.device.type == "cuda",
        )

    def get_eval_dataloader(self: Trainer, eval_dataset: Any = None) -> torch.utils.data.DataLoader:
        """The loader over ``eval_dataset`` (default: the Trainer's; a name picks one of a dict)."""
        dataset = self.eval_dataset if eval_dataset is None else eval_dataset
        if isinstance(dataset, str) and isinstance(self.eval_dataset, Mapping):
            dataset = self.eval_dataset[dataset]
        if dataset is None:
            raise ConfigError("get_eval_dataloader() needs an eval_dataset (in the Trainer or "
                              "here).")
        return self._ordered_dataloader(dataset)

    def get_test_dataloader(self: Trainer, test_dataset: Any) -> torch.utils.data.DataLoader:
        """The loader ``predict`` runs over (HF's override point)."""
        return self._ordered_dataloader(test_dataset)

    def _ordered_dataloader(self: Trainer, dataset: Any) -> torch.utils.data.DataLoader:
        if not has_length(dataset):
            return self._iterable_dataloader(dataset, self.args.per_device_eval_batch_size,
                                             pad_uneven=False)
        sampler = EpochBatchSampler(
            len(dataset), self.args.per_device_eval_batch_size, shuffle=False, seed=0,
            rank=self.args.process_index, world_size=self.args.world_size,
        )
        return self._dataloader(dataset, sampler)
