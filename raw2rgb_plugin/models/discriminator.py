"""D, the conditional PatchGAN of RAW2RGB-GAN (training only).

D judges an RGB image *given* the RAW it should come from. The seed concatenates RAW (4 ch) and
RGB (3 ch) at one resolution; our RGB is at full sensor resolution (2H×2W) while the packed RAW
is H×W. We bring the RGB down losslessly with `pixel_unshuffle` (each packed pixel's 2×2 RGB
block → 12 channels) rather than upsampling the RAW:

- nothing is interpolated: D sees every output pixel and every RAW sample, each 2×2 RGB block
  stacked on exactly the Bayer quad it was rendered from;
- D's patches cover the same scene area as the seed's (its RGB was at packed resolution), and
  it costs a quarter of what running it at 2H would.

Layout (seed, width w = 64): 1×1 conv 16→w; 7×7 conv w→w + norm; three stages of
[4×4 stride-2 conv + 3×3 conv] at 2w, 4w, 8w; 4×4 stride-1 conv to 4w; 4×4 stride-1 conv to 1.
Spectral norm on every conv; LeakyReLU 0.2. A 224 packed patch gives a 26×26 score map.

X-Trans (`period` 6): the packed RAW holds the 36 sites of a 6×6 period at 1/6 resolution, and
the RGB comes down by `pixel_unshuffle(6)` onto it (108 channels) the same way.

Norm: InstanceNorm. D is never tiled (no seam concern), and per-sample statistics keep real and
fake samples from leaking into each other's normalisation when they share a batch — which lets
the trainer score real and fake in one forward pass (one DDP forward per step).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

#: three stride-2 stages then two 4×4 stride-1 convs: the smallest packed patch D can score.
MIN_PACKED_SIZE = 24


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, *, norm: bool, act: bool = True) -> nn.Sequential:
    padding = 1 if kernel == 4 else kernel // 2
    layers: list[nn.Module] = [spectral_norm(nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=not norm))]
    if norm:
        layers.append(nn.InstanceNorm2d(cout, affine=True))
    if act:
        layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


class PatchDiscriminator(nn.Module):
    def __init__(self, width: int = 64, raw_channels: int = 4, rgb_channels: int = 3, period: int = 2):
        super().__init__()
        w = width
        self.period = period
        cin = raw_channels + period * period * rgb_channels
        self.net = nn.Sequential(
            _conv(cin, w, 1, norm=False),
            _conv(w, w, 7, norm=True),
            _conv(w, 2 * w, 4, 2, norm=True),
            _conv(2 * w, 2 * w, 3, norm=True),
            _conv(2 * w, 4 * w, 4, 2, norm=True),
            _conv(4 * w, 4 * w, 3, norm=True),
            _conv(4 * w, 8 * w, 4, 2, norm=True),
            _conv(8 * w, 8 * w, 3, norm=True),
            _conv(8 * w, 4 * w, 4, norm=True),
            _conv(4 * w, 1, 4, norm=False, act=False),
        )

    def forward(self, raw: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        """Score map (N, 1, h, w) of `rgb` (N, 3, pH, pW) conditioned on packed `raw` (N, C, H, W), p the period."""
        p = self.period
        if rgb.shape[-2] != p * raw.shape[-2] or rgb.shape[-1] != p * raw.shape[-1]:
            times = "twice" if p == 2 else f"{p} times"
            raise ValueError(f"RGB {tuple(rgb.shape[-2:])} is not {times} the packed RAW {tuple(raw.shape[-2:])}")
        if min(raw.shape[-2:]) < MIN_PACKED_SIZE:
            raise ValueError(f"D needs packed patches of at least {MIN_PACKED_SIZE} px, got {tuple(raw.shape[-2:])}")
        return self.net(torch.cat([raw, F.pixel_unshuffle(rgb, p)], dim=1))
