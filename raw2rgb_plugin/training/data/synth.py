"""sRGB images → a synthetic-pair dataset, the source of generic (any-camera) profiles.

Each image is unprocessed into a Bayer DNG with a random camera (`unprocess`), and that DNG is
then treated like any user pair: decoded by the engine, normalised, cut into patches and stored
by `build`, with the image itself as the target. The images are a `SyntheticPairs` source
(`sources`), which writes each DNG in the worker just before its pair is processed. Synthetic
pairs are aligned by construction (alignment mode ``none``), and patches are taken at random
positions (`patches_per_image`), so many small and few large images both give a useful dataset.

`cameras_per_image` unprocesses each image that many times, each with its own random camera,
white balance, CFA order, noise and patch positions: a generic profile has to serve every
camera, and a few dozen images give only a few dozen cameras otherwise. The copies of an image
share its scene, so they all land in the same split and validation stays unseen.

The DNGs are kept in the dataset's `synthetic_raw/` by default: they are the pairs' provenance and
what `raw2rgb evaluate` renders with LibRaw for its baseline (`keep_raw=False` deletes them once
the pair's patches are stored).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from raw2rgb_plugin.training.data.build import BuildOptions, build_dataset
from raw2rgb_plugin.training.data.options import ProgressCallback
from raw2rgb_plugin.training.data.sources import SyntheticPairs
from raw2rgb_plugin.training.data.store import DatasetError

SYNTHETIC_RAW_DIR = "synthetic_raw"


@dataclass
class SynthOptions:
    patches_per_image: int = 8  # per copy of an image
    cameras_per_image: int = 1
    patch_size: int = 224
    noise: bool = True
    inverse_tone_curve: bool = True
    seed: int = 0
    val_fraction: float = 0.1
    input_normalization: str = "linear-srgb"
    saliency: str = "builtin"
    trust_torchscript: bool = False
    keep_raw: bool = True
    previews: int = 4
    jobs: int = 1

    def build_options(self) -> BuildOptions:
        if self.patches_per_image < 1:
            raise DatasetError(f"--patches-per-image {self.patches_per_image} must be at least 1", "use e.g. 8")
        if self.cameras_per_image < 1:
            raise DatasetError(f"--cameras-per-image {self.cameras_per_image} must be at least 1", "use e.g. 4")
        return BuildOptions(
            patch_size=self.patch_size,
            patches_per_pair=self.patches_per_image,
            input_normalization=self.input_normalization,
            val_fraction=self.val_fraction,
            align="none",
            saliency=self.saliency,
            trust_torchscript=self.trust_torchscript,
            previews=self.previews,
            jobs=self.jobs,
            seed=self.seed,
            kind="synthetic",
        )


def synthesize_dataset(
    rgb_dir: Path, out: Path, options: SynthOptions, *, progress: ProgressCallback | None = None
) -> dict:
    """Unprocess every image in `rgb_dir` (recursively) into pairs and build the dataset at `out`."""
    build = options.build_options()
    source = SyntheticPairs(
        rgb_dir, Path(out) / SYNTHETIC_RAW_DIR, cameras=options.cameras_per_image, seed=options.seed,
        noise=options.noise, inverse_tone_curve=options.inverse_tone_curve, keep_raw=options.keep_raw,
    )
    return build_dataset(source, out, build, progress=progress)
