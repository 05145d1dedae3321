"""Image quality metrics on [0, 1] RGB: PSNR and SSIM per image of a batch, PSNR of one image.

The one place PSNR is computed: training's validation, evaluation, the benchmarks, learn's report
and the CPU precision choice (bf16 against fp32) all use these.

SSIM follows Wang et al. 2004 as the RAW-to-RGB literature reports it: 11×11 Gaussian window,
σ = 1.5, K1 = 0.01, K2 = 0.03, data range 1, computed per colour channel over the 'valid' region
(no padding) and averaged over channels and positions.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_C1 = 0.01**2
_C2 = 0.03**2
#: what `psnr` reads for identical images, instead of infinity
MAX_DB = 100.0


def psnr(output: torch.Tensor, target: torch.Tensor, *, max_db: float = MAX_DB) -> torch.Tensor:
    """Per-image PSNR in dB of (N, …) batches; identical images give `max_db` instead of infinity."""
    mse = (output.double() - target.double()).pow(2).flatten(1).mean(dim=1)
    return (10 * torch.log10(1.0 / mse.clamp_min(10 ** (-max_db / 10)))).float()


def image_psnr(output, target, *, max_db: float = MAX_DB) -> float:
    """PSNR in dB of one image (numpy array or tensor, any shape), as `psnr` scores a batch of one."""
    a, b = (torch.as_tensor(x) for x in (output, target))
    return float(psnr(a.reshape(1, -1), b.reshape(1, -1), max_db=max_db)[0])


def _gaussian_1d(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    coords = torch.arange(SSIM_WINDOW, device=device, dtype=dtype) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(coords**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def ssim(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image mean SSIM (channels averaged)."""
    if output.shape != target.shape or output.dim() != 4:
        raise ValueError(f"ssim needs two (N, C, H, W) tensors of one shape, got {tuple(output.shape)} and {tuple(target.shape)}")
    if min(output.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW}×{SSIM_WINDOW} px")
    x, y = output.double(), target.double()
    channels = x.shape[1]
    g = _gaussian_1d(x.device, x.dtype)
    # The Gaussian window is separable: a column pass then a row pass is the same 'valid'
    # 11×11 blur at 2×11 instead of 121 multiplies per pixel.
    column = g.view(1, 1, SSIM_WINDOW, 1).expand(channels, 1, SSIM_WINDOW, 1)
    row = g.view(1, 1, 1, SSIM_WINDOW).expand(channels, 1, 1, SSIM_WINDOW)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, column, groups=channels), row, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + _C1) * (2 * cov + _C2)) / ((mu_x**2 + mu_y**2 + _C1) * (var_x + var_y + _C2))
    return ssim_map.flatten(1).mean(dim=1).float()
