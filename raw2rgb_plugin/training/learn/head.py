"""A closed-form start for the fine-tune: G1's last layer solved by least squares for the look.

G1's output layer `d4` is a linear map (a 7×7 convolution) of the decoder features, followed by
tanh for the image and a sigmoid gate that blends the image with a classical rendering. The
base profile's gate leans on the classical rendering wherever the input is clean (about 0.2 on a
clean frame), so a new look cannot come through it: gradient descent has to open the gate and
re-learn the colours at once, and from the base weights it stalls (on the synthetic look,
decoder fine-tuning alone reached 26.3 dB after 300 steps; from this start, 27.8 dB).

So before the fine-tune, the image half of `d4` is refitted as a ridge regression: the decoder
features (centre `KERNEL`×`KERNEL` taps) of the training pairs → atanh of the wanted image
(the target's low-pass with the base's high-pass, the same split the fine-tune's loss makes),
weighted by tanh's slope so the fit is least squares in image space, not in atanh space. The
gate is opened fully (bias `GATE_BIAS`, weights 0): the fine-tune may close it again where the
classical rendering serves the look.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from raw2rgb_plugin.models.g1 import G1
from raw2rgb_plugin.training.learn.finetune import gaussian_lowpass
from raw2rgb_plugin.training.learn.pairs import LearnPair
from raw2rgb_plugin.training.learn.patches import cropped, padded16, pair_input

KERNEL = 5
RIDGE = 1e-4
GATE_BIAS = 5.0  # sigmoid(5) = 0.993
#: feature rows of the regression in all (the normal matrix costs rows × (C·K²)², 30 s at 250k)
SAMPLES = 40_000
#: each pair is read through a window of this side: the features of a 1024-px pair cost 1–2 s
#: of CPU, and its share of the samples needs no more than a 256-px window
WINDOW = 256
_LIMIT = 0.995  # |2y − 1| cap: atanh stays finite at black and white


@torch.no_grad()
def fit_head(student: G1, teacher: nn.Module, pairs: list[LearnPair], *, lowpass_sigma: float, seed: int = 0) -> dict:
    """Refit `student.d4` (a G1 whose `out_channels` image comes first) in place; returns a summary."""
    rng = np.random.default_rng(seed)
    noise_channels = int(getattr(student.config, "noise_channels", 0))
    out_channels = 4 * int(student.config.out_channels)
    features, wanted, weights = [], [], []
    per_pair = max(500, SAMPLES // len(pairs))
    for whole in pairs:
        pair = cropped(whole, WINDOW, rng)
        x = pair_input(pair, padded16(pair.linear), noise_channels=noise_channels)[None]
        _, decoder = student.forward_features(x)
        base = teacher(x)
        target = torch.from_numpy(np.ascontiguousarray(padded16(pair.target).transpose(2, 0, 1)))[None]
        image = gaussian_lowpass(target, lowpass_sigma) + base - gaussian_lowpass(base, lowpass_sigma)
        y = (2 * image - 1).clamp(-_LIMIT, _LIMIT)
        z = F.pixel_unshuffle(torch.atanh(y), 2).flatten(2)[0]  # (12, h·w): pixel_shuffle's layout
        slope = F.pixel_unshuffle((1 - y * y) / 2, 2).flatten(2)[0].mean(dim=0)  # dy/dz, per packed pixel
        taps = F.unfold(F.pad(decoder[-1], (KERNEL // 2,) * 4, mode="reflect"), KERNEL)[0]  # (C·K², h·w)
        pick = rng.choice(taps.shape[1], size=min(taps.shape[1], per_pair), replace=False)
        features.append(taps[:, pick].T.double())
        wanted.append(z[:, pick].T.double())
        weights.append(slope[pick].double())
    x_all = torch.cat(features)
    design = torch.cat([x_all, torch.ones(len(x_all), 1, dtype=x_all.dtype)], dim=1) * torch.cat(weights)[:, None]
    rhs = torch.cat(wanted) * torch.cat(weights)[:, None]
    ridge = RIDGE * len(design) * torch.eye(design.shape[1], dtype=design.dtype)
    ridge[-1, -1] = 0  # the bias is not shrunk
    solution = torch.linalg.solve(design.T @ design + ridge, design.T @ rhs)  # (C·K² + 1, 12)
    conv = student.d4.conv
    assert isinstance(conv, nn.Conv2d) and conv.bias is not None  # profiles hold plain convolutions
    kernel = conv.weight.shape[-1]
    offset = (kernel - KERNEL) // 2
    weight = torch.zeros_like(conv.weight)
    channels = conv.weight.shape[1]
    weight[:out_channels, :, offset : offset + KERNEL, offset : offset + KERNEL] = \
        solution[:-1].T.reshape(out_channels, channels, KERNEL, KERNEL).to(weight.dtype)
    conv.weight.copy_(weight)
    conv.bias[:out_channels] = solution[-1].to(conv.bias.dtype)
    conv.bias[out_channels:] = GATE_BIAS
    fitted = design @ solution
    residual = float(((fitted - rhs) ** 2).mean())
    return {"samples": len(design), "kernel": KERNEL, "residual": residual}
