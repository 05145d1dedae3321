"""What decoding an X-Trans file needs beyond the Bayer path: its 6×6 pattern and per-site black.

Two things rawpy 0.28 gets wrong or hides for X-Trans, both measured on DNGs with 6×6 CFAs:

- `raw_pattern` (and `raw_colors`, `raw_colors_visible`, built from it) asks LibRaw for the colour
  of raw site (y, x) as visible site (y − top_margin, x − left_margin), and LibRaw's X-Trans lookup
  `xtrans[(row + 6) % 6]` reads outside its table for rows or columns below −6: with a margin of
  7 or more the pattern is garbage. `raw_color(top + y, left + x)` asks for visible sites 0..5,
  which are always in range.
- LibRaw folds a 1×1 or 2×2 black-level pattern into its per-colour levels, but keeps a 6×6 one
  (a DNG's BlackLevelRepeatDim 6 6) apart, and rawpy's `black_level_per_channel` then reports
  only the smallest value. The DNG's own BlackLevel tag gives the rest.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import rawpy

from raw2rgb_plugin.io.dng_opcodes import dng_raw_ifd

log = logging.getLogger(__name__)

_BLACK_LEVEL_REPEAT_DIM = 50713
_BLACK_LEVEL = 50714
_RATIONALS = (5, 10)  # TIFF RATIONAL, SRATIONAL: tifffile gives (numerator, denominator) pairs


def visible_pattern(raw: rawpy.RawPy) -> np.ndarray:
    """LibRaw's colour indices (0 R, 1 G, 2 B, 3 second G) of the visible area's first 6×6 sites."""
    top, left = int(raw.sizes.top_margin), int(raw.sizes.left_margin)
    return np.array([[raw.raw_color(top + y, left + x) for x in range(6)] for y in range(6)], dtype=np.int64)


def black_per_site(raw: rawpy.RawPy, path: Path, colours: np.ndarray, notes: list[str]) -> np.ndarray:
    """float32 (6, 6): the black level of each site of the visible area's first period.

    LibRaw's per-colour level, plus what a DNG's 6×6 BlackLevel pattern holds above its smallest
    value (LibRaw subtracts that too, from the visible area's origin: the ActiveArea's, as DNG
    defines the pattern's).
    """
    per_colour = np.asarray(raw.black_level_per_channel, dtype=np.float64)
    black = per_colour[colours]
    pattern = _dng_black_pattern(path)
    if pattern is not None:
        rows, cols = pattern.shape
        if 6 % rows or 6 % cols:
            notes.append(f"the DNG's {rows}×{cols} black-level pattern does not fit the 6×6 CFA period: "
                         "black is taken per colour")
        else:
            black = black + np.tile(pattern - pattern.min(), (6 // rows, 6 // cols))
    return black.astype(np.float32)


def _dng_black_pattern(path: Path) -> np.ndarray | None:
    """The raw IFD's BlackLevel as a (rows, cols) repeat pattern, or None (no DNG, a single level,
    or tags that cannot be read: then LibRaw's per-colour levels are all there is)."""
    try:
        with dng_raw_ifd(path) as page:
            if page is None or _BLACK_LEVEL not in page.tags:
                return None
            dims = page.tags.get(_BLACK_LEVEL_REPEAT_DIM)
            rows, cols = (int(v) for v in dims.value) if dims is not None else (1, 1)
            tag = page.tags[_BLACK_LEVEL]
            values = np.atleast_1d(np.asarray(tag.value, dtype=np.float64))
            if int(tag.dtype) in _RATIONALS:
                values = values[0::2] / values[1::2]
    except Exception as exc:  # a third-party parser on untrusted bytes; LibRaw's levels still stand
        log.debug("cannot read the black-level pattern of %s: %s", path, exc)
        return None
    # One value per sample of each site; a CFA has one sample. Anything else is not a pattern we know.
    if rows * cols <= 1 or values.size != rows * cols or not np.all(np.isfinite(values)):
        return None
    return values.reshape(rows, cols)
