"""G2, the saliency branch of RAW2RGB-GAN (training only).

G2 reads G1's three decoder tensors and predicts the saliency map of the target. It is never
shipped: its job is multi-task learning — through the attention loss its gradients shape G1's
decoder so that the regions people look at get more of the network's capacity.

Seed layout (base width w = 64): each decoder tensor (8w ch at H/4, 4w at H/2, 2w at H, packed
H) is brought to w channels at H by ×2 nearest-upsample + 3×3 conv stages; the three are
concatenated (3w) → 3×3 conv to w (+norm) → 7×7 conv → sigmoid.

Like G1, the last conv emits one value per site of the packing period (4 channels for the 2×2
Bayer cell, 36 for the 6×6 X-Trans period) that `pixel_shuffle` places on the sites, so the map
comes out at G1's full RGB resolution and multiplies its output pixel for pixel. The convolutions
reuse G1's blocks (spectral norm, reflect padding, BatchNorm) so that both generators are trained
alike.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from raw2rgb_plugin.models.g1 import ConvBlock, G1Config, UpBlock


class G2(nn.Module):
    def __init__(self, g1_config: G1Config = G1Config()):
        super().__init__()
        w, n, sn = g1_config.width, g1_config.norm, g1_config.spectral_norm
        # Decoder tensor d1 (8w, H/4) needs two ×2 stages; the first already narrows to w,
        # which keeps G2 small (~0.7 M parameters at w = 64, as the seed's ~0.78 M).
        self.from_d1 = nn.Sequential(UpBlock(8 * w, w, n, sn), UpBlock(w, w, n, sn))
        self.from_d2 = UpBlock(4 * w, w, n, sn)
        self.from_d3 = ConvBlock(2 * w, w, 3, norm=n, spectral=sn)
        self.fuse = ConvBlock(3 * w, w, 3, norm=n, spectral=sn)
        self.period = g1_config.period
        self.head = ConvBlock(w, g1_config.sites, 7, norm="none", act=False, spectral=sn)

    def forward(self, decoder_features: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Saliency in [0, 1], shape (N, 1, pH, pW) for decoder features of packed height H (p: the period)."""
        d1, d2, d3 = decoder_features
        fused = self.fuse(torch.cat([self.from_d1(d1), self.from_d2(d2), self.from_d3(d3)], dim=1))
        return F.pixel_shuffle(torch.sigmoid(self.head(fused)), self.period)
