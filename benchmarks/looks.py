"""A battery of synthetic camera looks for `raw2rgb learn` (its tests and `learn_card.py`).

Each look maps the clean sRGB scene (H, W, 3) in [0, 1] to what a fictional camera's JPEG engine
makes of it. Together they cover what photographers ask a learned look to copy:

- `global`: an S-curve and 30 % more saturation — pointwise, so a tone curve + 3D LUT copies it
  (the learned profile must do no worse);
- `hue`: hue-dependent shifts — foliage pushed toward yellow, skies toward cyan, skin warmer and
  richer — still pointwise, but sharply so (what a coarse LUT blurs);
- `local`: clarity — each pixel's luminance pushed away from its neighbourhood's, which no
  pointwise map can do — over a gentle curve;
- `film`: a film emulation — toe (lifted blacks) and shoulder (rolled-off highlights), stronger
  chroma in the mid-tones, highlights desaturated, greens toward yellow, a warm cast.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _clip(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def _s_curve(x: np.ndarray, strength: float = 0.5) -> np.ndarray:
    return (1 - strength) * x + strength * x * x * (3.0 - 2.0 * x)


def _saturate(x: np.ndarray, factor: np.ndarray | float) -> np.ndarray:
    luma = (x @ _LUMA)[..., None]
    return luma + np.asarray(factor, dtype=np.float32) * (x - luma)


def global_look(srgb: np.ndarray) -> np.ndarray:
    """An S-curve and 30 % more saturation."""
    return _clip(_saturate(_s_curve(_clip(srgb)), 1.3))


def _hue_shift(srgb: np.ndarray, shifts: list[tuple[float, float, float, float]]) -> np.ndarray:
    """Rotate hue (degrees) and scale saturation around given centres: (centre, width, Δhue, ×sat),
    weighted by a raised cosine of the hue distance and by the pixel's own saturation."""
    hsv = cv2.cvtColor(_clip(srgb), cv2.COLOR_RGB2HSV)  # float32: H in degrees, S and V in [0, 1]
    hue, sat = hsv[..., 0], hsv[..., 1]
    d_hue = np.zeros_like(hue)
    gain = np.ones_like(sat)
    for centre, width, delta, scale in shifts:
        distance = np.abs((hue - centre + 180.0) % 360.0 - 180.0)
        weight = np.where(distance < width, 0.5 * (1 + np.cos(np.pi * distance / width)), 0.0) * np.clip(sat * 3, 0, 1)
        d_hue += weight * delta
        gain *= 1 + weight * (scale - 1)
    hsv[..., 0] = (hue + d_hue) % 360.0
    hsv[..., 1] = np.clip(sat * gain, 0.0, 1.0)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def hue_look(srgb: np.ndarray) -> np.ndarray:
    """Foliage toward yellow, skies toward cyan, skin warmer and richer; a light curve."""
    shifted = _hue_shift(srgb, [(110.0, 45.0, -18.0, 1.15),  # greens → yellow, a little richer
                                (215.0, 40.0, -12.0, 1.2),  # blues → cyan, deeper
                                (25.0, 25.0, -6.0, 1.25)])  # orange/skin → redder, richer
    return _clip(_s_curve(_clip(shifted), 0.25))


LOCAL_RADIUS = 0.02  # of the frame's long side
LOCAL_AMOUNT = 0.7


def local_look(srgb: np.ndarray) -> np.ndarray:
    """Clarity: luminance pushed away from its neighbourhood's mean, over a gentle curve."""
    x = _clip(srgb)
    luma = x @ _LUMA
    local = cv2.GaussianBlur(luma, (0, 0), LOCAL_RADIUS * max(x.shape[:2]))
    return _clip(_s_curve(_clip(x + (LOCAL_AMOUNT * (luma - local))[..., None]), 0.25))


def film_look(srgb: np.ndarray) -> np.ndarray:
    """Toe and shoulder, mid-tone chroma, desaturated highlights, greens toward yellow, warm."""
    x = _clip(srgb)
    luma = x @ _LUMA
    toe, shoulder = 0.04, 0.8  # lifted blacks; highlights compressed above the shoulder's knee
    curved = toe + (1 - toe) * np.where(luma < shoulder, luma / shoulder * 0.85,
                                        0.85 + 0.15 * (1 - np.exp(-(luma - shoulder) / (1 - shoulder) * 2)) / (1 - np.exp(-2)))
    chroma_gain = 1.35 - 0.6 * np.clip((luma - 0.6) / 0.4, 0, 1)  # richer mid-tones, paler highlights
    out = curved[..., None] + chroma_gain[..., None] * (x - luma[..., None])
    out = _hue_shift(_clip(out), [(110.0, 50.0, -15.0, 1.0)])
    return _clip(out * np.array([1.04, 1.0, 0.92], dtype=np.float32) + np.array([0.01, 0.0, -0.005], dtype=np.float32))


LOOKS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "global": global_look, "hue": hue_look, "local": local_look, "film": film_look,
}
