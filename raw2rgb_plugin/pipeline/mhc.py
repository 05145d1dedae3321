"""Malvar–He–Cutler demosaicking on the packed RGGB grid: fixed linear filters, any device.

Malvar, He and Cutler (ICASSP 2004): bilinear interpolation corrected by the Laplacian of the
site's own colour, 5×5 filters that are exact on planar image regions. The engine uses them in
two places: the `linear-srgb` input normalisation (the camera matrix needs all three colours at
a site) and the classical rendering G1 can blend with or correct (`models/g1.py`).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from raw2rgb_plugin.pipeline.packing import pack_rggb, unpack_rggb

# Malvar–He–Cutler gradient-corrected bilinear filters (×8) on the mosaic: a colour a site lacks.
_MHC_FILTERS: dict[str, list[list[float]]] = {
    "green at red/blue": [[0, 0, -1, 0, 0], [0, 0, 2, 0, 0], [-1, 2, 4, 2, -1], [0, 0, 2, 0, 0], [0, 0, -1, 0, 0]],
    "colour of the row's neighbours":
        [[0, 0, 0.5, 0, 0], [0, -1, 0, -1, 0], [-1, 4, 5, 4, -1], [0, -1, 0, -1, 0], [0, 0, 0.5, 0, 0]],
    "colour of the column's neighbours":
        [[0, 0, -1, 0, 0], [0, -1, 4, -1, 0], [0.5, 0, 5, 0, 0.5], [0, -1, 4, -1, 0], [0, 0, -1, 0, 0]],
    "red at blue, blue at red": [[0, 0, -1.5, 0, 0], [0, 2, 0, 2, 0], [-1.5, 0, 6, 0, -1.5], [0, 2, 0, 2, 0], [0, 0, -1.5, 0, 0]],
}
_OWN_COLOUR = (0, 1, 1, 2)  # sites R, Gr, Gb, B → colours R, G, G, B
_MHC_FILTER_OF = {  # (site, missing colour) → filter; a Gr site has red beside it, a Gb site above it
    (0, 1): "green at red/blue", (0, 2): "red at blue, blue at red",
    (1, 0): "colour of the row's neighbours", (1, 2): "colour of the column's neighbours",
    (2, 0): "colour of the column's neighbours", (2, 2): "colour of the row's neighbours",
    (3, 0): "red at blue, blue at red", (3, 1): "green at red/blue",
}


def _packed_mhc_kernels() -> torch.Tensor:
    """(4 sites, 3 colours, 4 packed channels, 3, 3): the filters re-expressed on the packed grid.

    A 5×5 window on the mosaic spans at most one packed pixel either side, so each site's RGB
    estimate is a 3×3 convolution over the four packed channels: one conv instead of four
    full-resolution passes, and the camera matrix folds into the same kernel.
    """
    kernels = torch.zeros(4, 3, 4, 3, 3, dtype=torch.float64)
    for site, own in enumerate(_OWN_COLOUR):
        sy, sx = divmod(site, 2)
        kernels[site, own, site, 1, 1] = 1.0
        for colour in range(3):
            name = _MHC_FILTER_OF.get((site, colour))
            if name is None:
                continue
            for dy in range(-2, 3):
                for dx in range(-2, 3):
                    y, x = sy + dy, sx + dx  # mosaic offset from the packed pixel's red site
                    kernels[site, colour, 2 * (y % 2) + x % 2, y // 2 + 1, x // 2 + 1] += _MHC_FILTERS[name][dy + 2][dx + 2] / 8.0
    return kernels


_PACKED_MHC_KERNELS = _packed_mhc_kernels()


def _pad_packed(packed: torch.Tensor) -> torch.Tensor:
    """(n, 4, h, w) → (n, 4, h + 2, w + 2): the mosaic reflect-padded by two, which keeps the
    Bayer phase at the borders (a packed-grid reflect would not)."""
    return pack_rggb(F.pad(unpack_rggb(packed), (2, 2, 2, 2), mode="reflect"))


def interpolate_missing_colours(packed: torch.Tensor) -> torch.Tensor:
    """(…, 4, h, w) packed RGGB → (…, 4, 3, h, w): an RGB estimate at each of the four sites.

    A site's own colour is its sample; the two it lacks are the Malvar–He–Cutler estimates.
    """
    lead, (h, w) = packed.shape[:-3], packed.shape[-2:]
    kernels = _PACKED_MHC_KERNELS.to(device=packed.device, dtype=packed.dtype).reshape(12, 4, 3, 3)
    rgb = F.conv2d(_pad_packed(packed.reshape(-1, 4, h, w)), kernels)
    return rgb.reshape(*lead, 4, 3, h, w)


def linear_srgb_mosaic(packed: torch.Tensor, camera_to_srgb: torch.Tensor) -> torch.Tensor:
    """White-balanced (…, 4, h, w) packed → each site's own colour in linear sRGB, clipped to [0, 1]."""
    lead, (h, w) = packed.shape[:-3], packed.shape[-2:]
    # Each site keeps its own colour's row of the matrix: R, G, G, B.
    # Folded on the CPU in float64 (not every device has it), then moved once.
    rows = camera_to_srgb.detach().to("cpu", torch.float64)[list(_OWN_COLOUR)]
    kernels = torch.einsum("sc,scnij->snij", rows, _PACKED_MHC_KERNELS)
    out = F.conv2d(_pad_packed(packed.reshape(-1, 4, h, w)), kernels.to(packed.device, packed.dtype))
    return out.reshape(*lead, 4, h, w).clamp_(0.0, 1.0)


def demosaic(packed: torch.Tensor) -> torch.Tensor:
    """(…, 4, h, w) packed RGGB → (…, 3, 2h, 2w) RGB at full sensor resolution."""
    lead, (h, w) = packed.shape[:-3], packed.shape[-2:]
    rgb = interpolate_missing_colours(packed.reshape(-1, 4, h, w))  # (n, 4 sites, 3, h, w)
    # pixel_shuffle wants channel = colour·4 + site, with site = 2·row + column of the 2×2 cell.
    full = F.pixel_shuffle(rgb.transpose(1, 2).reshape(-1, 12, h, w), 2)
    return full.reshape(*lead, 3, 2 * h, 2 * w)
