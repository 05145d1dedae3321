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
from safetensors.torch import load_file
from torch.nn import functional as F

FITTED_KERNELS_FILE = Path(__file__).with_name("bayer_linear_demosaic.safetensors")
RADIUS = 2  # packed pixels either side


def _fitted_kernels() -> torch.Tensor:
    """(3·4, 4, 5, 5) float32 from the shipped file (output channel colour·4 + site), checked."""
    kernels = load_file(str(FITTED_KERNELS_FILE))["kernels"]
    expected = (12, 4, 2 * RADIUS + 1, 2 * RADIUS + 1)
    if tuple(kernels.shape) != expected or not torch.isfinite(kernels).all():
        raise ValueError(f"{FITTED_KERNELS_FILE.name}: kernels of shape {tuple(kernels.shape)}, expected {expected}")
    return kernels.to(torch.float32)


#: colour·4 + site, the order `pixel_shuffle(2)` reads.
BAYER_LSQ_KERNELS = _fitted_kernels()


def lsq_demosaic_packed(packed: torch.Tensor) -> torch.Tensor:
    """(n, 4, h, w) packed RGGB → (n, 12, h, w) float32: RGB per site, colour·4 + site. The packed
    grid is replicate-padded, which on the mosaic is a shift by whole periods (the phase is kept)."""
    padded = F.pad(packed.float(), (RADIUS,) * 4, mode="replicate")
    return F.conv2d(padded, BAYER_LSQ_KERNELS.to(packed.device))


@torch.no_grad()
def lsq_linear_rendering(packed: torch.Tensor) -> torch.Tensor:
    """(n, 4, h, w) packed RGGB → its fitted linear demosaic (n, 3, 2h, 2w), float32 whatever the
    autocast dtype (it is the image the network corrects)."""
    with torch.autocast(packed.device.type, enabled=False):
        return F.pixel_shuffle(lsq_demosaic_packed(packed), 2)
