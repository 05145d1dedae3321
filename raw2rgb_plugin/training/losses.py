"""The losses of RAW2RGB-GAN (x = packed RAW, y = target RGB, s = saliency map of y).

- L1 = |G1(x) − y|
- attention (SMDA) L_A = |G1(x)⊙G2(x) − y⊙s|
- perceptual L_p = |φ(G1(x)) − φ(y)|, φ = VGG16 conv4_3 before its ReLU on ImageNet-normalised RGB
- LSGAN: L_D = ½·D(x, G1(x))² + ½·(D(x, y) − 1)²,  L_G = ½·(D(x, G1(x)) − 1)²

All are means over pixels (and score-map cells), so their weights do not depend on patch size.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from raw2rgb_plugin.pipeline.colour import srgb_encode_tensor, tone_curve


def l1_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(fake, real)


def attention_loss(
    fake: torch.Tensor, predicted_saliency: torch.Tensor, real: torch.Tensor, target_saliency: torch.Tensor
) -> torch.Tensor:
    """|G1(x)⊙G2(x) − y⊙s|; the (N, 1, H, W) maps weight all three colour channels."""
    return F.l1_loss(fake * predicted_saliency, real * target_saliency)


class PerceptualLoss(nn.Module):
    """L1 between VGG16 conv4_3 features of the output and of the target.

    The feature network is frozen; the target's features need no graph, so they are computed
    without one (half the activation memory of a plain two-image forward).
    """

    def __init__(self, features: nn.Module):
        super().__init__()
        self.features = features.eval()
        for p in self.features.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> PerceptualLoss:
        # φ is a fixed measuring instrument: it stays in eval mode whatever the trainer does.
        super().train(mode)
        self.features.eval()
        return self

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.features(real)
        return F.l1_loss(self.features(fake), target)


def lsgan_d_loss(score_fake: torch.Tensor, score_real: torch.Tensor) -> torch.Tensor:
    return 0.5 * score_fake.float().pow(2).mean() + 0.5 * (score_real.float() - 1).pow(2).mean()


def lsgan_g_loss(score_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (score_fake.float() - 1).pow(2).mean()


def display_view(image: torch.Tensor) -> torch.Tensor:
    """What a scene-linear output is scored as: its sRGB encoding (no tone curve).

    L1 on linear light would spend the network on highlights and let shadows, where noise shows,
    go; the sRGB encoding weighs errors roughly as they are seen, as the display profiles' sRGB
    targets do. Used for the losses, the discriminator and the validation PSNR alike.
    """
    return srgb_encode_tensor(image.float())


def output_view(output: str):
    """The view losses and scores see of a profile's `output` ("display" or "scene-linear")."""
    return display_view if output == "scene-linear" else _identity


def _identity(image: torch.Tensor) -> torch.Tensor:
    return image


def camera_display(camera: torch.Tensor, to_srgb: torch.Tensor) -> torch.Tensor:
    """A camera-space G1's (N, 3, H, W) output (white-balanced camera RGB in headroom space) →
    display sRGB, with each sample's (N, 3, 3) `to_srgb`: the engine's `display_from_camera`
    (linear sRGB, clipped, sRGB-encoded, tone curve) per sample, in float32 whatever the autocast."""
    with torch.autocast(camera.device.type, enabled=False):
        linear = torch.einsum("nij,njhw->nihw", to_srgb.to(camera.device, torch.float32), camera.float())
        return tone_curve(srgb_encode_tensor(linear))


def network_rendering(network_space: str):
    """What turns G1's output into the image `output_view` sees, (output, batch) → image: nothing
    for "srgb"; for "camera", the fixed display rendering with the batch's `to_srgb` matrices
    (the target is already display sRGB). Before the losses, the discriminator and the PSNR."""
    return _camera_rendering if network_space == "camera" else _as_is


def _camera_rendering(output: torch.Tensor, batch: dict) -> torch.Tensor:
    return camera_display(output, batch["to_srgb"])


def _as_is(output: torch.Tensor, batch: dict) -> torch.Tensor:
    return output


# OKLab (Ottosson 2020): M1 takes linear sRGB to cone responses, M2 their cube roots to L, a, b.
_OKLAB_M1 = torch.tensor([[0.4122214708, 0.5363325363, 0.0514459929], [0.2119034982, 0.6806995451, 0.1073969566],
                          [0.0883024619, 0.2817188376, 0.6299787005]])
_OKLAB_M2 = torch.tensor([[0.2104542553, 0.7936177850, -0.0040720468], [1.9779984951, -2.4285922050, 0.4505937099],
                          [0.0259040371, 0.7827717662, -0.8086757660]])


def oklab(srgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) display sRGB in [0, 1] → OKLab (L in [0, 1]); differentiable (the cube root's
    slope is bounded near black by a small offset)."""
    x = srgb.clamp(0.0, 1.0)
    linear = torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055).clamp_min(1e-8) ** 2.4)
    lms = torch.einsum("ij,njhw->nihw", _OKLAB_M1.to(x), linear)
    root = (lms + 1e-6) ** (1 / 3) - 1e-2
    return torch.einsum("ij,njhw->nihw", _OKLAB_M2.to(x), root)


def oklab_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean Euclidean OKLab distance of two (N, 3, H, W) sRGB images (≈ ΔE/100: 0.02 is visible)."""
    return torch.linalg.vector_norm(oklab(a) - oklab(b), dim=1).mean()

