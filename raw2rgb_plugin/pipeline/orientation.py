"""Image orientation, in one place: LibRaw's `flip` and the EXIF Orientation tag.

A `flip` is LibRaw's bit set, applied in this order: 1 mirrors columns, 2 mirrors rows, 4
transposes. Every EXIF orientation is one of the eight flips (`EXIF_TO_FLIP`), so the engine,
dataset building and the benchmarks share these three functions, for torch tensors (…, H, W)
and numpy arrays (H, W, …).
"""

from __future__ import annotations

import numpy as np
import torch

#: EXIF Orientation (1–8) → LibRaw flip bits. E.g. 6 (rotate 90° clockwise) = mirror rows, then
#: transpose; 8 (rotate 90° counter-clockwise) = mirror columns, then transpose.
EXIF_TO_FLIP = {1: 0, 2: 1, 3: 3, 4: 2, 5: 4, 6: 6, 7: 7, 8: 5}


def orient(image: torch.Tensor, flip: int) -> torch.Tensor:
    """Apply `flip` to a (…, H, W) tensor: column/row mirrors first, then the transpose."""
    if flip & 1:
        image = image.flip(-1)
    if flip & 2:
        image = image.flip(-2)
    if flip & 4:
        image = image.transpose(-1, -2)
    return image


def orient_hwc(image: np.ndarray, flip: int) -> np.ndarray:
    """`orient` for an (H, W, …) numpy array; the result is contiguous."""
    if flip & 1:
        image = image[:, ::-1]
    if flip & 2:
        image = image[::-1]
    if flip & 4:
        image = np.swapaxes(image, 0, 1)
    return np.ascontiguousarray(image)


def unorient_hwc(image: np.ndarray, flip: int) -> np.ndarray:
    """The inverse of `orient_hwc`: a display-oriented (H, W, …) array back to sensor orientation."""
    if flip & 4:
        image = np.swapaxes(image, 0, 1)
    if flip & 2:
        image = image[::-1]
    if flip & 1:
        image = image[:, ::-1]
    return np.ascontiguousarray(image)


def exif_orient_hwc(image: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF Orientation tag to an (H, W, …) array, as PIL's `exif_transpose` does."""
    return orient_hwc(image, EXIF_TO_FLIP.get(int(orientation), 0))
