"""Bayer mosaic ↔ the canonical packed layout G1 reads: 4 channels [R, Gr, Gb, B] at half size.

Every 2×2 order is brought to RGGB phase by reflect-padding one row and/or column in front:
with a period-2 pattern the reflected pixel has exactly the colour the missing one would have,
so the network always sees R at (0, 0) and no sensor pixel is lost. An odd trailing row or
column is padded the same way. `PhasePadding` remembers what was added so the full-resolution
output can be cropped back to the visible frame pixel for pixel.

Works on torch tensors so the same code packs on the CPU and, after a uint16 upload, on the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

#: (row, column) of the red site in each 2×2 order.
_RED_SITE = {"RGGB": (0, 0), "GRBG": (0, 1), "GBRG": (1, 0), "BGGR": (1, 1)}


@dataclass(frozen=True)
class PhasePadding:
    """Mosaic pixels added on each side to reach RGGB phase and even sizes."""

    top: int
    left: int
    bottom: int
    right: int

    def crop(self, full_res: torch.Tensor) -> torch.Tensor:
        """Remove the padding from a full-resolution (…, H, W) tensor."""
        h, w = full_res.shape[-2:]
        return full_res[..., self.top : h - self.bottom, self.left : w - self.right]


def rggb_padding(cfa_pattern: str, height: int, width: int) -> PhasePadding:
    if cfa_pattern not in _RED_SITE:
        raise ValueError(f"unknown Bayer order {cfa_pattern!r}")
    top, left = _RED_SITE[cfa_pattern]
    return PhasePadding(top=top, left=left, bottom=(height + top) % 2, right=(width + left) % 2)


def pad_mosaic(mosaic: torch.Tensor, padding: PhasePadding) -> torch.Tensor:
    """Reflect-pad a (H, W) or (N, 1, H, W) float mosaic."""
    if padding == PhasePadding(0, 0, 0, 0):
        return mosaic
    x = mosaic[None, None] if mosaic.dim() == 2 else mosaic
    x = F.pad(x, (padding.left, padding.right, padding.top, padding.bottom), mode="reflect")
    return x[0, 0] if mosaic.dim() == 2 else x


def pack_rggb(mosaic: torch.Tensor) -> torch.Tensor:
    """(…, 2h, 2w) RGGB-phase mosaic → (…, 4, h, w) in [R, Gr, Gb, B] order."""
    lead = mosaic.shape[:-2]
    x = mosaic.reshape(-1, 1, *mosaic.shape[-2:])
    packed = F.pixel_unshuffle(x, 2)
    return packed.reshape(*lead, 4, *packed.shape[-2:])


def rggb_samples(rgb: torch.Tensor) -> torch.Tensor:
    """(…, 3, 2h, 2w) RGB → (…, 4, h, w): what an RGGB sensor samples of it, packed [R, Gr, Gb, B]."""
    return torch.stack([rgb[..., 0, 0::2, 0::2], rgb[..., 1, 0::2, 1::2],
                        rgb[..., 1, 1::2, 0::2], rgb[..., 2, 1::2, 1::2]], dim=-3)


def unpack_rggb(packed: torch.Tensor) -> torch.Tensor:
    """(…, 4, h, w) → (…, 2h, 2w) RGGB mosaic; the inverse of `pack_rggb`."""
    lead = packed.shape[:-3]
    x = packed.reshape(-1, 4, *packed.shape[-2:])
    mosaic = F.pixel_shuffle(x, 2)
    return mosaic.reshape(*lead, *mosaic.shape[-2:])


def site_tile(values: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Repeat a per-site (P, P) tensor (2×2 Bayer, 6×6 X-Trans) over an H×W mosaic of any size."""
    side = int(values.shape[-1])
    reps = (-(-height // side), -(-width // side))
    return values.repeat(*reps)[:height, :width]
