"""Poisson–Gaussian sensor noise: the model, its per-pixel sigma, and a blind estimate from the image.

A RAW sample x in [0, 1] (black subtracted, divided by white − black, before white balance) has
variance ≈ a·x + b: `a` the shot (photon) term, `b` the read term. Before white balance every
Bayer site shares one conversion gain, so one (a, b) fits all four sites; per-colour values are
kept for sources that have them.

`estimate_poisson_gaussian` recovers (a, b) from the data itself, in the spirit of Foi et al.
2008 ("Practical Poissonian-Gaussian noise modeling and fitting for single-image raw-data"):
per-site sub-images → small blocks → a high-pass residual whose noise gain is exactly 1 →
blocks binned by intensity → in each bin a low quantile of the block variances (flat blocks;
texture only adds variance) corrected by the quantile of the pure-noise statistic → a robust
weighted line var = a·mean + b. Only a few thousand blocks per site are read, so a 24 MP frame
costs about the same as a small one.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the model and the estimator are numpy: `raw2rgb info` imports no torch (1.3 s)
    import torch

#: site order of the packed layout, as indices into (R, G, B).
_PACKED_COLOURS = (0, 1, 1, 2)
_CFA_INDEX = {"R": 0, "G": 1, "B": 2}

#: Block = P×P samples of one site; the 3×3 separable second difference (1,−2,1)⊗(1,−2,1)/6
#: leaves (P−2)² residuals whose variance equals the noise variance (squared taps sum to 1) and
#: which cancel any constant, linear or quadratic ramp (so smooth shading adds nothing).
_BLOCK = 10
#: Texture test: first differences (their block mean removed, so ramps cost nothing) see texture
#: far more than the second difference does, and aliased fine texture the other way round. For
#: white noise their energy ratio lies in (0.652, 1.765) for 98 % of blocks (1st/99th percentile
#: of 10⁶ simulated blocks, /work/tools/calibrate_block_quantile.py); blocks outside are texture.
_FLATNESS = (0.652, 1.765)
#: In each intensity bin the QUANTILE-th statistic of the blocks that pass is the flat-block value
_QUANTILE = 0.2
#: ... divided by the same quantile for white Gaussian noise of variance 1 after the same test:
#: 0.7328 (same simulation; the statistic's mean is 1.000 and its std 0.32, ~19 effective degrees
#: of freedom, because neighbouring residuals are correlated).
_QUANTILE_NULL = 0.7328
#: Blocks with any sample at or above this are near clipping and left out.
_HIGHLIGHT = 0.97
#: An estimate needs this many flat blocks, this share of the unclipped ones, and this many bins.
_MIN_FLAT_BLOCKS = 300
_MIN_FLAT_FRACTION = 0.2
_MIN_BINS = 5


@dataclass(frozen=True)
class NoiseModel:
    """variance = a·x + b for levelled x in [0, 1]; `a`, `b` one value or (R, G, B)."""

    a: tuple[float, ...]
    b: tuple[float, ...]
    source: str  # "darktable profile", "image estimate", "ISO prior", "default"
    iso: float | None = None
    detail: str = ""  # one line: which profile / what the estimate rests on

    def __post_init__(self) -> None:
        for name in ("a", "b"):
            value = np.atleast_1d(np.asarray(getattr(self, name), dtype=np.float64)).ravel()
            if value.size not in (1, 3) or not np.all(np.isfinite(value)) or np.any(value < 0):
                raise ValueError(f"noise {name} must be one or three finite values ≥ 0, got {value}")
            object.__setattr__(self, name, tuple(float(v) for v in value))

    @classmethod
    def of(cls, shot: float, read: float, source: str = "synthetic") -> NoiseModel:
        """One (a, b) for every colour: a drawn or calibrated camera's, in training and tests."""
        return cls(a=(shot,), b=(read,), source=source)

    def green(self) -> NoiseModel:
        """This model with green's (a, b) for every colour (what the noise map is built from)."""
        return self if len(self.a) == len(self.b) == 1 else NoiseModel.of(self.shot, self.read, self.source)

    @property
    def shot(self) -> float:
        """a of green (or the single value)."""
        return self.a[1] if len(self.a) == 3 else self.a[0]

    @property
    def read(self) -> float:
        """b of green (or the single value)."""
        return self.b[1] if len(self.b) == 3 else self.b[0]

    @property
    def per_colour(self) -> bool:
        return len(self.a) == 3 or len(self.b) == 3

    def site_coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) as float32 (4,) arrays in packed [R, Gr, Gb, B] order."""
        a3 = np.broadcast_to(np.asarray(self.a, dtype=np.float32), (3,))
        b3 = np.broadcast_to(np.asarray(self.b, dtype=np.float32), (3,))
        return a3[list(_PACKED_COLOURS)].copy(), b3[list(_PACKED_COLOURS)].copy()

    def sigma(self, x: float, colour: int = 1) -> float:
        """Noise std at signal `x` for colour 0=R, 1=G, 2=B."""
        a = self.a[colour if len(self.a) == 3 else 0]
        b = self.b[colour if len(self.b) == 3 else 0]
        return float(np.sqrt(a * max(float(x), 0.0) + b))


def sigma_map(levelled, model: NoiseModel, *, cfa_pattern: str | None = None):
    """Per-pixel expected noise std sqrt(a·max(x, 0) + b), same type and shape as `levelled`.

    `levelled` is a packed (…, 4, h, w) tensor in [R, Gr, Gb, B] order, or, for a model with a
    single (a, b), any shape; a per-colour model on a 2-D mosaic needs its `cfa_pattern`.
    Accepts torch tensors or numpy arrays.
    """
    import torch

    from raw2rgb_plugin.pipeline.packing import site_tile

    is_numpy = isinstance(levelled, np.ndarray)
    x = torch.from_numpy(levelled) if is_numpy else levelled
    x = x if x.is_floating_point() else x.to(torch.float32)
    a4, b4 = model.site_coefficients()
    a: float | torch.Tensor
    b: float | torch.Tensor
    if not model.per_colour:
        a, b = float(a4[0]), float(b4[0])
    elif x.dim() >= 3 and x.shape[-3] == 4:
        a = torch.as_tensor(a4, dtype=x.dtype, device=x.device).view(4, 1, 1)
        b = torch.as_tensor(b4, dtype=x.dtype, device=x.device).view(4, 1, 1)
    elif x.dim() == 2 and cfa_pattern is not None:
        idx = [_CFA_INDEX[c] for c in cfa_pattern]
        a3 = np.broadcast_to(np.asarray(model.a, np.float32), (3,))
        b3 = np.broadcast_to(np.asarray(model.b, np.float32), (3,))
        h, w = x.shape
        a = site_tile(torch.as_tensor(a3[idx].reshape(2, 2), dtype=x.dtype, device=x.device), h, w)
        b = site_tile(torch.as_tensor(b3[idx].reshape(2, 2), dtype=x.dtype, device=x.device), h, w)
    else:
        raise ValueError("a per-colour noise model needs a packed (…, 4, h, w) input or a mosaic with its cfa_pattern")
    sigma = (x.clamp(min=0.0) * a + b).sqrt()
    return sigma.numpy() if is_numpy else sigma


@dataclass
class NoiseEstimate:
    """What `estimate_poisson_gaussian` found; `usable` says whether `a` (and `b`) can be trusted."""

    a: float
    b: float
    a_stderr: float
    b_stderr: float  # 0 when b was given (fixed_b)
    usable: bool
    reason: str  # why not usable, or "" when usable
    n_blocks: int  # blocks that entered the bins
    bin_means: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    bin_variances: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    bin_used: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=bool))


def _sub_images(x: np.ndarray, black_level_per_site, cfa=None) -> list[tuple[np.ndarray, float]]:
    """(sub-image, black) per CFA site: a 2-D mosaic gives one phase per site of its black's period
    (4 for Bayer, 36 for a (6, 6) X-Trans black: each sub-image must hold one colour, or colour
    edges pass for noise) or, given a 6×6 `cfa`, X-Trans's pure green phases; packed input its channels."""
    if x.ndim == 2:
        shape = (6, 6) if cfa is not None and np.shape(cfa) == (6, 6) else (2, 2)
        black = np.zeros(shape) if black_level_per_site is None else np.asarray(black_level_per_site, np.float64)
        greens = _xtrans_green_phases(np.asarray(cfa), black) if np.shape(cfa) == (6, 6) == black.shape else []
        if greens:
            return [(x[i::3, j::3], level) for (i, j), level in greens]
        rows, cols = black.shape
        return [(x[i::rows, j::cols], float(black[i, j])) for i in range(rows) for j in range(cols)]
    if x.ndim >= 3 and x.shape[-3] == 4:
        if black_level_per_site is not None:
            raise ValueError("black_level_per_site applies to a 2-D mosaic only")
        flat = x.reshape(-1, *x.shape[-2:])
        return [(flat[k], 0.0) for k in range(flat.shape[0])]
    raise ValueError(f"expected a 2-D mosaic or a packed (…, 4, h, w) array, got shape {x.shape}")


