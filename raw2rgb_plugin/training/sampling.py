"""Data order and loaders for training: the same samples, in the same order, however the run goes.

Data order does not depend on any process-global RNG: each epoch's permutation is a function of
(seed, epoch), and each sample is loaded under RNGs seeded from (seed, epoch, index), so
augmentation is the same whichever worker or rank loads it and whether or not the run was
interrupted.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from raw2rgb_plugin.training.config import TrainConfig


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The RNG seed a sample is loaded under: a function of the run seed, epoch and index only."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


class ResumableSampler(DistributedSampler):
    """DistributedSampler (shuffled per epoch from `seed`, even shards) that can start part-way
    through an epoch and hands out `(index, sample_seed)` pairs for `SeededItems`."""

    def __init__(self, dataset: Dataset, *, num_replicas: int, rank: int, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.skip = 0

    def set_position(self, epoch: int, skip: int) -> None:
        self.set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in itertools.islice(super().__iter__(), self.skip, None):
            yield index, sample_seed(self.seed, self.epoch, index)

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)


class SeededItems(Dataset):
    """Loads item `index` with torch, numpy and python RNGs seeded for that sample, then restores
    the caller's RNG states (loading in the main process must not disturb training's RNG)."""

    def __init__(self, items: Dataset):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with seeded_rngs(seed):
            return self.items[index]


@contextlib.contextmanager
def seeded_rngs(seed: int) -> Iterator[None]:
    """torch's, numpy's and python's global RNGs seeded with `seed` inside; the caller's after."""
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


class RankShard(Dataset):
    """Every `world`-th item from `rank`: a rank's part of the validation split (no padding)."""

    def __init__(self, items: Dataset, rank: int, world: int):
        self.items, self.indices = items, list(range(rank, len(items), world))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.items[self.indices[i]]


def make_loader(
    items: Dataset, config: TrainConfig, device: torch.device, world_size: int, *, sampler: Any = None, drop_last: bool
) -> DataLoader:
    """A DataLoader of `config.batch_size`, with worker processes that are safe for LibRaw."""
    workers = config.workers
    if workers is None:
        workers = 0 if device.type == "cpu" else min(8, max(1, (os.cpu_count() or 2) // world_size))
    extra: dict = {}
    if workers > 0:
        # rawpy/LibRaw use OpenMP, which deadlocks in forked children: start workers fresh.
        extra = {"multiprocessing_context": "spawn", "persistent_workers": True, "prefetch_factor": 4}
    return DataLoader(
        items,
        batch_size=config.batch_size,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        # Own generator: creating an iterator must not draw from the global torch RNG.
        generator=torch.Generator().manual_seed(config.seed),
        **extra,
    )
