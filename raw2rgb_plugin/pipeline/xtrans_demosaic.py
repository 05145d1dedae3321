"""A fixed linear X-Trans demosaic on the packed 36-channel grid: the X-Trans analogue of
`pipeline/mhc.py`, the classical image an X-Trans G1's gated residual base blends with.

At each site a colour it lacks is the normalised, Gaussian-weighted (σ = 1 site) average of the
sites of that colour in the 5×5 window around it; its own colour is its sample. X-Trans puts every
colour in every 5×5 window (at any site: each 3×3 block holds R and B, and any 5×5 window covers one
whole block and part of another), so each weight set is well defined; the weights differ per site
of the period, since the neighbours' colours do. A 5×5 window around a site spans at most one
packed pixel either side, so the whole demosaic is one 3×3 convolution from the 36 packed channels
to 3·36 (colour·36 + site, the order `pixel_shuffle(6)` reads), over the packed grid replicate-padded
by one: the mosaic period-shift padded by 6 (pipeline/xtrans_packing.py), which keeps every colour.

Linear and in camera space: it demosaics whatever the channels hold (white-balanced camera RGB for
a scene-linear profile), with no colour conversion.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from raw2rgb_plugin.pipeline.cfa import XTRANS, cfa_indices
from raw2rgb_plugin.pipeline.xtrans_packing import XTRANS_PERIOD, XTRANS_SITES

_RADIUS = 2
_SIGMA = 1.0


def _xtrans_kernels() -> torch.Tensor:
    """(3·36, 36, 3, 3) float64: output channel colour·36 + site, input channel the packed site."""
    colours = cfa_indices(XTRANS)
    p = XTRANS_PERIOD
    kernels = torch.zeros(3, XTRANS_SITES, XTRANS_SITES, 3, 3, dtype=torch.float64)
    for sy in range(p):
        for sx in range(p):
            site = sy * p + sx
            own = int(colours[sy, sx])
            kernels[own, site, site, 1, 1] = 1.0
            for colour in {0, 1, 2} - {own}:
                total = 0.0
                for dy in range(-_RADIUS, _RADIUS + 1):
                    for dx in range(-_RADIUS, _RADIUS + 1):
                        y, x = sy + dy, sx + dx  # mosaic offset from the packed pixel's first site
                        if colours[y % p, x % p] != colour:
                            continue
                        weight = math.exp(-(dy * dy + dx * dx) / (2 * _SIGMA**2))
                        kernels[colour, site, (y % p) * p + x % p, y // p + 1, x // p + 1] += weight
                        total += weight
                assert total > 0, "every colour lies in every 5×5 X-Trans window"
                kernels[colour, site] /= total
    return kernels.reshape(3 * XTRANS_SITES, XTRANS_SITES, 3, 3)


#: the demosaic as one 3×3 convolution on the replicate-padded packed grid (float64).
XTRANS_DEMOSAIC_KERNELS = _xtrans_kernels()


def pad_packed_xtrans(packed: torch.Tensor) -> torch.Tensor:
    """(n, 36, h, w) → (n, 36, h + 2, w + 2): the mosaic period-shift padded by one period."""
    return F.pad(packed, (1, 1, 1, 1), mode="replicate")


def xtrans_demosaic_packed(packed: torch.Tensor) -> torch.Tensor:
    """(n, 36, h, w) canonical packed X-Trans → (n, 108, h, w): RGB per site, colour·36 + site."""
    kernels = XTRANS_DEMOSAIC_KERNELS.to(packed.device, packed.dtype)
    return F.conv2d(pad_packed_xtrans(packed), kernels)


@torch.no_grad()
def xtrans_linear_rendering(packed: torch.Tensor) -> torch.Tensor:
    """(n, 36, h, w) packed X-Trans → its linear demosaic (n, 3, 6h, 6w), in float32 whatever the
    autocast dtype (it is the image the network corrects)."""
    with torch.autocast(packed.device.type, enabled=False):
        return F.pixel_shuffle(xtrans_demosaic_packed(packed.float()), XTRANS_PERIOD)


def xtrans_linear_srgb_mosaic(packed: torch.Tensor, camera_to_srgb: torch.Tensor) -> torch.Tensor:
    """White-balanced (…, 36, h, w) packed X-Trans → each site's own colour in linear sRGB, clipped
    to [0, 1]: the X-Trans ``linear-srgb`` input, `mhc.linear_srgb_mosaic`'s analogue, the two
    colours a site lacks estimated by this demosaic (there is no Malvar–He–Cutler for 6×6)."""
    lead, (h, w) = packed.shape[:-3], packed.shape[-2:]
    own = cfa_indices(XTRANS).ravel().tolist()
    # Each site keeps its own colour's row of the matrix, folded into the demosaic's kernels on
    # the CPU in float64 (not every device has it), then moved once.
    rows = camera_to_srgb.detach().to("cpu", torch.float64)[own]  # (36, 3)
    by_colour = XTRANS_DEMOSAIC_KERNELS.reshape(3, XTRANS_SITES, XTRANS_SITES, 3, 3)
    kernels = torch.einsum("sc,csnij->snij", rows, by_colour)
    out = F.conv2d(pad_packed_xtrans(packed.reshape(-1, XTRANS_SITES, h, w)), kernels.to(packed.device, packed.dtype))
    return out.reshape(*lead, XTRANS_SITES, h, w).clamp_(0.0, 1.0)
