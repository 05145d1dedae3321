"""The options of a dataset build, and which of them decide what the shards hold."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from raw2rgb_plugin.training.data.align import ALIGN_MODES
from raw2rgb_plugin.training.data.store import MARGIN, DatasetError
from raw2rgb_plugin.vocabulary import INPUT_NORMALIZATIONS

#: G1 has three stride-2 stages: packed patches must be a multiple of 8.
PATCH_MULTIPLE = 8

#: progress(event, data) with event "start", "pair" or "done"; called from the building thread.
ProgressCallback = Callable[[str, dict], None]


@dataclass
class BuildOptions:
    patch_size: int = 224  # packed pixels (the seed's 224 ↔ 448 sensor pixels)
    stride: int | None = None  # packed; default = patch_size (no overlap)
    patches_per_pair: int | None = None  # random positions instead of a grid (synthetic data)
    input_normalization: str = "linear-srgb"
    val_fraction: float = 0.1
    align: str = "auto"
    saliency: str = "builtin"
    trust_torchscript: bool = False
    min_pair_score: float = 0.3
    min_patch_score: float = 0.5
    max_patch_shift: float = 2.0  # sensor pixels of residual displacement a patch may keep
    previews: int = 4
    jobs: int = 1
    seed: int = 0
    kind: str = "pairs"

    def check(self) -> None:
        if self.patch_size < PATCH_MULTIPLE or self.patch_size % PATCH_MULTIPLE:
            raise DatasetError(f"patch size {self.patch_size} is not a multiple of {PATCH_MULTIPLE}",
                               "G1 halves the packed size three times: use e.g. 128 or 224")
        if self.stride is not None and self.stride < 1:
            raise DatasetError(f"stride {self.stride} must be positive", "use the patch size (no overlap)")
        if self.input_normalization not in INPUT_NORMALIZATIONS:
            raise DatasetError(f"unknown input normalisation {self.input_normalization!r}",
                               f"use one of {', '.join(INPUT_NORMALIZATIONS)}")
        if self.align not in ALIGN_MODES:
            raise DatasetError(f"unknown alignment mode {self.align!r}", f"use one of {', '.join(ALIGN_MODES)}")
        if not 0 <= self.val_fraction < 1:
            raise DatasetError(f"validation fraction {self.val_fraction} is outside [0, 1)", "use e.g. 0.1")
        if self.jobs < 1:
            raise DatasetError(f"--jobs {self.jobs} must be at least 1", "use 1 or the number of cores")

    def content_key(self, saliency: dict) -> dict:
        """Options that decide what the shards hold: a resumed build must use the same."""
        return {
            "kind": self.kind,
            "patch_size": self.patch_size,
            "margin": MARGIN,
            "stride": self.stride or self.patch_size,
            "patches_per_pair": self.patches_per_pair,
            "align": self.align,
            "min_pair_score": self.min_pair_score,
            "min_patch_score": self.min_patch_score,
            "max_patch_shift": self.max_patch_shift,
            "saliency": saliency,
            "seed": self.seed,
        }
