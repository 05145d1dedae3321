"""The quality report's held-out set: photographs no profile trains on, unprocessed into DNGs.

Each tile gets one random camera (seeded) and is unprocessed (`raw2rgb_plugin.training.data.unprocess`)
at every noise level × the four Bayer orders; the tile itself is the ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from raw2rgb_plugin.io.exif_read import PhotoMetadata
from raw2rgb_plugin.io.noise_profile import iso_prior
from raw2rgb_plugin.training.data.unprocess import BAYER_ORDERS, random_params, write_synthetic_dng

from skimage_wheel import SAMPLE_IMAGES, SKIMAGE_VERSION, find_or_download_wheel, read_sample_image

#: Fixed shot/read pairs on Brooks et al.'s line log read = 2.18 · log shot + 1.2 (without its
#: jitter), spanning their shot range [1e-4, 0.012]; values are variances on [0, 1] signal.
#: "Overall" and the per-tile means stay over these four, so they compare with earlier reports.
SYNTHETIC_LEVELS: dict[str, tuple[float, float]] = {
    "none": (0.0, 0.0),
    "low": (1e-4, float(np.exp(2.18 * np.log(1e-4) + 1.2))),
    "medium": (1e-3, float(np.exp(2.18 * np.log(1e-3) + 1.2))),
    "high": (1e-2, float(np.exp(2.18 * np.log(1e-2) + 1.2))),
}
#: Camera-realistic levels: darktable's median camera at these ISOs (`iso_prior`, raw units);
#: their DNGs carry the ISO in EXIF, as a camera's would, for the engine's noise estimate.
ISO_LEVELS = {"iso100": 100, "iso1600": 1600, "iso12800": 12800}
NOISE_LEVELS: dict[str, tuple[float, float]] = {
    **SYNTHETIC_LEVELS,
    **{name: (iso_prior(iso).shot, iso_prior(iso).read) for name, iso in ISO_LEVELS.items()},
}
HELD_OUT_IMAGES = ("astronaut", "coffee", "chelsea", "rocket")
SEED = 4


@dataclass
class HeldOutImage:
    name: str
    srgb: np.ndarray  # float64 (H, W, 3) in [0, 1]
    title: str
    licence: str
    source: str


@dataclass
class Case:
    image: str
    tile: int
    box: tuple[int, int, int, int]  # (top, left, height, width) in the source image
    noise: str
    cfa: str
    dng: Path
    truth: np.ndarray  # float64 (H, W, 3)
    camera: dict


def noise_text(level: str) -> str:
    shot, read = NOISE_LEVELS[level]
    if shot == read == 0:
        return f"{level} (quantisation only)"
    iso = f"; ISO {ISO_LEVELS[level]} in EXIF" if level in ISO_LEVELS else ""
    return f"{level} (shot {shot:.1e}, read {read:.1e}{iso})"


def held_out_images(images_dir: Path | None, wheel: Path | None) -> list[HeldOutImage]:
    """User-supplied images from `images_dir`, else the scikit-image wheel's photographs."""
    if images_dir:
        from PIL import Image

        suffixes = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
        files = sorted(p for p in Path(images_dir).iterdir() if p.suffix.lower() in suffixes)
        if not files:
            raise SystemExit(f"error: {images_dir} holds no PNG/JPEG/TIFF images")
        out = []
        for path in files:
            with Image.open(path) as im:
                srgb = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
            out.append(HeldOutImage(path.stem, srgb, path.name, "as its owner states (user-supplied)", str(path)))
        return out
    found = find_or_download_wheel(wheel)
    return [HeldOutImage(name, read_sample_image(found, name), SAMPLE_IMAGES[name].title, SAMPLE_IMAGES[name].licence,
                         f"`{SAMPLE_IMAGES[name].member}`, scikit-image {SKIMAGE_VERSION} wheel")
            for name in HELD_OUT_IMAGES]


def tile_boxes(height: int, width: int, tile: int, count: int) -> list[tuple[int, int, int, int]]:
    """Up to `count` non-overlapping tile×tile boxes from a centred grid, spread over it."""
    ny, nx = height // tile, width // tile
    if ny == 0 or nx == 0:
        side = min(height, width) // 2 * 2
        return [((height - side) // 2, (width - side) // 2, side, side)]
    y0, x0 = (height - ny * tile) // 2, (width - nx * tile) // 2
    grid = [(y0 + r * tile, x0 + c * tile, tile, tile) for r in range(ny) for c in range(nx)]
    if count == 1:
        return [grid[(len(grid) - 1) // 2]]
    picks = sorted(set(np.linspace(0, len(grid) - 1, min(count, len(grid))).round().astype(int).tolist()))
    return [grid[i] for i in picks]


def build_cases(images: list[HeldOutImage], workdir: Path, *, tile: int, tiles_per_image: int,
                noise_levels: list[str]) -> list[Case]:
    cases = []
    for i, image in enumerate(images):
        for t, box in enumerate(tile_boxes(*image.srgb.shape[:2], tile, tiles_per_image)):
            top, left, h, w = box
            truth = np.ascontiguousarray(image.srgb[top : top + h, left : left + w])
            # One camera per tile: every noise level and CFA order sees the same colours.
            camera = random_params(np.random.default_rng([SEED, i, t]), noise=False)
            for noise in noise_levels:
                # Seeded by the level's place in NOISE_LEVELS, so adding levels keeps the others' noise.
                n = list(NOISE_LEVELS).index(noise)
                shot, read = NOISE_LEVELS[noise]
                exif = PhotoMetadata(iso=ISO_LEVELS[noise]) if noise in ISO_LEVELS else None
                for c, cfa in enumerate(BAYER_ORDERS):
                    params = replace(camera, cfa_pattern=cfa, shot_noise=shot, read_noise=read)
                    dng = workdir / f"{image.name}-t{t}-{noise}-{cfa}.dng"
                    write_synthetic_dng(truth, dng, np.random.default_rng([SEED, i, t, n, c]), params=params,
                                        model=f"held-out {image.name} tile {t}", metadata=exif)
                    cases.append(Case(image.name, t, box, noise, cfa, dng, truth, params.to_dict()))
    return cases
