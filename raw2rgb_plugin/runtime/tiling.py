"""Full-frame inference: whole, or in overlapping tiles blended with linear ramps.

G1 has no per-sample statistics, so a tile's output depends only on its receptive field; with
an overlap and ramped weights across it, a tiled frame matches the whole-frame result to ~3e-4
at the default overlap (see tests/test_tiling.py for the stated tolerance). Tile
starts are multiples of the network stride so every tile sees the same conv phase as the whole
frame would.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from raw2rgb_plugin.runtime.settings import DEFAULT_OVERLAP


def pad_to_stride(packed: torch.Tensor, stride: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad (N, C, h, w) at the bottom/right to multiples of `stride`."""
    h, w = packed.shape[-2:]
    pad_h, pad_w = (-h) % stride, (-w) % stride
    if pad_h or pad_w:
        # reflect needs pad < size; replicate covers the (tiny-image) rest.
        mode = "reflect" if pad_h < h and pad_w < w else "replicate"
        packed = F.pad(packed, (0, pad_w, 0, pad_h), mode=mode)
    return packed, (h, w)


def tile_starts(length: int, tile: int, overlap: int, stride: int) -> list[int]:
    """Stride-aligned starts covering [0, length) with tiles of `tile` overlapping ≥ `overlap`."""
    if tile >= length:
        return [0]
    step = max(stride, (tile - overlap) // stride * stride)
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)  # length and tile are stride multiples, so this is aligned
    return starts


#: fraction of each overlap, at the tile's very edge, that gets (almost) no weight.
_EDGE_DEAD_ZONE = 0.25


def _ramp(length: int, ramp_in: int, ramp_out: int, device, dtype) -> torch.Tensor:
    """1-D blend weights: ~0 over the outer quarter of each overlap, then a linear rise to 1.

    A tile's outermost pixels are the ones its reflect padding disturbs most; giving them no say
    (the neighbour covers them at full weight there) cut the tiled-vs-whole error ~25× compared
    with a plain linear ramp over the whole overlap.
    """
    pos = torch.arange(length, device=device, dtype=dtype) + 0.5
    weight = torch.ones(length, device=device, dtype=dtype)
    for ramp, distance in ((ramp_in, pos), (ramp_out, length - pos)):
        if ramp:
            dead = ramp * _EDGE_DEAD_ZONE
            weight = torch.minimum(weight, ((distance - dead) / (ramp - 2 * dead)).clamp(min=1e-6))
    return weight


def run_tiled(
    model: Callable[[torch.Tensor], torch.Tensor],
    packed: torch.Tensor,
    *,
    tile: int = 0,
    stride: int,
    overlap: int = DEFAULT_OVERLAP,
    scale: int = 2,
) -> torch.Tensor:
    """Run `model` on (1, 4, h, w) packed input; returns (1, 3, scale·h, scale·w).

    `tile` = 0 (or a tile at least as large as the frame) runs the whole frame at once. `stride` is
    the model's (its architecture spec says it); tiles start on multiples of it.
    """
    if packed.shape[0] != 1:
        raise ValueError("run_tiled takes one frame at a time")
    padded, (h, w) = pad_to_stride(packed, stride)
    ph, pw = padded.shape[-2:]
    tile = tile // stride * stride
    if tile <= 0 or (tile >= ph and tile >= pw):
        return model(padded)[..., : h * scale, : w * scale]
    if overlap >= tile:
        raise ValueError(f"overlap {overlap} must be smaller than the tile {tile}")

    tile_h, tile_w = min(tile, ph), min(tile, pw)
    rows, cols = tile_starts(ph, tile_h, overlap, stride), tile_starts(pw, tile_w, overlap, stride)
    out: torch.Tensor | None = None
    weight_sum = torch.zeros(1, 1, ph * scale, pw * scale, device=packed.device, dtype=torch.float32)
    for i, y in enumerate(rows):
        for j, x in enumerate(cols):
            result = model(padded[..., y : y + tile_h, x : x + tile_w]).float()
            if out is None:
                out = torch.zeros(1, result.shape[1], ph * scale, pw * scale, device=packed.device, dtype=torch.float32)
            # Ramps only where a neighbour overlaps, sized by the actual overlap with it.
            up = (rows[i - 1] + tile_h - y) * scale if i > 0 else 0
            down = (y + tile_h - rows[i + 1]) * scale if i + 1 < len(rows) else 0
            left = (cols[j - 1] + tile_w - x) * scale if j > 0 else 0
            right = (x + tile_w - cols[j + 1]) * scale if j + 1 < len(cols) else 0
            wy = _ramp(tile_h * scale, up, down, packed.device, torch.float32)
            wx = _ramp(tile_w * scale, left, right, packed.device, torch.float32)
            weight = wy[:, None] * wx[None, :]
            ys, xs = slice(y * scale, (y + tile_h) * scale), slice(x * scale, (x + tile_w) * scale)
            out[..., ys, xs] += result * weight
            weight_sum[..., ys, xs] += weight
    assert out is not None
    return (out / weight_sum)[..., : h * scale, : w * scale]
