"""Lens corrections applied where each is exact, with lensfun's models (`io/lens.py` finds them).

- **Vignetting** is a loss of light: it is undone on the levelled mosaic before the network, where
  values are linear in light (after the tone curve a gain would not be a gain). The noise map is
  scaled by the same gain, so a noise-aware profile knows the brightened corners are noisier.
- **Distortion and lateral CA** move pixels: the finished image is resampled once, each colour
  with its own coordinates (lensfun's subpixel distortion), bicubic, in sensor orientation (the
  geometry lensfun's calibrations describe), before orientation and quantisation. Doing it after
  the network keeps tiles equal to the whole frame: the network never sees a resampled mosaic.

Cost (12 MP, 2 Zen 4 cores): lensfun's coordinates on every 16th row and column, bilinearly
filled in between, are within 0.08 px of its own full-resolution map (0.75 s to compute; the
lattice takes 0.03 s, the filling in 0.08 s); the bicubic resampling, one grid per colour, ~0.3 s;
done in strips of rows so the full-resolution grid (24 bytes a pixel) never exists at once.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from torch.nn import functional as F

#: lensfun's coordinates are computed every this many pixels and interpolated between (see above)
GRID_STEP = 16
#: output rows resampled at a time: bounds the grid's memory (here ~12 MB per strip at 4000 px wide)
STRIP_ROWS = 128

class LensModel(Protocol):
    """What the corrections need of a lens (`io.lens.LensCorrection` has it); a protocol so this
    layer does not import the io layer above it."""

    @property
    def corrects(self) -> tuple[str, ...]: ...  # of "distortion", "tca", "vignetting"

    def modifier(self, width: int, height: int, *, flags: int, scale: float = 0.0) -> Any: ...


# lensfunpy.ModifyFlags values (lensfun's LF_MODIFY_*), here so this module imports without it
_TCA, _VIGNETTING, _DISTORTION = 1, 2, 8


def vignetting_gain(correction: LensModel, height: int, width: int) -> torch.Tensor | None:
    """(height, width) float32 multipliers that undo the lens's vignetting, or None without it.

    lensfun evaluates them at every site (0.06 s per 12 MP). Not on a coarser grid: its maps for
    two image sizes do not line up by any simple pixel-centre rule (a half-size map, interpolated,
    was 0.2 % off at a kit zoom's corners, where the gain climbs 0.2 % per pixel).
    """
    if "vignetting" not in correction.corrects:
        return None
    modifier = correction.modifier(width, height, flags=_VIGNETTING)
    ones = np.ones((height, width, 3), np.float32)  # lensfun takes 3 channels; one gain for all
    if not modifier.apply_color_modification(ones):
        return None
    return torch.from_numpy(np.ascontiguousarray(ones[..., 1]))


def geometry_flags(correction: LensModel) -> int:
    return (_DISTORTION if "distortion" in correction.corrects else 0) | (_TCA if "tca" in correction.corrects else 0)


def correct_geometry(rgb: torch.Tensor, correction: LensModel) -> torch.Tensor:
    """(1, 3, H, W) image in sensor orientation → the same with distortion and TCA corrected."""
    flags = geometry_flags(correction)
    if not flags:
        return rgb
    height, width = rgb.shape[-2:]
    coarse = coarse_coordinates(correction, height, width, flags)
    if coarse is None:
        return rgb
    lattice = _along_rows(_to_grid_units(coarse, height, width), width).to(rgb.device, rgb.dtype)
    out = torch.empty_like(rgb)
    planes = rgb[0].unsqueeze(1)  # (3, 1, H, W): each colour sampled on its own grid
    for top in range(0, height, STRIP_ROWS):
        rows = min(STRIP_ROWS, height - top)
        grid = _strip_grid(lattice, top, rows)
        strip = F.grid_sample(planes, grid, mode="bicubic", padding_mode="border", align_corners=True)
        out[0, :, top:top + rows] = strip[:, 0]
    return out


def coarse_coordinates(correction: LensModel, height: int, width: int, flags: int) -> torch.Tensor | None:
    """lensfun's source coordinates of every GRID_STEP-th output pixel: (6, ny, nx), channels
    (x, y) of red, green, blue, exact at rows/columns 0, step, 2·step, … (the last at or past the
    image's edge, so every pixel lies between lattice points)."""
    modifier = correction.modifier(width, height, flags=flags)
    step = GRID_STEP
    nx, ny = -(-(width - 1) // step) + 1, -(-(height - 1) // step) + 1
    rows = []
    for y in range(ny):
        row = modifier.apply_subpixel_geometry_distortion(0, y * step, (nx - 1) * step + 1, 1)
        if row is None:  # lensfun found nothing to correct for these parameters
            return None
        rows.append(row[0, ::step])  # (nx, 3, 2)
    coarse = torch.from_numpy(np.stack(rows))  # (ny, nx, 3, 2)
    return coarse.permute(2, 3, 0, 1).reshape(6, ny, nx).contiguous()


def _to_grid_units(coarse: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel coordinates → grid_sample's [-1, 1] with align_corners=True (pixel centres at ±1)."""
    scale = torch.tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)]).repeat(3).view(6, 1, 1)
    return coarse * scale - 1.0


def _linear_weights(start: int, size: int, points: int) -> torch.Tensor:
    """(size, points): linear interpolation from lattice points every GRID_STEP to the pixels
    start … start+size-1."""
    position = torch.arange(start, start + size, dtype=torch.float64) / GRID_STEP
    left = position.floor().clamp(max=points - 2).long()
    frac = (position - left).float()
    weights = torch.zeros(size, points)
    index = torch.arange(size)
    weights[index, left] = 1.0 - frac
    weights[index, left + 1] = frac
    return weights


def _along_rows(coarse: torch.Tensor, width: int) -> torch.Tensor:
    """(6, ny, nx) lattice → (6, ny, width): filled in along each lattice row (one small matmul)."""
    return coarse @ _linear_weights(0, width, coarse.shape[-1]).T


def _strip_grid(lattice_rows: torch.Tensor, top: int, rows: int) -> torch.Tensor:
    """grid_sample's (3, rows, width, 2) grid for output rows top … top+rows-1, filled in
    between the lattice rows around the strip."""
    first = top // GRID_STEP
    last = min((top + rows - 1) // GRID_STEP + 1, lattice_rows.shape[1] - 1)
    weights = _linear_weights(top, rows, lattice_rows.shape[1])[:, first:last + 1]  # (rows, k)
    filled = weights.to(lattice_rows) @ lattice_rows[:, first:last + 1]  # (6, rows, width)
    return filled.view(3, 2, rows, -1).permute(0, 2, 3, 1)
