"""A fixed linear X-Trans demosaic on the packed 36-channel grid: the X-Trans analogue of
`pipeline/mhc.py`, the classical image an X-Trans G1's gated residual base blends with, and the
estimates of the colours a site lacks that the `linear-srgb` input needs for the camera matrix.

At each site its own colour is its sample; a colour it lacks is a weighted sum of the 18×18
mosaic window around it. The weights were fitted by constrained least squares to photographs of
the training corpus (`training/linear_demosaic_fit.py`, rebuilt by `tools/fit_linear_demosaic.py`;
free-licence images only, never a test set), exact on flat colour, and ship beside this module.
A window of 3×3 packed pixels spans one packed pixel either side, so the whole demosaic is one
3×3 convolution from the 36 packed channels to 3·36 (colour·36 + site, the order
`pixel_shuffle(6)` reads), over the packed grid replicate-padded by one: the mosaic period-shift
padded by 6 (pipeline/xtrans_packing.py), which keeps every colour.

Why fitted: on 688 validation crops of the corpus (no noise, sRGB-encoded PSNR) it scores 34.23 dB
against 29.55 for the Gaussian-weighted same-colour average (σ = 1 site, 5×5) it replaced, which
ignored how the colours move together (Malvar–He–Cutler on a Bayer mosaic of the same crops: 32.14).

Linear and in camera space: it demosaics whatever the channels hold (white-balanced camera RGB for
a scene-linear profile), with no colour conversion.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.nn import functional as F

from raw2rgb_plugin.pipeline.cfa import XTRANS, cfa_indices
from raw2rgb_plugin.pipeline.linear_demosaic import demosaic_packed, load_kernels
from raw2rgb_plugin.pipeline.xtrans_packing import XTRANS_PERIOD, XTRANS_SITES

FITTED_KERNELS_FILE = Path(__file__).with_name("xtrans_linear_demosaic.safetensors")


#: the demosaic as one 3×3 convolution on the replicate-padded packed grid (float64).
XTRANS_DEMOSAIC_KERNELS = load_kernels(FITTED_KERNELS_FILE, (3 * XTRANS_SITES, XTRANS_SITES, 3, 3))


def pad_packed_xtrans(packed: torch.Tensor) -> torch.Tensor:
    """(n, 36, h, w) → (n, 36, h + 2, w + 2): the mosaic period-shift padded by one period."""
    return F.pad(packed, (1, 1, 1, 1), mode="replicate")


def xtrans_demosaic_packed(packed: torch.Tensor) -> torch.Tensor:
    """(n, 36, h, w) canonical packed X-Trans → (n, 108, h, w): RGB per site, colour·36 + site."""
    return demosaic_packed(packed, XTRANS_DEMOSAIC_KERNELS)


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
