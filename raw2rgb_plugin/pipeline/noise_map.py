"""The noise map a noise-conditioned G1 reads beside its packed input (as FFDNet does).

One channel per site of the packed period (4 for the RGGB cell, 36 for the X-Trans period): the
expected noise standard deviation of that sample, σ = √(a·x + b) on the levelled RAW x
(Poisson–Gaussian, `a` shot, `b` read), times the site's white-balance gain (the network sees
white-balanced values), times the user's strength (`convert --denoise S`: 0 = tell the network
the image is clean, 2 = twice as noisy).

σ spans four decades between a base-ISO highlight (~1e-4) and a high-ISO shadow (~5e-2), so the
network gets log₁₀ σ mapped to [0, 1] over [1e-4, 1e-1]: equal steps in ISO are equal steps in
the map, and σ = 0 (a clean frame, or --denoise 0) reads as 0.
"""

from __future__ import annotations

import torch

from raw2rgb_plugin.pipeline.cfa import XTRANS, cfa_indices
from raw2rgb_plugin.pipeline.noise import NoiseModel, sigma_map
from raw2rgb_plugin.pipeline.xtrans_packing import XTRANS_SITES

NOISE_MAP_CHANNELS = 4
_LOG_FLOOR, _LOG_SPAN = -4.0, 3.0  # log10 σ from 1e-4 … 1e-1 → 0 … 1


def encode_sigma(sigma: torch.Tensor) -> torch.Tensor:
    """σ ≥ 0 → the map's [0, 1] encoding (monotonic; 0 stays 0)."""
    encoded = (torch.log10(sigma.clamp_min(1e-6)) - _LOG_FLOOR) / _LOG_SPAN
    return encoded.clamp_(0.0, 1.0)


def noise_map(levelled_packed: torch.Tensor, noise: NoiseModel, site_gains: torch.Tensor,
              strength: float = 1.0) -> torch.Tensor:
    """(N, S, h, w) levelled, not white-balanced packed RAW → (N, S, h, w) encoded noise map, S the
    sites of the packed period (4 Bayer, 36 X-Trans).

    σ is `noise.sigma_map` of the frame's green (a, b) at every site: the networks were trained on
    one (a, b) for all sites, and green's carries no white-balance gain; the site gains then scale
    σ as the white balance scales the samples. `site_gains`: (S,) gains of the packed sites ([R,
    Gr, Gb, B] for Bayer), or (N, S, h, w) per site (white balance × a lens's vignetting correction).
    """
    sigma = sigma_map(levelled_packed.float(), noise.green())
    gains = site_gains.to(levelled_packed.device, torch.float32)
    gains = gains.reshape(1, -1, 1, 1) if gains.dim() == 1 else gains
    return encode_sigma(sigma * gains * float(strength))


def site_gains_rgb(wb_gains_rgb, sites: int = 4) -> torch.Tensor:
    """[R, G, B] white-balance gains → the (sites,) gains of the packed channels: [R, Gr, Gb, B]
    for Bayer, or the 36 sites of the canonical X-Trans period (`packed_colours`)."""
    if sites == 4:
        r, g, b = (float(v) for v in wb_gains_rgb)
        return torch.tensor([r, g, g, b], dtype=torch.float32)
    gains = torch.tensor([float(v) for v in wb_gains_rgb], dtype=torch.float32)
    return gains[packed_colours(sites)]


def packed_colours(sites: int) -> torch.Tensor:
    """The colour index (R 0, G 1, B 2) of each packed channel, the sites of the canonical phase:
    RGGB for Bayer, `cfa.XTRANS` read row by row for X-Trans."""
    if sites == 4:
        return torch.tensor([0, 1, 1, 2])
    if sites == XTRANS_SITES:
        return torch.from_numpy(cfa_indices(XTRANS).ravel())
    raise ValueError(f"a packed mosaic has 4 (Bayer) or {XTRANS_SITES} (X-Trans) sites, not {sites}")
