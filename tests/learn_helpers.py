"""A known camera "look" and synthetic cards of RAWs that carry it (for `raw2rgb learn`'s tests).

The look is a function of the clean sRGB scene with parts a global curve or 3D LUT can fit — a
tone S-curve, more saturation, a hue rotation, a colour cast that grows in the shadows — and one
it cannot: local contrast (the luminance pushed away from its neighbourhood's mean), so a pixel's
colour depends on what surrounds it. Each frame is written as a DNG (unprocessed from the scene
by one fixed camera, as a card comes from one body) with the look as a sidecar JPEG and/or as
the DNG's embedded preview.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from raw2rgb_plugin.io.dng_write import write_bayer_dng
from raw2rgb_plugin.training.data.unprocess import UnprocessParams, random_params, unprocess

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: σ of the local-contrast neighbourhood, as a fraction of the frame's long side, and its strength
LOCAL_RADIUS = 0.02
LOCAL_AMOUNT = 0.7


def camera_look(srgb: np.ndarray) -> np.ndarray:
    """sRGB (H, W, 3) in [0, 1] → the same scene as the fictional camera renders it."""
    return global_look(local_contrast(srgb))


def local_contrast(srgb: np.ndarray, amount: float | None = None) -> np.ndarray:
    """Each pixel's luminance pushed away from its neighbourhood's: what no global map can do."""
    x = np.clip(srgb.astype(np.float32), 0.0, 1.0)
    luma = x @ _LUMA
    local = cv2.GaussianBlur(luma, (0, 0), LOCAL_RADIUS * max(x.shape[:2]))
    amount = LOCAL_AMOUNT if amount is None else amount
    return np.clip(x + (amount * (luma - local))[..., None], 0.0, 1.0)


def global_look(srgb: np.ndarray) -> np.ndarray:
    """The pointwise part: tone S-curve, saturation, hue rotation and cool shadows."""
    x = np.clip(srgb.astype(np.float32), 0.0, 1.0)
    x = 0.55 * x + 0.45 * x * x * (3.0 - 2.0 * x)  # tone S-curve
    luma = x @ _LUMA
    chroma = (x - luma[..., None]) * 1.35  # saturation
    # hue: rotate chroma about the grey axis (Rodrigues), then put luma back where the curve put it
    k = np.full(3, 1 / np.sqrt(3), dtype=np.float32)
    angle = np.radians(14.0)
    rotated = (chroma * np.cos(angle) + np.cross(k, chroma) * np.sin(angle)
               + k * (chroma @ k)[..., None] * (1 - np.cos(angle)))
    rotated -= (rotated @ _LUMA)[..., None]
    shadows = ((1.0 - luma) ** 3)[..., None] * np.array([-0.05, 0.0, 0.07], dtype=np.float32)  # cool shadows
    return np.clip(luma[..., None] + rotated + shadows, 0.0, 1.0).astype(np.float32)


def jpeg_bytes(srgb: np.ndarray, quality: int = 90, *, orientation: int = 1) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray((np.clip(srgb, 0, 1) * 255 + 0.5).astype(np.uint8))
    exif = Image.Exif()
    if orientation != 1:
        exif[274] = orientation
    image.save(buffer, format="JPEG", quality=quality, exif=exif.tobytes() if orientation != 1 else b"")
    return buffer.getvalue()


def card_camera(seed: int = 7) -> UnprocessParams:
    """One fixed noise-free camera (RGGB, 14 bit) for every frame of a card."""
    return random_params(np.random.default_rng(seed), noise=False, cfa_pattern="RGGB")


def write_look_frame(folder: Path, name: str, scene: np.ndarray, *, params: UnprocessParams, sidecar: bool = True,
                     embedded: bool = False, preview_scale: float = 1.0, suffix: str = ".JPG",
                     look: Callable[[np.ndarray], np.ndarray] = camera_look) -> Path:
    """`name`.dng of `scene`, with `look` as a sidecar JPEG and/or the embedded preview."""
    folder.mkdir(parents=True, exist_ok=True)
    looked = look(scene)
    mosaic = unprocess(scene, params, np.random.default_rng(0))
    preview = None
    if embedded:
        h, w = looked.shape[:2]
        small = cv2.resize(looked, (round(w * preview_scale), round(h * preview_scale)), interpolation=cv2.INTER_AREA)
        preview = jpeg_bytes(small)
    raw = folder / f"{name}.dng"
    write_bayer_dng(raw, mosaic, params.cfa_pattern, black_level=params.black_level, white_level=params.white_level,
                    color_matrix1=np.asarray(params.xyz_to_camera), as_shot_neutral=params.as_shot_neutral,
                    make="Lookalike", model="Card One", preview_jpeg=preview)
    if sidecar:
        (folder / f"{name}{suffix}").write_bytes(jpeg_bytes(looked))
    return raw
