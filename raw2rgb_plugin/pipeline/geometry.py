"""Non-square sensor pixels (Nikon D1X, some DNGs' DefaultScale) resampled to square ones.

LibRaw reports each pixel's width ÷ height as `pixel_aspect` and, when it renders, enlarges the
image along the pixels' longer side, so nothing is thrown away: more rows when the pixels are
taller than wide (aspect < 1: the D1X's 0.5 turns 4024×1324 into 4024×2648), more columns when
they are wider than tall. The engine does the same after rendering and before orientation (the aspect is the
sensor's), with a bicubic filter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only `to_square_pixels` needs torch; `stretched_size` is for the decoder too
    import torch


def stretched_size(height: int, width: int, pixel_aspect: float) -> tuple[int, int]:
    """(height, width) of an image of `pixel_aspect` pixels resampled to square ones, as LibRaw's."""
    if pixel_aspect < 1:
        return int(height / pixel_aspect + 0.5), width
    if pixel_aspect > 1:
        return height, int(width * pixel_aspect + 0.5)
    return height, width


def to_square_pixels(image: torch.Tensor, pixel_aspect: float) -> torch.Tensor:
    """Resample a (N, C, H, W) image of `pixel_aspect` pixels to square pixels (bicubic)."""
    height, width = image.shape[-2:]
    size = stretched_size(int(height), int(width), pixel_aspect)
    if size == (height, width):
        return image
    dtype = image.dtype
    # Bicubic in float32 (half precision lacks it on some backends); it overshoots a little at
    # edges, which the caller's clamp to [0, 1] removes.
    from torch.nn import functional as F

    resampled = F.interpolate(image.float(), size=size, mode="bicubic", align_corners=False)
    return resampled.to(dtype)
