"""Classical renderings of a packed mosaic: what G1 builds on, and what it is compared with.

- `mhc_srgb_rendering`: Malvar–He–Cutler demosaic of `linear-srgb` input, sRGB encoding and the
  generic tone curve: G1's residual base (it alone scores like LibRaw AHD on the held-out set).
- `bilinear_srgb`: bilinear demosaic of linear sRGB (`wb+ccm`) input: the evaluation's baseline
  where no LibRaw rendering of the source exists.
- `half_size`: the seed's packed-resolution output, the mean of each 2×2 block.

LibRaw's own renderings (AHD, DHT) and demosaicnet stay in `benchmarks/classical.py`: they need
the RAW file or an optional package, not just tensors.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from raw2rgb_plugin.pipeline.colour import srgb_encode, srgb_encode_tensor, tone_curve
from raw2rgb_plugin.pipeline.mhc import demosaic
from raw2rgb_plugin.pipeline.packing import unpack_rggb


@torch.no_grad()
def mhc_srgb_rendering(packed: torch.Tensor) -> torch.Tensor:
    """`linear-srgb` packed input (N, 4, h, w) → display sRGB (N, 3, 2h, 2w).

    Computed in float32 whatever the autocast dtype: it is the image, the network only corrects it.
    """
    with torch.autocast(packed.device.type, enabled=False):
        return tone_curve(srgb_encode_tensor(demosaic(packed.float())))


@torch.no_grad()
def mhc_linear_rendering(packed: torch.Tensor) -> torch.Tensor:
    """Packed linear input (N, 4, h, w) → its Malvar–He–Cutler demosaic (N, 3, 2h, 2w), still linear.

    In float32 whatever the autocast dtype, like `mhc_srgb_rendering`.
    """
    with torch.autocast(packed.device.type, enabled=False):
        return demosaic(packed.float())


def bilinear_srgb(packed_linear: torch.Tensor) -> torch.Tensor:
    """(N, 4, h, w) packed linear sRGB (`wb+ccm`) → (N, 3, 2h, 2w) sRGB by bilinear demosaicking."""
    mosaic = unpack_rggb(packed_linear)[:, None]  # (N, 1, 2h, 2w), RGGB phase
    h, w = mosaic.shape[-2:]
    rows = torch.arange(h).view(-1, 1) % 2
    cols = torch.arange(w).view(1, -1) % 2
    masks = torch.stack([(rows == 0) & (cols == 0), rows != cols, (rows == 1) & (cols == 1)]).to(mosaic.dtype)
    sparse = mosaic * masks[None]  # (N, 3, 2h, 2w): each channel where its sites are
    rb = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=mosaic.dtype) / 4
    g = torch.tensor([[0, 1, 0], [1, 4, 1], [0, 1, 0]], dtype=mosaic.dtype) / 4
    kernels = torch.stack([rb, g, rb])[:, None]
    # Reflect padding by one keeps the period-2 pattern at the borders.
    full = F.conv2d(F.pad(sparse, (1, 1, 1, 1), mode="reflect"), kernels, groups=3)
    return torch.from_numpy(srgb_encode(full.clamp(0, 1).numpy()).astype(np.float32))


def half_size(rgb_full: torch.Tensor) -> torch.Tensor:
    """The seed's packed-resolution output: the mean of each 2×2 block (an odd edge is dropped)."""
    return F.avg_pool2d(rgb_full, 2)
