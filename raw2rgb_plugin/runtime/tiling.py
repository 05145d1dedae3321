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


def plan_tiles(height: int, width: int, max_pixels: int, *, overlap: int, stride: int) -> tuple[int, int]:
    """The (tile_h, tile_w) of at most `max_pixels` that covers a padded height×width frame with the
    fewest computed pixels (tiles × tile area, overlaps included); (0, 0) when the frame fits whole.

    A rectangular plan beats a fixed square tile: a 1504×2000 frame under a 2.3 M-pixel budget
    runs as two 1504×1032 tiles (1.03× the frame's pixels) instead of 512² squares (1.4×).
    """
    if height * width <= max_pixels:
        return 0, 0
    smallest = max(2 * overlap, 2 * stride)  # every step advances at least `overlap`

    def options(length: int) -> list[tuple[int, int]]:
        """(tile, tiles needed) for each tile count along one axis."""
        found: dict[int, int] = {}
        for count in range(1, length // max(1, smallest - overlap) + 2):
            tile = -(-(length + (count - 1) * overlap) // count)  # ceil
            tile = min(length, max(smallest, -(-tile // stride) * stride))
            found.setdefault(tile, len(tile_starts(length, tile, overlap, stride)))
            if tile == smallest or tile == length and count > 1:
                break
        return sorted(found.items())

    # (computed pixels, tiles, tile_h, tile_w) of every plan; the cheapest that fits, else the smallest.
    plans = [(rows * cols * tile_h * tile_w, rows * cols, tile_h, tile_w)
             for tile_h, rows in options(height) for tile_w, cols in options(width)]
    fitting = [plan for plan in plans if plan[2] * plan[3] <= max_pixels]
    best = min(fitting) if fitting else min(plans, key=lambda plan: (plan[2] * plan[3], plan[0]))
    return best[2], best[3]


def run_tiled(
    model: Callable[[torch.Tensor], torch.Tensor],
    packed: torch.Tensor,
    *,
    tile: int | tuple[int, int] = 0,
    stride: int,
    overlap: int = DEFAULT_OVERLAP,
    scale: int = 2,
) -> torch.Tensor:
    """Run `model` on (1, C, h, w) packed input; returns (1, 3, scale·h, scale·w).

    `scale` is the model's output pixels per packed pixel (its spec's `output_scale`: 2 for a Bayer
    G1, 6 for an X-Trans one); the overlap and the ramps are in packed pixels, scaled with it.

    `tile` = 0 (or a tile at least as large as the frame) runs the whole frame at once; an int is a
    square tile, a pair (tile_h, tile_w) a rectangle (`plan_tiles`). `stride` is the model's (its
    architecture spec says it); tiles start on multiples of it.

    Each tile's output is weighted by separable ramps wy(y)·wx(x). Every tile in a row of the grid
    shares its wy and every tile in a column its wx, so the sum of the weights is itself the
    product of two 1-D sums: the weights are normalised per axis up front and each tile is added
    once, with no full-frame weight buffer and no final division.
    """
    if packed.shape[0] != 1:
        raise ValueError("run_tiled takes one frame at a time")
    padded, (h, w) = pad_to_stride(packed, stride)
    ph, pw = padded.shape[-2:]
    tile_h, tile_w = (tile, tile) if isinstance(tile, int) else tile
    tile_h, tile_w = tile_h // stride * stride, tile_w // stride * stride
    if tile_h <= 0 and tile_w <= 0 or (tile_h >= ph and tile_w >= pw):
        return model(padded)[..., : h * scale, : w * scale]
    tile_h, tile_w = min(tile_h if tile_h > 0 else ph, ph), min(tile_w if tile_w > 0 else pw, pw)
    if (overlap >= tile_h and tile_h < ph) or (overlap >= tile_w and tile_w < pw):
        raise ValueError(f"overlap {overlap} must be smaller than the tile {tile_h}×{tile_w}")

    rows, cols = tile_starts(ph, tile_h, overlap, stride), tile_starts(pw, tile_w, overlap, stride)
    device = packed.device
    row_weights = _axis_weights(rows, tile_h, ph, scale, device)
    col_weights = _axis_weights(cols, tile_w, pw, scale, device)
    out: torch.Tensor | None = None
    for y, (wy, (top, bottom)) in zip(rows, row_weights):
        for x, (wx, (left, right)) in zip(cols, col_weights):
            result = model(padded[..., y : y + tile_h, x : x + tile_w]).float()
            if out is None:
                out = torch.zeros(1, result.shape[1], ph * scale, pw * scale, device=device, dtype=torch.float32)
            target = out[..., y * scale : (y + tile_h) * scale, x * scale : (x + tile_w) * scale]
            # Where no other tile reaches, the weight is exactly 1: copy. Only the overlap bands
            # are weighted and added.
            target[..., top:bottom, left:right] = result[..., top:bottom, left:right]
            for band in (slice(0, top), slice(bottom, None)):
                target[..., band, :] += result[..., band, :].mul_(wy[band, None]).mul_(wx)
            for band in (slice(0, left), slice(right, None)):
                target[..., top:bottom, band] += result[..., top:bottom, band].mul_(wx[band])
            del result
    assert out is not None
    return out[..., : h * scale, : w * scale]


def _axis_weights(starts: list[int], tile: int, length: int, scale: int, device) -> list[tuple[torch.Tensor, tuple[int, int]]]:
    """Per tile along one axis: its ramp divided by the sum of all ramps at each position, and the
    [first, end) range of its own output pixels that no other tile covers (weight exactly 1)."""
    ramps = []
    for i, start in enumerate(starts):
        # Ramps only where a neighbour overlaps, sized by the actual overlap with it.
        before = (starts[i - 1] + tile - start) * scale if i > 0 else 0
        after = (start + tile - starts[i + 1]) * scale if i + 1 < len(starts) else 0
        ramps.append(_ramp(tile * scale, before, after, device, torch.float32))
    total = torch.zeros(length * scale, device=device, dtype=torch.float32)
    coverage = torch.zeros(length * scale, dtype=torch.int32)
    for start, ramp in zip(starts, ramps):
        total[start * scale : (start + tile) * scale] += ramp
        coverage[start * scale : (start + tile) * scale] += 1
    weights = []
    for start, ramp in zip(starts, ramps):
        alone = torch.nonzero(coverage[start * scale : (start + tile) * scale] == 1).flatten()
        first, end = (int(alone[0]), int(alone[-1]) + 1) if len(alone) else (0, 0)
        weights.append((ramp / total[start * scale : (start + tile) * scale], (first, end)))
    return weights
