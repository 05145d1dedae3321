"""The classical answer: a per-channel tone curve and a 3D LUT, fitted on the same pairs.

This is what darktable-lut-generator, darktable-chart and RawTherapee's auto-matched tone curve
do: map a neutral rendering of the RAW (here the base profile's) to the camera's JPEG, pixel by
pixel, with one global function. It cannot make a pixel's colour depend on its neighbourhood,
which is what the learned profile adds; the report scores both on the same held-out frames.

Both stages are linear least squares with smoothness priors, solved in numpy:

1. **tone curve**: per channel, a piecewise-linear curve on `CURVE_KNOTS` knots, with a second-
   difference penalty (no kinks where data are sparse);
2. **3D LUT**: `LUT_SIZE`³ nodes, trilinear, fitted to the curve's output, with a discrete
   Laplacian penalty along the three axes and a weak pull to the identity (unsampled colours
   pass through unchanged), solved by conjugate gradients on the normal equations (the 17³
   system is sparse: every sample touches 8 nodes).

Samples are low-passed first (σ = 1 px): JPEG blocks and the last fraction of a pixel of
misalignment are noise to a pointwise map.

How smooth the LUT should be depends on the card: `fit_curve_luts` fits a ladder of smoothness
weights (sharing the curve) for the caller to choose on frames the fit did not see. Held-out
PSNR (dB) of the LUT alone against the camera's JPEGs at 2e-4 / 6e-5 / 2e-5 / 6e-6: the 100 ×
24 MP card's global look 39.64 / 39.86 / 39.96 / 40.00; the battery's small textured cards (8
frames each) global 32.50 / 32.45 / 32.30 / 32.05, hue 32.95 / 33.17 / 33.21 / 33.10, clarity
28.83 / 28.77 / 28.62 / 28.37, film 32.56 / 32.59 / 32.49 / 32.27. Their validation frames
picked the best weight on all four cards and 2e-5 on the full card.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from raw2rgb_plugin.pipeline.look import Look

CURVE_KNOTS = 33
LUT_SIZE = 17
#: penalties per sample (scaled by the sample count, so they do not depend on how many were drawn)
CURVE_SMOOTHNESS = 1e-4
LUT_SMOOTHNESS = 2e-4
#: the LUT smoothness weights `learn` chooses from, smoothest first (see the module doc)
LUT_SMOOTHNESS_CHOICES = (2e-4, 6e-5, 2e-5, 6e-6)
LUT_IDENTITY = 1e-6
_CG_ITERATIONS = 400


@dataclass
class CurveLut:
    """A fitted tone curve (3, CURVE_KNOTS) followed by a 3D LUT (n, n, n, 3), both on [0, 1]."""

    curves: np.ndarray
    lut: np.ndarray
    smoothness: float = LUT_SMOOTHNESS

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """(…, 3) sRGB in [0, 1] → the same shape through the curve then the LUT, clipped."""
        flat = np.clip(rgb.reshape(-1, 3).astype(np.float64), 0.0, 1.0)
        knots = np.linspace(0.0, 1.0, self.curves.shape[1])
        curved = np.stack([np.interp(flat[:, c], knots, self.curves[c]) for c in range(3)], axis=-1)
        index, weight = _trilinear(np.clip(curved, 0.0, 1.0), self.lut.shape[0])
        out = np.einsum("nk,nkc->nc", weight, self.lut.reshape(-1, 3)[index])
        return np.clip(out, 0.0, 1.0).reshape(rgb.shape).astype(np.float32)

    def to_dict(self) -> dict:
        return {"curve_knots": self.curves.shape[1], "lut_size": self.lut.shape[0], "smoothness": self.smoothness}

    def as_look(self) -> Look:
        """The same map as the profile's look table (`pipeline/look.py`, equal to 2e-7)."""
        return Look(torch.from_numpy(self.curves).float(), torch.from_numpy(self.lut).float())


def fit_curve_lut(source: np.ndarray, target: np.ndarray, smoothness: float = LUT_SMOOTHNESS) -> CurveLut:
    """Fit source (N, 3) → target (N, 3) colours, both sRGB in [0, 1]."""
    return fit_curve_luts(source, target, (smoothness,))[0]


def fit_curve_luts(source: np.ndarray, target: np.ndarray, smoothnesses: tuple[float, ...]) -> list[CurveLut]:
    """`fit_curve_lut` at each LUT smoothness weight (the curves are the same: fitted once)."""
    source = np.clip(np.asarray(source, np.float64).reshape(-1, 3), 0, 1)
    target = np.clip(np.asarray(target, np.float64).reshape(-1, 3), 0, 1)
    curves = np.stack([_fit_curve(source[:, c], target[:, c]) for c in range(3)])
    knots = np.linspace(0.0, 1.0, CURVE_KNOTS)
    curved = np.clip(np.stack([np.interp(source[:, c], knots, curves[c]) for c in range(3)], axis=-1), 0, 1)
    return [CurveLut(curves, _fit_lut(curved, target, smoothness), smoothness) for smoothness in smoothnesses]


