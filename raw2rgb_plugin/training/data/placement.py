"""Between the sensor and the target: exact packed integers, the target on the sensor grid, patches.

The RAW is packed to RGGB phase as exact integers (the reader normalises them with the engine's
own code). The target, already in sensor orientation, is aligned to the RAW (`align`) and warped
onto the padded sensor grid together with its saliency. Patch windows are then placed on the
packed grid, each one checked against the RAW, and the kept ones cut from all three arrays.

Coordinates: `packed` is (4, h, w); the target grid is (2h, 2w), the padded mosaic's; a patch of
n = patch size + MARGIN packed pixels at (y, x) covers target rows 2y … 2(y + n).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from raw2rgb_plugin.io.raw_file import BayerFrame
from raw2rgb_plugin.pipeline.packing import (
    PhasePadding,
    pack_rggb,
    pad_mosaic,
    rggb_padding,
)
from raw2rgb_plugin.training.data.align import (
    TEXTURE_THRESHOLD,
    Alignment,
    AlignmentFailed,
    PatchScorer,
    estimate_alignment,
    gradient_ncc,
    pad_to_grid,
    target_gray,
    warp_to_grid,
)
from raw2rgb_plugin.training.data.store import MARGIN


def packed_uint16(frame: BayerFrame) -> tuple[np.ndarray, np.ndarray, PhasePadding]:
    """The mosaic padded to RGGB phase and packed, as exact integers; black per packed channel."""
    padding = rggb_padding(frame.cfa_pattern, frame.height, frame.width)
    mosaic = torch.from_numpy(frame.mosaic.astype(np.float32))  # uint16 values are exact in float32
    packed = pack_rggb(pad_mosaic(mosaic, padding)).round_().to(torch.int32).numpy().astype(np.uint16)
    # Padded site (i, j) holds a sample of the visible site (i − top, j − left), modulo 2.
    black = [float(frame.black_level_per_site[(i - padding.top) % 2, (j - padding.left) % 2])
             for i, j in ((0, 0), (0, 1), (1, 0), (1, 1))]
    return packed, np.asarray(black, dtype=np.float32), padding


def patch_positions(h: int, w: int, patch_size: int, stride: int | None, count: int | None,
                    rng: np.random.Generator) -> list[tuple[int, int]]:
    """Top-left corners of the patch windows on a packed h × w frame: `count` random ones, or a grid."""
    n = patch_size + MARGIN
    if h < n or w < n:
        return []
    if count:
        ys = rng.integers(0, h - n + 1, size=count)
        xs = rng.integers(0, w - n + 1, size=count)
        return [(int(y), int(x)) for y, x in zip(ys, xs)]
    stride = stride or patch_size
    rows = list(range(0, h - n + 1, stride))
    cols = list(range(0, w - n + 1, stride))
    # Centre the grid: the frame's edges are where lens falloff and misalignment are worst.
    oy, ox = (h - (rows[-1] + n)) // 2, (w - (cols[-1] + n)) // 2
    return [(y + oy, x + ox) for y in rows for x in cols]


@dataclass
class Placed:
    """The target and its saliency on the padded sensor grid, and where the target covers it."""

    target: np.ndarray  # (2h, 2w, 3) float32
    saliency: np.ndarray  # (2h, 2w) float32
    valid: np.ndarray  # (2h, 2w) float32, 1 where the target covers the grid
    alignment: Alignment


def place_target(frame: BayerFrame, padding: PhasePadding, grid: tuple[int, int], target: np.ndarray,
                 saliency: np.ndarray, reference: np.ndarray, mode: str) -> Placed:
    """Bring a sensor-oriented target (and its saliency) onto the grid; raises AlignmentFailed."""
    if mode == "none":
        if target.shape[:2] != (frame.height, frame.width):
            raise AlignmentFailed(f"target {target.shape[1]}×{target.shape[0]} is not the sensor's {frame.width}×{frame.height} "
                                  "(use --align auto)")
        pads = (padding.top, padding.left, padding.bottom, padding.right)
        shift = np.array([[1, 0, padding.left], [0, 1, padding.top], [0, 0, 1]], dtype=np.float64)
        return Placed(pad_to_grid(target, *pads), pad_to_grid(saliency, *pads), np.ones(grid, np.float32),
                      Alignment(shift, "none"))
    alignment = estimate_alignment(reference, target_gray(target, frame.camera_to_srgb), mode)
    warped, valid = warp_to_grid(target, alignment.matrix, grid)
    warped_saliency, _ = warp_to_grid(saliency.astype(np.float32), alignment.matrix, grid)
    return Placed(warped, warped_saliency, valid, alignment)


def score_placement(placed: Placed, reference: np.ndarray, camera_to_srgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Set the alignment's score (gradient correlation where the target fully covers the RAW).

    Returns the placed target's gray and coverage at the packed size, which the patch checks use.
    """
    h, w = reference.shape
    warped_gray = cv2.resize(target_gray(placed.target, camera_to_srgb), (w, h), interpolation=cv2.INTER_AREA)
    valid = cv2.resize(placed.valid, (w, h), interpolation=cv2.INTER_AREA)
    # Eroded: resampled borders half-cover a packed pixel and would only add noise to the score.
    overlap = cv2.erode((valid > 0.999).astype(np.uint8), np.ones((5, 5), np.uint8))
    placed.alignment.score = gradient_ncc(reference, warped_gray, overlap) if overlap.sum() > 64 else 0.0
    return warped_gray, valid


