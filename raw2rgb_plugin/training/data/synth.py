"""sRGB images → a synthetic-pair dataset, the source of generic (any-camera) profiles.

Each image is unprocessed into a Bayer DNG with a random camera (`unprocess`), and that DNG is
then treated like any user pair: decoded by the engine, normalised, cut into patches and stored
by `dataset_build`, with the image itself as the target. Synthetic pairs are aligned by
construction (alignment mode ``none``), and patches are taken at random positions
(`patches_per_image`), so many small and few large images both give a useful dataset.

`cameras_per_image` unprocesses each image that many times, each with its own random camera,
white balance, CFA order, noise and patch positions: a generic profile has to serve every
camera, and a few dozen images give only a few dozen cameras otherwise. The copies of an image
share its scene, so they all land in the same split and validation stays unseen.

The DNGs are kept in the dataset's `synthetic_raw/` by default: they are the pairs' provenance and
what `raw2rgb evaluate` renders with LibRaw for its baseline (`keep_raw=False` deletes them once
the pair's patches are stored).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from raw2rgb_plugin.training.data.build import RGB_EXTENSIONS, BuildOptions, Pair, ProgressCallback, build_dataset, load_rgb
from raw2rgb_plugin.training.data.store import DatasetError
from raw2rgb_plugin.training.data.unprocess import random_params, write_synthetic_dng

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


def find_images(rgb_dir: Path) -> list[Path]:
    rgb_dir = Path(rgb_dir)
    if not rgb_dir.is_dir():
        raise DatasetError(f"image folder {rgb_dir} does not exist", "check the path")
    images = sorted(p for p in rgb_dir.rglob("*") if p.is_file() and p.suffix.lower() in RGB_EXTENSIONS)
    if not images:
        raise DatasetError(f"{rgb_dir} holds no PNG, JPEG or TIFF images", "point it at a folder of sRGB images")
    return images


def _image_key(image: Path, rgb_dir: Path) -> str:
    relative = image.relative_to(rgb_dir).as_posix()
    digest = hashlib.sha1(relative.encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', image.stem)[:60]}-{digest}"


def synthesize_dataset(
    rgb_dir: Path, out: Path, options: SynthOptions, *, progress: ProgressCallback | None = None
) -> dict:
    """Unprocess every image in `rgb_dir` (recursively) into pairs and build the dataset at `out`."""
    build = options.build_options()
    rgb_dir, out = Path(rgb_dir), Path(out)
    images = find_images(rgb_dir)
    raw_dir = out / SYNTHETIC_RAW_DIR
    pairs = []
    copies = options.cameras_per_image
    for image in images:
        key = _image_key(image, rgb_dir)
        # Scene = the source image: all its patches, from every camera, land in the same split.
        scene = image.relative_to(rgb_dir).with_suffix("").as_posix()
        for copy in range(copies):
            name = key if copies == 1 else f"{key}-cam{copy}"
            pairs.append(Pair(raw=raw_dir / f"{name}.dng", rgb=image, scene=scene))

    def prepare(pair: Pair) -> tuple[Pair, Callable[[], None] | None]:
        # One generator per image, seeded by the run seed and the image: resumable, order-free.
        seed = int.from_bytes(hashlib.sha256(f"{options.seed}|{pair.raw.name}".encode()).digest()[:8], "little")
        rng = np.random.default_rng(seed)
        srgb, _ = load_rgb(pair.rgb)
        params = random_params(rng, noise=options.noise, inverse_tone_curve=options.inverse_tone_curve)
        pair.raw.parent.mkdir(parents=True, exist_ok=True)
        write_synthetic_dng(srgb, pair.raw, rng, params=params)
        cleanup = None if options.keep_raw else (lambda: pair.raw.unlink(missing_ok=True))
        return replace(pair, extra={"synthetic": params.to_dict(), "raw_kept": options.keep_raw}), cleanup

    return build_dataset(pairs, out, build, progress=progress, prepare=prepare)
