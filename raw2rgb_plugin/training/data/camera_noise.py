"""Camera-realistic Poisson–Gaussian noise for training: draw (a, b) like real sensors, then add it.

Like Brooks et al. 2019 (log read = slope · log shot + intercept + Gaussian scatter, log shot
uniform), but fitted to darktable 4.2's calibrated profiles (369 cameras) instead of four, and
in raw per-pixel units. The constants come from /work/tools/fit_darktable_noise.py run once on
/usr/share/darktable/noiseprofiles.json (nothing reads that file at training time):

- 5,784 profiles without "skip" whose green a and b are > 0 (771 dropped, 13 %); least squares
  log b_dt = 1.2413 log a_dt − 3.1869 (r = 0.894, residual std 1.07, tails from darktable's
  loose b fits); trimmed to residuals within 2.5 MAD-sigmas (5,264 kept):
  log b_dt = 1.2338 log a_dt − 3.3997, residual std 0.746. That trimmed line is used.
- darktable's numbers are a Haar band of a demosaiced export, green a_dt = 0.084 a_raw (see
  raw2rgb_plugin/io/noise_profile.py): a_raw = a_dt / 0.084, b likewise, so the line becomes
  log b = 1.2338 log a − 3.9789 in raw units.
- Shot range: green a at ISO 100, 10th percentile, 1.55e-6 (dt) → 1.84e-5; at ISO 25600,
  90th percentile, 7.71e-4 (dt) → 9.18e-3 (ISO 12800's would be 8.57e-3). For comparison,
  Brooks et al.'s 1e-4 … 1.2e-2 starts at a median camera's ISO ~250 and ends near ours.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: log-uniform range of the shot term a (raw units): ISO-100 p10 … ISO-25600 p90 of darktable's cameras.
SHOT_RANGE = (1.84e-5, 9.18e-3)
#: log b = READ_SLOPE · log a + READ_INTERCEPT + N(0, READ_SCATTER²) (raw units).
READ_SLOPE = 1.2338
READ_INTERCEPT = -3.9789
READ_SCATTER = 0.7459
#: Share of training samples left noise-free by default (so clean, base-ISO looks stay learnable).
DEFAULT_CLEAN_FRACTION = 0.1


def _check(clean_fraction: float, shot_range: tuple[float, float]) -> None:
    if not 0.0 <= clean_fraction <= 1.0:
        raise ValueError(f"clean_fraction must be in [0, 1], got {clean_fraction}")
    if not 0.0 < shot_range[0] <= shot_range[1]:
        raise ValueError(f"shot_range must be 0 < low ≤ high, got {shot_range}")


def sample_camera_noise(
    n: int,
    generator: torch.Generator | None = None,
    *,
    clean_fraction: float = DEFAULT_CLEAN_FRACTION,
    shot_range: tuple[float, float] = SHOT_RANGE,
    scatter: float = READ_SCATTER,
) -> tuple[torch.Tensor, torch.Tensor]:
    """n camera-realistic (a, b) pairs as float32 (n,) tensors; a `clean_fraction` of them 0, 0."""
    _check(clean_fraction, shot_range)
    lo, hi = math.log(shot_range[0]), math.log(shot_range[1])
    log_a = lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)
    log_b = READ_SLOPE * log_a + READ_INTERCEPT + scatter * torch.randn(n, generator=generator, dtype=torch.float64)
    clean = torch.rand(n, generator=generator, dtype=torch.float64) < clean_fraction
    a = torch.where(clean, 0.0, log_a.exp())
    b = torch.where(clean, 0.0, log_b.exp())
    return a.to(torch.float32), b.to(torch.float32)


def sample_camera_noise_np(
    rng: np.random.Generator,
    *,
    clean_fraction: float = DEFAULT_CLEAN_FRACTION,
    shot_range: tuple[float, float] = SHOT_RANGE,
    scatter: float = READ_SCATTER,
) -> tuple[float, float]:
    """One (a, b) pair from a numpy generator (for per-sample synthesis such as unprocess)."""
    _check(clean_fraction, shot_range)
    log_a = rng.uniform(math.log(shot_range[0]), math.log(shot_range[1]))
    log_b = READ_SLOPE * log_a + READ_INTERCEPT + rng.normal(0.0, scatter)
    if rng.uniform() < clean_fraction:
        return 0.0, 0.0
    return float(math.exp(log_a)), float(math.exp(log_b))


def _per_sample(value, like: torch.Tensor) -> torch.Tensor:
    """A float or (N,) tensor → broadcastable against `like` (N, …)."""
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if t.dim() == 0:
        return t
    if t.dim() != 1 or like.dim() == 0 or t.shape[0] != like.shape[0]:
        raise ValueError(f"per-sample noise needs shape ({like.shape[0] if like.dim() else 0},), got {tuple(t.shape)}")
    return t.view(-1, *([1] * (like.dim() - 1)))


def add_noise(
    levelled: torch.Tensor,
    a,
    b,
    generator: torch.Generator | None = None,
    *,
    clip: bool = True,
) -> torch.Tensor:
    """Add Poisson–Gaussian noise, approximated as Gaussian with variance a·max(x, 0) + b.

    `levelled`: clean levelled raw in [0, 1], e.g. packed (N, 4, h, w); `a`, `b`: floats or
    per-sample (N,) tensors. With `clip` the result is clamped to [0, 1] as `levels_normalize`
    clamps real files, so the network sees the same clipped shadows it will see at inference.
    """
    a_t, b_t = _per_sample(a, levelled), _per_sample(b, levelled)
    variance = levelled.clamp(min=0.0) * a_t + b_t
    noise = torch.randn(levelled.shape, generator=generator, dtype=levelled.dtype, device=levelled.device)
    noisy = levelled + variance.sqrt() * noise
    return noisy.clamp_(0.0, 1.0) if clip else noisy
