"""Synthetic frames seen through a real lens: lensfun's own model of a lens in its database applied
in reverse (distortion, lateral CA, vignetting) to a known scene, written as a DNG whose EXIF
names that camera and lens — what `convert --lens auto` must undo.

The scene is a grid of small Gaussian dots on grey: each dot's centroid, per colour, is a feature
point whose true position is known, so geometry and lateral CA are measured to a fraction of a
pixel (`dot_centroids`).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from raw2rgb_plugin.io.dng_write import write_bayer_dng
from raw2rgb_plugin.io.exif_read import PhotoMetadata
from raw2rgb_plugin.pipeline.colour import XYZ_TO_SRGB

#: a kit zoom at its wide end, with distortion, TCA and vignetting calibrated in lensfun's database
CAMERA = ("Canon", "Canon EOS 550D")
LENS = "EF-S18-55mm f/3.5-5.6 IS"
FOCAL, APERTURE = 18.0, 3.5
DOT_SPACING, DOT_SIGMA = 48, 1.6
BLACK, WHITE = 256, 16383


def metadata(lens_model: str | None = LENS) -> PhotoMetadata:
    return PhotoMetadata(make=CAMERA[0], model=CAMERA[1], lens_make="Canon", lens_model=lens_model,
                         focal_length=Fraction(FOCAL).limit_denominator(100),
                         f_number=Fraction(APERTURE).limit_denominator(100), iso=100)


def lensfun_lens():
    import lensfunpy

    database = lensfunpy.Database(load_common=False, load_bundled=True)
    camera = database.find_cameras(*CAMERA)[0]
    return camera, database.find_lenses(camera, None, LENS)[0]


def dot_grid(height: int, width: int, *, level: float = 0.18, dot: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Linear (H, W, 3) grey scene with white-ish Gaussian dots, and the dots' (N, 2) x, y centres
    (half-pixel offsets, so nothing sits on the pixel lattice by luck)."""
    ys = np.arange(DOT_SPACING // 2, height - DOT_SPACING // 4, DOT_SPACING) + 0.3
    xs = np.arange(DOT_SPACING // 2, width - DOT_SPACING // 4, DOT_SPACING) + 0.7
    centres = np.array([(x, y) for y in ys for x in xs])
    impulses = np.zeros((height, width))
    for x, y in centres:  # a sub-pixel impulse (bilinear split), then one Gaussian blur
        x0, y0 = int(x), int(y)
        fx, fy = x - x0, y - y0
        impulses[y0:y0 + 2, x0:x0 + 2] += np.outer([1 - fy, fy], [1 - fx, fx])
    dots = cv2.GaussianBlur(impulses, (0, 0), DOT_SIGMA, borderType=cv2.BORDER_REFLECT) * (2 * np.pi * DOT_SIGMA**2)
    scene = level + dot * dots
    return np.repeat(scene[..., None], 3, axis=2), centres


def through_lens(scene: np.ndarray, *, geometry: bool = True, vignetting: bool = True) -> np.ndarray:
    """What the lens makes of a linear (H, W, 3) `scene` (lensfun's model in reverse)."""
    import lensfunpy

    camera, lens = lensfun_lens()
    height, width = scene.shape[:2]
    out = scene.astype(np.float32).copy()
    if geometry:
        modifier = lensfunpy.Modifier(lens, camera.crop_factor, width, height)
        modifier.initialize(FOCAL, APERTURE, 1000.0, scale=1.0, pixel_format=np.float32, reverse=True,
                            flags=lensfunpy.ModifyFlags.DISTORTION | lensfunpy.ModifyFlags.TCA)
        coords = modifier.apply_subpixel_geometry_distortion()  # (H, W, 3, 2): where to sample the scene
        for c in range(3):
            out[..., c] = cv2.remap(scene[..., c].astype(np.float32), coords[..., c, 0], coords[..., c, 1],
                                    cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    if vignetting:
        modifier = lensfunpy.Modifier(lens, camera.crop_factor, width, height)
        modifier.initialize(FOCAL, APERTURE, 1000.0, scale=1.0, pixel_format=np.float32, reverse=True,
                            flags=lensfunpy.ModifyFlags.VIGNETTING)
        modifier.apply_color_modification(out)
    return out


def write_lens_dng(path: Path, linear_srgb: np.ndarray, *, lens_model: str | None = LENS) -> Path:
    """A camera-neutral RGGB DNG of a linear-sRGB scene (identity-like colour: the camera's RGB is
    sRGB, white balance 1), whose EXIF names `CAMERA` and `lens_model`."""
    height, width = linear_srgb.shape[:2]
    mosaic = np.empty((height, width), np.float64)
    mosaic[0::2, 0::2] = linear_srgb[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = linear_srgb[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = linear_srgb[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = linear_srgb[1::2, 1::2, 2]
    raw = np.clip(BLACK + mosaic * (WHITE - BLACK), 0, WHITE).round().astype(np.uint16)
    write_bayer_dng(path, raw, "RGGB", black_level=BLACK, white_level=WHITE,
                    color_matrix1=XYZ_TO_SRGB, as_shot_neutral=(1.0, 1.0, 1.0),
                    make=CAMERA[0], model=CAMERA[1], metadata=metadata(lens_model))
    return path


def dot_centroids(image: np.ndarray, guesses: np.ndarray, radius: int = 6) -> np.ndarray:
    """(N, 3, 2) x, y centroid of each dot near `guesses` (N, 2), per colour, on a linear (H, W, 3)
    image with its local background removed; NaN where a window leaves the image."""
    height, width = image.shape[:2]
    out = np.full((len(guesses), 3, 2), np.nan)
    offsets = np.arange(-radius, radius + 1)
    for i, (gx, gy) in enumerate(guesses):
        x0, y0 = int(round(gx)), int(round(gy))
        if not (radius <= x0 < width - radius and radius <= y0 < height - radius):
            continue
        window = image[y0 - radius:y0 + radius + 1, x0 - radius:x0 + radius + 1].astype(np.float64)
        for c in range(3):
            w = window[..., c] - np.median(window[..., c])
            w = np.clip(w, 0, None)
            total = w.sum()
            if total > 0:
                out[i, c] = (x0 + (w.sum(0) @ offsets) / total, y0 + (w.sum(1) @ offsets) / total)
    return out
