"""Colour difference: CIE L*a*b* and CIEDE2000, in numpy, for scoring colour fidelity.

Used where a number must say whether two renderings of one scene have the same colours — a DNG
against its source RAW (both rendered by LibRaw), a learned camera look against the camera's own
JPEG. Median ΔE2000 ≤ 3 is the usual "hard to see side by side" bar.
"""

from __future__ import annotations

import numpy as np

from raw2rgb_plugin.pipeline.colour import SRGB_TO_XYZ, srgb_decode


def linear_srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """Linear sRGB (…, 3) → CIELAB under D65 (the sRGB white as the reference white)."""
    xyz = rgb @ SRGB_TO_XYZ.T / SRGB_TO_XYZ.sum(axis=1)  # relative to the D65 white
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def delta_e2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 (Sharma, Wu & Dalal 2005), kL = kC = kH = 1."""
    (l1, a1, b1), (l2, a2, b2) = np.moveaxis(lab1, -1, 0), np.moveaxis(lab2, -1, 0)
    c_mean7 = ((np.hypot(a1, b1) + np.hypot(a2, b2)) / 2) ** 7
    g = 0.5 * (1 - np.sqrt(c_mean7 / (c_mean7 + 25.0**7)))
    a1, a2 = a1 * (1 + g), a2 * (1 + g)
    c1, c2 = np.hypot(a1, b1), np.hypot(a2, b2)
    h1, h2 = np.degrees(np.arctan2(b1, a1)) % 360, np.degrees(np.arctan2(b2, a2)) % 360
    dh = np.where(c1 * c2 == 0, 0, (h2 - h1 + 180) % 360 - 180)
    dl, dc, d_hue = l2 - l1, c2 - c1, 2 * np.sqrt(c1 * c2) * np.sin(np.radians(dh / 2))
    l_mean, c_mean = (l1 + l2) / 2, (c1 + c2) / 2
    h_mean = np.where(c1 * c2 == 0, h1 + h2,
                      np.where(np.abs(h1 - h2) <= 180, (h1 + h2) / 2, (h1 + h2 + 360) / 2 % 360))
    t = (1 - 0.17 * np.cos(np.radians(h_mean - 30)) + 0.24 * np.cos(np.radians(2 * h_mean))
         + 0.32 * np.cos(np.radians(3 * h_mean + 6)) - 0.20 * np.cos(np.radians(4 * h_mean - 63)))
    s_l = 1 + 0.015 * (l_mean - 50) ** 2 / np.sqrt(20 + (l_mean - 50) ** 2)
    s_c, s_h = 1 + 0.045 * c_mean, 1 + 0.015 * c_mean * t
    r_t = (-2 * np.sqrt(c_mean**7 / (c_mean**7 + 25.0**7))
           * np.sin(np.radians(60 * np.exp(-(((h_mean - 275) / 25) ** 2)))))
    return np.sqrt((dl / s_l) ** 2 + (dc / s_c) ** 2 + (d_hue / s_h) ** 2 + r_t * (dc / s_c) * (d_hue / s_h))


def srgb_to_lab(srgb: np.ndarray) -> np.ndarray:
    """sRGB-encoded (…, 3) in [0, 1] → CIELAB (D65)."""
    return linear_srgb_to_lab(srgb_decode(srgb))


def median_delta_e2000(srgb_a: np.ndarray, srgb_b: np.ndarray) -> float:
    """Median CIEDE2000 between two sRGB-encoded images (…, 3) in [0, 1]."""
    return float(np.median(delta_e2000(srgb_to_lab(srgb_a), srgb_to_lab(srgb_b))))