@dataclass
class PatchChoice:
    """Which windows passed, their shard.json entries, preview boxes and the drop counts."""

    kept: list[tuple[int, int]] = field(default_factory=list)
    patches: list[dict] = field(default_factory=list)
    boxes: list[tuple[tuple[int, int, int, int], str]] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)


def choose_patches(positions: list[tuple[int, int]], patch_size: int, padding: PhasePadding, scorer: PatchScorer,
                   valid: np.ndarray, *, checked: bool, min_score: float, max_shift: float) -> PatchChoice:
    """Keep the windows the target fully covers and that, when `checked`, still align locally.

    A window without structure to check (sky, walls) is kept unverified: nothing in it could be
    spoiled by the small misalignment it might have.
    """
    n = patch_size + MARGIN
    choice = PatchChoice()
    for y, x in positions:
        box = (y, x, y + n, x + n)
        inside = valid[y : y + n, x : x + n].min() >= 0.999
        verified = inside and (not checked or scorer.texture(box) >= TEXTURE_THRESHOLD)
        score = scorer.score(box) if inside else 0.0
        shift = 2.0 * scorer.shift(box) if checked and verified else 0.0  # sensor pixels
        if not inside:
            reason = "outside target"
        elif checked and verified and score < min_score:
            reason = "poor alignment"
        elif shift > max_shift:
            reason = "local misalignment"
        else:
            reason = None
        if reason is not None:
            choice.dropped[reason] += 1
            choice.boxes.append((box, "dropped"))
            continue
        choice.kept.append((y, x))
        # The stored window in visible-mosaic coordinates (margin included).
        sensor_box = [2 * y - padding.top, 2 * x - padding.left, 2 * (y + n) - padding.top, 2 * (x + n) - padding.left]
        choice.patches.append({"box_sensor": sensor_box, "score": round(float(score), 4), "shift": round(shift, 3),
                               "verified": bool(verified)})
        choice.boxes.append((box, "kept" if verified else "unverified"))
    return choice


def cut_patches(packed: np.ndarray, placed: Placed, kept: list[tuple[int, int]], patch_size: int,
                bits: int) -> dict[str, np.ndarray]:
    """The shard's arrays: packed RAW, target at its own bit depth, and 8-bit saliency."""
    n = patch_size + MARGIN
    rgb_dtype, scale = (np.uint8, 255.0) if bits == 8 else (np.uint16, 65535.0)
    full = [(slice(2 * y, 2 * (y + n)), slice(2 * x, 2 * (x + n))) for y, x in kept]
    return {
        "raw": np.stack([packed[:, y : y + n, x : x + n] for y, x in kept]),
        "rgb": np.stack([np.rint(np.clip(placed.target[r, c], 0, 1) * scale).astype(rgb_dtype).transpose(2, 0, 1)
                         for r, c in full]),
        "saliency": np.stack([np.rint(np.clip(placed.saliency[r, c], 0, 1) * 255).astype(np.uint8)[None] for r, c in full]),
    }
