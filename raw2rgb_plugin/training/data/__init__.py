"""Training pairs: where they come from (files, CSV, synthetic), alignment, and the patch store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from raw2rgb_plugin.training.config import TrainConfig


def open_training_data(dataset: Path | None, synthetic: Path | None, config: TrainConfig):
    """A stored dataset, or pairs made on the fly from a folder of sRGB images (`config`'s options)."""
    if dataset is not None:
        from raw2rgb_plugin.training.data.store import open_dataset

        return open_dataset(dataset)
    from raw2rgb_plugin.training.data.onthefly import OnTheFlyDataset, OnTheFlyOptions

    assert synthetic is not None
    return OnTheFlyDataset(synthetic, OnTheFlyOptions(
        patch_size=config.synthetic_patch_size, patches_per_image=config.synthetic_patches_per_image,
        clean_fraction=config.synthetic_clean_fraction, hard_fraction=config.synthetic_hard_fraction,
        balance_sources=config.synthetic_balance_sources,
        noise_map=config.noise_map, seed=config.seed,
        output=config.synthetic_output, network_space=config.space, cfa=config.cfa,
    ))
