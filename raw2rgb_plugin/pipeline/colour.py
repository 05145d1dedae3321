"""Colour constants and helpers shared by decoding, synthetic data and evaluation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where a tensor is made: `raw2rgb info` needs none (1.3 s)
    import torch

#: linear sRGB (D65) → CIE XYZ, IEC 61966-2-1.
SRGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ],
    dtype=np.float64,
)
XYZ_TO_SRGB = np.linalg.inv(SRGB_TO_XYZ)


def camera_to_srgb_from_xyz_to_camera(xyz_to_camera: np.ndarray) -> np.ndarray:
    """camera RGB (white balanced) → linear sRGB, from an XYZ(D65) → camera matrix.

    dcraw's construction: camera ← sRGB is XYZ→camera · sRGB→XYZ with rows normalised to 1, so
    that sRGB white lands on camera white once white balance has been applied; its inverse maps
    white-balanced camera RGB to linear sRGB with rows summing to 1.
    """
    camera_from_srgb = np.asarray(xyz_to_camera, dtype=np.float64)[:3, :3] @ SRGB_TO_XYZ
    row_sums = camera_from_srgb.sum(axis=1, keepdims=True)
    if np.any(np.abs(row_sums) < 1e-8):
        raise ValueError("degenerate camera matrix")
    camera_from_srgb = camera_from_srgb / row_sums
    return np.linalg.inv(camera_from_srgb)


def xyz_to_camera_from_camera_to_srgb(camera_to_srgb: np.ndarray) -> np.ndarray:
    """The XYZ(D65) → camera matrix `camera_to_srgb_from_xyz_to_camera` maps to `camera_to_srgb`.

    Rows come out scaled as dcraw normalises them (D65 white → camera 1, 1, 1), not at the
    camera's own scale: `io.raw_file` restores that with the daylight white balance.
    """
    return np.linalg.inv(np.asarray(camera_to_srgb, dtype=np.float64)) @ XYZ_TO_SRGB


def camera_native_to_display(native: np.ndarray, wb_gains_rgb: np.ndarray, camera_to_srgb: np.ndarray) -> np.ndarray:
    """Camera-native linear RGB (…, 3) → a finished sRGB image in [0, 1]: white balance, the
    camera matrix, sRGB encoding and the generic tone curve (a DNG's preview, not the product)."""
    matrix = np.asarray(camera_to_srgb, dtype=np.float32) * np.asarray(wb_gains_rgb, dtype=np.float32)[None, :]
    return tone_curve(srgb_encode(native.astype(np.float32) @ matrix.T))


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """The sRGB transfer function (IEC 61966-2-1) on values in [0, 1]."""
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055)


def srgb_encode_tensor(linear: torch.Tensor) -> torch.Tensor:
    """`srgb_encode` for torch tensors, on any device."""
    import torch

    linear = linear.clamp(0.0, 1.0)
    # clamp_min keeps pow away from 0, where its gradient is infinite; torch.where picks 12.92·x there.
    return torch.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear.clamp_min(0.0031308).pow(1 / 2.4) - 0.055)


def tone_curve(x):
    """The generic tone curve 3x² − 2x³ (Brooks et al.) on values in [0, 1], numpy or torch.

    `unprocess.inverse_tone_curve` is its inverse, so synthetic targets carry exactly this curve.
    """
    return x * x * (3.0 - 2.0 * x)


def srgb_decode(encoded: np.ndarray) -> np.ndarray:
    encoded = np.clip(encoded, 0.0, 1.0)
    return np.where(encoded <= 0.04045, encoded / 12.92, np.power((encoded + 0.055) / 1.055, 2.4))