def _xtrans_green_phases(cfa: np.ndarray, black: np.ndarray) -> list[tuple[tuple[int, int], float]]:
    """((row, column), black) of each phase of the 3×3 grid whose sites are all green at one level.

    X-Trans puts the 5 greens of a 3×3 block at the same places in every block, so at stride 3
    they are pure green images with half the spacing of the 36 stride-6 phases: less texture per
    block. On the textured synthetic scenes of tests/scene_images.py (seeds 0–2, 600×612) the shot
    term came out 1.06–1.18× the truth from them, 1.5× from the 36 phases (Bayer: 1.03×).
    """
    found = []
    for i in range(3):
        for j in range(3):
            sites = [(i + di, j + dj) for di in (0, 3) for dj in (0, 3)]
            levels = {float(black[s]) for s in sites}
            if all(int(cfa[s]) in (1, 3) for s in sites) and len(levels) == 1:
                found.append(((i, j), levels.pop()))
    return found


def _sample_blocks(sub: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Up to `count` non-overlapping _BLOCK² patches of `sub` (a random subset when there are more)."""
    rows, cols = sub.shape[0] // _BLOCK, sub.shape[1] // _BLOCK
    total = rows * cols
    if total == 0:
        return np.zeros((0, _BLOCK, _BLOCK), dtype=sub.dtype)
    pick = np.arange(total) if total <= count else rng.choice(total, size=count, replace=False)
    r0 = (pick // cols) * _BLOCK
    c0 = (pick % cols) * _BLOCK
    ar = np.arange(_BLOCK)
    return sub[(r0[:, None] + ar)[:, :, None], (c0[:, None] + ar)[:, None, :]]


def _block_statistics(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per block: mean of the inner (P−2)² samples, mean square of the high-pass residual, and
    whether the block looks like noise only (see _FLATNESS)."""
    r = blocks[:, :-2] - 2.0 * blocks[:, 1:-1] + blocks[:, 2:]
    r = (r[:, :, :-2] - 2.0 * r[:, :, 1:-1] + r[:, :, 2:]) / 6.0
    stat = (r * r).mean(axis=(1, 2))
    inner = blocks[:, 1:-1, 1:-1]
    dh, dv = np.diff(inner, axis=2), np.diff(inner, axis=1)
    dh -= dh.mean(axis=(1, 2), keepdims=True)
    dv -= dv.mean(axis=(1, 2), keepdims=True)
    first = ((dh * dh).mean(axis=(1, 2)) + (dv * dv).mean(axis=(1, 2))) / 4.0
    ratio = first / np.maximum(stat, 1e-30)
    return inner.mean(axis=(1, 2)), stat, (ratio > _FLATNESS[0]) & (ratio < _FLATNESS[1])


def _binned_flat_variance(means: np.ndarray, stats: np.ndarray, min_per_bin: int, max_bins: int):
    """Equal-count intensity bins → (mean, flat-block variance, blocks used) per bin."""
    order = np.argsort(means)
    n_bins = int(min(max_bins, len(order) // min_per_bin))
    out_m, out_v, out_n = [], [], []
    for idx in np.array_split(order, n_bins) if n_bins > 0 else []:
        s = stats[idx]
        cut = np.quantile(s, _QUANTILE)
        low = s <= cut
        out_m.append(float(means[idx][low].mean()))
        out_v.append(float(cut / _QUANTILE_NULL))
        out_n.append(int(low.sum()))
    return np.array(out_m), np.array(out_v), np.array(out_n, dtype=np.float64)


def _robust_line(m: np.ndarray, v: np.ndarray, n: np.ndarray, fixed_b: float | None):
    """Weighted fit v = a·m + b with weights n / v_pred² (the quantile's error grows with v),
    bins more than 3 robust sigmas off the line dropped (texture, clipping). → a, b, se_a, se_b, used."""
    used = np.ones(len(m), dtype=bool)
    a = b = 0.0
    pred = np.maximum(v, 1e-20)
    for _ in range(5):
        w = n[used] / pred[used] ** 2
        if fixed_b is None:
            design = np.stack([m[used], np.ones(used.sum())], axis=1)
            normal = design.T @ (design * w[:, None])
            if np.linalg.cond(normal) > 1e14:
                break
            a, b = np.linalg.solve(normal, design.T @ (w * v[used]))
            if b < 0:  # the read term cannot be negative: refit through the origin
                a, b = float(np.sum(w * m[used] * v[used]) / np.sum(w * m[used] ** 2)), 0.0
        else:
            b = float(fixed_b)
            a = float(np.sum(w * m[used] * (v[used] - b)) / np.sum(w * m[used] ** 2))
        pred = np.maximum(a * m + b, 1e-20)
        z = (v - pred) / pred * np.sqrt(n)
        scale = 1.4826 * np.median(np.abs(z[used])) + 1e-12
        new_used = np.abs(z) <= 3.0 * scale
        if new_used.sum() < 3 or np.array_equal(new_used, used):
            break
        used = new_used
    w = n[used] / pred[used] ** 2
    resid = (v[used] - pred[used]) * np.sqrt(w)
    dof = max(int(used.sum()) - (1 if fixed_b is not None else 2), 1)
    s2 = max(float(np.sum(resid**2) / dof), 1e-12)
    design = np.stack([m[used], np.ones(used.sum())], axis=1)
    normal = design.T @ (design * w[:, None])
    if fixed_b is not None:
        se_a, se_b = float(np.sqrt(s2 / np.sum(w * m[used] ** 2))), 0.0
    else:
        cov = np.linalg.pinv(normal) * s2
        se_a, se_b = float(np.sqrt(max(cov[0, 0], 0))), float(np.sqrt(max(cov[1, 1], 0)))
    return float(a), float(b), se_a, se_b, used


def estimate_poisson_gaussian(
    x,
    *,
    black_level_per_site=None,
    white_level: float | None = None,
    fixed_b: float | None = None,
    blocks_per_site: int = 4096,
    seed: int = 0,
    cfa=None,
) -> NoiseEstimate:
    """Estimate (a, b) of var = a·x + b from one frame, pooled over its CFA sites.

    `x`: a levelled 2-D mosaic or packed (…, 4, h, w) array/tensor, not white-balanced. Given
    `black_level_per_site` ((2, 2), or (6, 6) for X-Trans) and `white_level`, a 2-D `x` is
    instead the raw mosaic in DN and only the sampled blocks are levelled (saves a pass over
    24 MP). `cfa`, an X-Trans mosaic's (6, 6) colour indices, has its green sites measured at
    stride 3 (`_xtrans_green_phases`). `fixed_b` (e.g. from the optical black) fixes the read
    term and only `a` is fitted. Values clipped at 0 (a clamped input) or near white are left
    out, so clamped dark areas do not bias `b` low.
    """
    torch = sys.modules.get("torch")  # a tensor can only come from a process that imported torch
    arr = x.detach().cpu().numpy() if torch is not None and isinstance(x, torch.Tensor) else np.asarray(x)
    raw_units = white_level is not None
    subs = _sub_images(arr, black_level_per_site if raw_units else None, cfa)
    rng = np.random.default_rng(seed)
    per_sub = max(16, blocks_per_site * 4 // len(subs))
    blocks = []
    for sub, black in subs:
        patch = _sample_blocks(sub, per_sub, rng).astype(np.float64)
        if white_level is not None:
            patch = (patch - black) / (float(white_level) - black)
        blocks.append(patch)
    all_blocks = np.concatenate(blocks)
    if len(all_blocks) == 0:
        return NoiseEstimate(0.0, 0.0, np.inf, np.inf, False, "image too small for noise blocks", 0)

    lo = all_blocks.min(axis=(1, 2))
    keep = all_blocks.max(axis=(1, 2)) < _HIGHLIGHT
    if not np.any(lo < 0):  # no sample below black: the data were clipped there, so zeros are not noise
        keep &= lo > 0
    means, stats, flat = _block_statistics(all_blocks[keep])
    means, stats = means[flat], stats[flat]
    n_flat = int(flat.sum())
    # On simulated scenes with 1/f texture everywhere only 0–23 % of blocks pass the texture test
    # and the line comes out 1.7–13× too steep; on the test scene (a third textured) 60–80 % pass.
    if n_flat < max(_MIN_FLAT_BLOCKS, _MIN_FLAT_FRACTION * int(keep.sum())):
        reason = f"only {n_flat} of {len(all_blocks)} blocks are flat and unclipped (texture or clipping everywhere)"
        return NoiseEstimate(0.0, 0.0, np.inf, np.inf, False, reason, n_flat)
    m, v, n = _binned_flat_variance(means, stats, min_per_bin=48, max_bins=32)
    if len(m) < _MIN_BINS:
        return NoiseEstimate(0.0, 0.0, np.inf, np.inf, False, f"only {len(m)} intensity bins of flat blocks", n_flat)
    a, b, se_a, se_b, used = _robust_line(m, v, n, fixed_b)
    reason = ""
    if not (np.isfinite(a) and a > 0):
        reason = "no signal-dependent noise found"
    elif used.sum() < _MIN_BINS:
        reason = f"only {int(used.sum())} intensity bins agree"
    elif not se_a < 0.5 * a:
        reason = f"shot term undetermined (a = {a:.3g} ± {se_a:.2g})"
    return NoiseEstimate(
        a=max(a, 0.0), b=max(b, 0.0), a_stderr=se_a, b_stderr=se_b, usable=not reason, reason=reason,
        n_blocks=n_flat, bin_means=m, bin_variances=v, bin_used=used,
    )
