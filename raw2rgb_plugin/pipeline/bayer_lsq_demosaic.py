"""A linear Bayer demosaic fitted to photographs: the classical image of the ``lsq-*-gated`` bases.

Malvar–He–Cutler (`pipeline/mhc.py`) is a hand-made 5×5 linear demosaic; this one is the same kind
of filter, fitted: each site keeps its sample, and a colour it lacks is a weighted sum of the 10×10
mosaic window around it (5×5 packed pixels), the weights fitted by constrained least squares to
free-licence photographs of the training corpus (`training/linear_demosaic_fit.py`, rebuilt by
`tools/fit_linear_demosaic.py --cfa bayer`), exact on colours affine in position.

Why: on 688 validation crops of the corpus (no noise, sRGB-encoded PSNR) it scores 33.72 dB
against Malvar–He–Cutler's 32.12 (a 7×7 packed window: 33.76, 2× the cost). MHC stays the base
of every profile that names it, so those render exactly as before; new profiles may name this one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.nn import functional as F

from raw2rgb_plugin.pipeline.linear_demosaic import demosaic_packed, load_kernels

FITTED_KERNELS_FILE = Path(__file__).with_name("bayer_linear_demosaic.safetensors")
RADIUS = 2  # packed pixels either side

#: (3·4, 4, 5, 5) float32, output channel colour·4 + site, the order `pixel_shuffle(2)` reads.
BAYER_LSQ_KERNELS = load_kernels(FITTED_KERNELS_FILE, (12, 4, 2 * RADIUS + 1, 2 * RADIUS + 1)).to(torch.float32)


def lsq_demosaic_packed(packed: torch.Tensor) -> torch.Tensor:
    """(n, 4, h, w) packed RGGB → (n, 12, h, w) float32: RGB per site, colour·4 + site."""
    return demosaic_packed(packed.float(), BAYER_LSQ_KERNELS)


@torch.no_grad()
def lsq_linear_rendering(packed: torch.Tensor) -> torch.Tensor:
    """(n, 4, h, w) packed RGGB → its fitted linear demosaic (n, 3, 2h, 2w), float32 whatever the
    autocast dtype (it is the image the network corrects)."""
    with torch.autocast(packed.device.type, enabled=False):
        return F.pixel_shuffle(lsq_demosaic_packed(packed), 2)
