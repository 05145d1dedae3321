"""The fitted linear demosaic: its constraints hold whatever it is fitted to, the fit learns what the
training images share, and the shipped X-Trans kernels are the fit's own output."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from raw2rgb_plugin.pipeline import xtrans_demosaic
from raw2rgb_plugin.pipeline.cfa import XTRANS
from raw2rgb_plugin.training.linear_demosaic_fit import NormalEquations, demosaic_with, sample_mosaic, solve

from scene_images import textured_scene


def _grey_textures(count: int, size: int, seed: int) -> torch.Tensor:
    """(count, 3, size, size) linear images whose three colours are one texture."""
    grey = [textured_scene(size, size, seed + i).mean(axis=-1) for i in range(count)]
    return torch.from_numpy(np.stack(grey))[:, None].repeat(1, 3, 1, 1).double() ** 2.2


def _psnr(a: torch.Tensor, b: torch.Tensor, margin: int = 12) -> float:
    mse = ((a - b)[..., margin:-margin, margin:-margin] ** 2).mean()
    return float(10 * torch.log10(1 / mse))


@pytest.mark.parametrize("pattern,radius", [(XTRANS, 1), ("RGGB", 2)])
def test_the_fit_keeps_samples_and_is_exact_on_affine_colours(pattern, radius):
    equations = NormalEquations(pattern, radius)
    equations.add(_grey_textures(4, 96, seed=0))
    kernels = solve(equations)
    y, x = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    ramps = torch.stack([0.2 + 0.004 * y, 0.7 - 0.005 * x, 0.3 + 0.002 * x + 0.003 * y]).double()[None]
    assert _psnr(demosaic_with(kernels, sample_mosaic(ramps, pattern)), ramps) > 100  # unrelated colours too
    noise = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mosaic = sample_mosaic(noise, pattern)
    again = sample_mosaic(demosaic_with(kernels, mosaic), pattern)
    assert torch.allclose(again, mosaic, atol=1e-12)  # each site keeps its own sample


def test_the_fit_learns_that_the_colours_move_together():
    """Fitted to grey textures, the estimates use the other colours' detail: on unseen grey
    textures far better than the Gaussian same-colour average the fit replaced (measured 60.7 against
    40.8 dB), which cannot know the colours are one."""
    equations = NormalEquations(XTRANS, 1)
    equations.add(_grey_textures(6, 96, seed=0))
    kernels = solve(equations)
    unseen = _grey_textures(2, 96, seed=50)
    mosaic = sample_mosaic(unseen, XTRANS)
    fitted = _psnr(demosaic_with(kernels, mosaic), unseen)
    gaussian = _psnr(demosaic_with(_gaussian_kernels(), mosaic), unseen)
    assert fitted > gaussian + 10, (fitted, gaussian)


def _gaussian_kernels() -> torch.Tensor:
    """The hand-made kernels the fit replaced: a Gaussian (σ 1 site) average of the same-colour
    sites within 2 px."""
    from raw2rgb_plugin.pipeline.cfa import cfa_indices

    colours = cfa_indices(XTRANS)
    kernels = torch.zeros(3, 36, 36, 3, 3, dtype=torch.float64)
    for sy in range(6):
        for sx in range(6):
            site, own = sy * 6 + sx, int(colours[sy, sx])
            kernels[own, site, site, 1, 1] = 1.0
            for colour in {0, 1, 2} - {own}:
                for dy in range(-2, 3):
                    for dx in range(-2, 3):
                        y, x = sy + dy, sx + dx
                        if colours[y % 6, x % 6] == colour:
                            kernels[colour, site, (y % 6) * 6 + x % 6, y // 6 + 1, x // 6 + 1] += np.exp(-(dy * dy + dx * dx) / 2)
                kernels[colour, site] /= kernels[colour, site].sum()
    return kernels.reshape(108, 36, 3, 3)


def test_the_shipped_xtrans_kernels_say_how_they_were_fitted():
    with safe_open(str(xtrans_demosaic.FITTED_KERNELS_FILE), "pt") as f:
        fit = json.loads(f.metadata()["fit"])
    assert fit["cfa"] == "xtrans" and fit["radius"] == 1 and fit["licences"].startswith("free only")
    assert fit["validation_psnr_srgb"] > fit["replaced_psnr_srgb"] + 4  # 34.23 against 29.55
    kernels = xtrans_demosaic.XTRANS_DEMOSAIC_KERNELS
    by_colour = kernels.reshape(3, 36, 36, 3, 3)
    colours = torch.from_numpy(xtrans_demosaic.cfa_indices(XTRANS).ravel())
    for colour in range(3):  # exact on flat colour: each estimate's weights sum to 1 on its colour
        sums = by_colour[colour].sum(dim=(2, 3))  # (out site, in site)
        for c in range(3):
            total = sums[:, colours == c].sum(dim=1)
            assert torch.allclose(total, torch.full_like(total, float(colour == c)), atol=1e-5)


def test_the_shipped_bayer_kernels_beat_malvar_he_cutler_and_feed_the_lsq_bases():
    from raw2rgb_plugin.models.g1 import G1, G1Config
    from raw2rgb_plugin.pipeline import bayer_lsq_demosaic
    from raw2rgb_plugin.pipeline.classical import mhc_srgb_rendering
    from raw2rgb_plugin.pipeline.colour import srgb_encode_tensor, tone_curve

    with safe_open(str(bayer_lsq_demosaic.FITTED_KERNELS_FILE), "pt") as f:
        fit = json.loads(f.metadata()["fit"])
    assert fit["cfa"] == "bayer" and fit["radius"] == bayer_lsq_demosaic.RADIUS
    assert fit["validation_psnr_srgb"] > fit["replaced_psnr_srgb"] + 1  # 33.72 against MHC's 32.12
    # A gate held shut (bias −∞) leaves the base: the fitted demosaic, sRGB-encoded and tone-curved.
    model = G1(G1Config(width=8, spectral_norm=False, residual_base="lsq-srgb-gated")).eval()
    with torch.no_grad():
        model.d4.conv.bias[12:] = -1e4
    packed = torch.rand(1, 4, 16, 24, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model(packed)
    expected = tone_curve(srgb_encode_tensor(bayer_lsq_demosaic.lsq_linear_rendering(packed)))
    assert torch.allclose(out, expected, atol=1e-6)
    assert not torch.allclose(out, mhc_srgb_rendering(packed), atol=1e-2)
