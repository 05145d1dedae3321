"""The quality report's held-out set: photographs no profile trains on, unprocessed into DNGs.

Each tile gets one random camera (seeded) and is unprocessed (`raw2rgb_plugin.training.data.unprocess`)
at every noise level × the four Bayer orders; the tile itself is the ground truth.

The X-Trans section (issue 25) unprocesses the same tiles, with the same cameras and noise levels,
into X-Trans DNGs at the phases real bodies start at, plus one clean Bayer DNG per tile for the
"within 1 dB of Bayer" comparison. LibRaw's X-Trans interpolation refuses frames under 512 px a
side, so these frames are the tile inside a window of the photograph (reflected where the
photograph ends) and every method is scored on the tile alone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from raw2rgb_plugin.io.exif_read import PhotoMetadata
from raw2rgb_plugin.io.noise_profile import iso_prior
from raw2rgb_plugin.pipeline.cfa import xtrans_pattern
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
#: X-Trans phases of real bodies (pipeline/cfa.py, rawspeed's cameras.xml): X-T3 and its peers
#: (0, 0), an uncompressed X-T2 or X100F (5, 0).
XTRANS_PHASES = ((0, 0), (5, 0))
#: LibRaw's xtrans_interpolate works in 512-px tiles and refuses a smaller frame ("Input/output
#: error"; measured on our X-Trans DNGs: 511×600 and 600×511 fail, 512×600 works).
LIBRAW_XTRANS_MIN_SIDE = 512
#: the Bayer order of the clean Bayer frame each X-Trans tile is compared with
XTRANS_BAYER_REFERENCE = "RGGB"


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
    #: (top, left, height, width) of the tile in the rendered frame: None when the frame is the tile
    inner: tuple[int, int, int, int] | None = None

    def tile_of(self, rendered: np.ndarray) -> np.ndarray:
        """The part of a rendering of `dng` that `truth` shows."""
        if self.inner is None:
            return rendered
        top, left, h, w = self.inner
        return rendered[top : top + h, left : left + w]


def xtrans_name(phase: tuple[int, int]) -> str:
    return f"X-Trans {phase[0]},{phase[1]}"


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


def window_margin(height: int, width: int) -> int:
    """Context around a tile so that LibRaw renders the frame: a multiple of 6, so the tile keeps
    the frame's X-Trans phase (and Bayer order)."""
    short = LIBRAW_XTRANS_MIN_SIDE - min(height, width)
    return -(-max(short, 0) // 12) * 6


def window(srgb: np.ndarray, box: tuple[int, int, int, int], margin: int) -> np.ndarray:
    """The tile `box` of `srgb` with `margin` pixels of the photograph around it, reflected past its edges."""
    top, left, h, w = box
    padded = np.pad(srgb, ((margin, margin), (margin, margin), (0, 0)), mode="symmetric")
    return np.ascontiguousarray(padded[top : top + h + 2 * margin, left : left + w + 2 * margin])


def build_xtrans_cases(images: list[HeldOutImage], workdir: Path, *, tile: int, tiles_per_image: int,
                       noise_levels: list[str], phases=XTRANS_PHASES) -> list[Case]:
    """The Bayer section's tiles and cameras as X-Trans DNGs (every level × `phases`), and one clean
    Bayer DNG of the same window per tile (cfa XTRANS_BAYER_REFERENCE)."""
    cases = []
    for i, image in enumerate(images):
        for t, box in enumerate(tile_boxes(*image.srgb.shape[:2], tile, tiles_per_image)):
            top, left, h, w = box
            truth = np.ascontiguousarray(image.srgb[top : top + h, left : left + w])
            margin = window_margin(h, w)
            scene, inner = window(image.srgb, box, margin), (margin, margin, h, w)
            camera = random_params(np.random.default_rng([SEED, i, t]), noise=False)  # the Bayer section's
            # the last seed key keeps these frames' noise apart from the Bayer section's (0–3)
            frames = [(noise, xtrans_name(p), xtrans_pattern(*p), 100 + k) for noise in noise_levels
                      for k, p in enumerate(phases)]
            frames.append(("none", XTRANS_BAYER_REFERENCE, XTRANS_BAYER_REFERENCE, 200))
            for noise, cfa, pattern, key in frames:
                n = list(NOISE_LEVELS).index(noise)
                shot, read = NOISE_LEVELS[noise]
                exif = PhotoMetadata(iso=ISO_LEVELS[noise]) if noise in ISO_LEVELS else None
                params = replace(camera, cfa_pattern=pattern, shot_noise=shot, read_noise=read)
                dng = workdir / f"xtrans-{image.name}-t{t}-{noise}-{cfa.replace(' ', '').replace(',', '_')}.dng"
                write_synthetic_dng(scene, dng, np.random.default_rng([SEED, i, t, n, key]), params=params,
                                    model=f"held-out {image.name} tile {t}", metadata=exif)
                cases.append(Case(image.name, t, box, noise, cfa, dng, truth, params.to_dict(), inner))
    return cases