def _fit_curve(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Piecewise-linear curve values at the knots: least squares + second-difference penalty."""
    k = CURVE_KNOTS
    position = x * (k - 1)
    left = np.minimum(position.astype(np.int64), k - 2)
    t = position - left
    ata = np.zeros((k, k))
    np.add.at(ata, (left, left), (1 - t) ** 2)
    np.add.at(ata, (left + 1, left + 1), t**2)
    np.add.at(ata, (left, left + 1), t * (1 - t))
    np.add.at(ata, (left + 1, left), t * (1 - t))
    aty = np.bincount(left, (1 - t) * y, minlength=k) + np.bincount(left + 1, t * y, minlength=k)
    d2 = np.diff(np.eye(k), 2, axis=0)
    identity = np.linspace(0, 1, k)
    n = len(x)
    system = ata + CURVE_SMOOTHNESS * n * d2.T @ d2 + LUT_IDENTITY * n * np.eye(k)
    return np.linalg.solve(system, aty + LUT_IDENTITY * n * identity)


def _trilinear(rgb: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The 8 node indices (flat, r-major) and weights of each colour in an n³ grid."""
    position = rgb * (n - 1)
    base = np.minimum(position.astype(np.int64), n - 2)
    frac = position - base
    index = np.empty((len(rgb), 8), dtype=np.int64)
    weight = np.empty((len(rgb), 8))
    for corner in range(8):
        offset = np.array([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])
        node = base + offset
        index[:, corner] = (node[:, 0] * n + node[:, 1]) * n + node[:, 2]
        weight[:, corner] = np.prod(np.where(offset, frac, 1 - frac), axis=1)
    return index, weight


def _laplacian(grid: np.ndarray) -> np.ndarray:
    """Dᵀ D x for second differences along each axis of an (n, n, n, 3) grid."""
    out = np.zeros_like(grid)
    for axis in range(3):
        d2 = np.diff(grid, 2, axis=axis)
        # Dᵀ of the second difference [1, −2, 1]: scatter back to the three nodes it read.
        lead = [slice(None)] * 4
        for shift, coefficient in ((0, 1.0), (1, -2.0), (2, 1.0)):
            lead[axis] = slice(shift, shift + d2.shape[axis])
            out[tuple(lead)] += coefficient * d2
    return out


def _gram_blocks(index: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AᵀA of the trilinear samples as 8×8 blocks, one per occupied cell: (cells' node indices
    (c, 8), blocks (c, 8, 8)).

    Each sample touches the 8 nodes of its cell, so AᵀA is the sum of its cells' blocks: a
    conjugate-gradient step then costs a pass over the cells, not over every sample (a fit of 120 k
    samples of the 24 MP card: 6.9 → 0.6 s on a busy core, the LUT the same to 2.8e-5).
    """
    cells, inverse = np.unique(index[:, 0], return_inverse=True)  # corner 0: the cell's lowest node
    cell_nodes = cells[:, None] + (index[0] - index[0, 0])[None, :]  # the same offsets in every cell
    blocks = np.empty((len(cells), 8, 8))
    for a in range(8):
        for b in range(a, 8):
            blocks[:, a, b] = blocks[:, b, a] = np.bincount(inverse, weight[:, a] * weight[:, b], minlength=len(cells))
    return cell_nodes, blocks


def _fit_lut(x: np.ndarray, y: np.ndarray, smoothness: float) -> np.ndarray:
    """(n, n, n, 3) LUT minimising |A·L − y|² + s·|D L|² + i·|L − identity|² by conjugate gradients."""
    n, samples = LUT_SIZE, len(x)
    index, weight = _trilinear(x, n)
    nodes = n**3
    axis = np.linspace(0.0, 1.0, n)
    identity = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)
    smooth, pull = smoothness * samples, LUT_IDENTITY * samples
    cell_nodes, blocks = _gram_blocks(index, weight)

    def normal(flat: np.ndarray) -> np.ndarray:  # (nodes, 3) → (AᵀA + s DᵀD + i) flat
        local = np.einsum("cab,cbk->cak", blocks, flat[cell_nodes])
        back = np.stack([np.bincount(cell_nodes.ravel(), local[..., c].ravel(), minlength=nodes) for c in range(3)], axis=-1)
        return back + smooth * _laplacian(flat.reshape(n, n, n, 3)).reshape(nodes, 3) + pull * flat

    rhs = np.stack([np.bincount(index.ravel(), (weight * y[:, c : c + 1]).ravel(), minlength=nodes) for c in range(3)],
                   axis=-1) + pull * identity.reshape(nodes, 3)
    solution = identity.reshape(nodes, 3).copy()
    residual = rhs - normal(solution)
    direction = residual.copy()
    rr = (residual * residual).sum(axis=0)
    # Relative tolerance 1e-5 on the residual norm: a change below 1e-4 of a node's value.
    tolerance = 1e-10 * (rhs * rhs).sum(axis=0)
    for _ in range(_CG_ITERATIONS):  # the three colour channels are three independent systems
        ad = normal(direction)
        alpha = rr / np.maximum((direction * ad).sum(axis=0), 1e-30)
        solution += alpha * direction
        residual -= alpha * ad
        new = (residual * residual).sum(axis=0)
        if np.all(new < tolerance):
            break
        direction = residual + (new / np.maximum(rr, 1e-30)) * direction
        rr = new
    return solution.reshape(n, n, n, 3)
