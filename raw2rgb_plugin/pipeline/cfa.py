"""Colour filter arrays by name: the four Bayer orders and Fujifilm's 6×6 X-Trans layout.

A pattern is written as the colours of one period of the mosaic, starting at its top-left site and
read row by row: 4 letters for a Bayer order ("GRBG"), 36 for an X-Trans period. Colour indices
are LibRaw's and the DNG CFAPattern's: R = 0, G = 1, B = 2.

X-Trans is one layout in every Fujifilm X-Trans body (X-Pro1 to X-T5, X-E, X-H, X-S, X100, and
the 2/3-inch X20, X30, XQ1, XQ2): rawspeed's camera table (data/cameras.xml) lists it for all of
them, each at the phase its sensor's crop starts at (an uncompressed X-T2 or X100F RAF starts one
row before the X-T3's, at phase (5, 0); the compacts at (1, 1)). Each period has 20 G, 8 R and
8 B sites, every row and column holds all three colours, and each 3×3 block has 5 G with the R
and B roles swapped between neighbouring blocks.

Torch-free: the decoder and the DNG writer use it, the network's packing will.
"""

from __future__ import annotations

import numpy as np

#: the X-Trans period as rawspeed lists it for the X-T3, X-H2, X100V and their peers (cameras.xml)
XTRANS_ROWS = ("GGRGGB", "GGBGGR", "BRGRBG", "GGBGGR", "GGRGGB", "RBGBRG")
XTRANS = "".join(XTRANS_ROWS)

_INDEX = {"R": 0, "G": 1, "B": 2}
_LETTERS = "RGB"


def period(pattern: str) -> int:
    """The side of the pattern's square period: 2 (Bayer) or 6 (X-Trans); ValueError otherwise."""
    if len(pattern) not in (4, 36) or set(pattern) - set(_INDEX):
        raise ValueError(f"a CFA pattern is 4 or 36 letters of R, G and B, got {pattern!r}")
    return 2 if len(pattern) == 4 else 6


def cfa_indices(pattern: str) -> np.ndarray:
    """The pattern as a (P, P) int64 array of colour indices (R 0, G 1, B 2)."""
    side = period(pattern)
    # int64, not uint8: indexing a torch tensor with a uint8 array would act as a boolean mask.
    return np.array([_INDEX[c] for c in pattern], dtype=np.int64).reshape(side, side)


def pattern_from_indices(indices: np.ndarray) -> str:
    """(P, P) colour indices (LibRaw's 3, a second green, counts as G) → the pattern's letters."""
    values = np.asarray(indices, dtype=np.int64)
    if values.size and not (0 <= values.min() and values.max() <= 3):
        raise ValueError(f"colour indices must be 0..3, got {sorted(set(values.ravel().tolist()))}")
    return "".join(_LETTERS[1 if v == 3 else int(v)] for v in values.ravel())


def shifted(pattern: str, top: int, left: int) -> str:
    """The pattern of the same mosaic seen from site (top, left): what a crop starting there holds."""
    side = period(pattern)
    grid = cfa_indices(pattern)
    return pattern_from_indices(np.roll(grid, (-top % side, -left % side), axis=(0, 1)))


def xtrans_pattern(top: int = 0, left: int = 0) -> str:
    """The X-Trans layout seen from a crop that starts at (top, left) of `XTRANS`."""
    return shifted(XTRANS, top, left)


def xtrans_phase(pattern: str) -> tuple[int, int] | None:
    """(top, left) with top < 3 such that `xtrans_pattern(top, left) == pattern`, or None when
    `pattern` is no phase of the layout. The layout shifted by (3, 3) is itself, so each of its
    18 distinct phases has two offsets; this is the one in the top half."""
    for top in range(6):
        for left in range(6):
            if xtrans_pattern(top, left) == pattern:
                return top, left
    return None


def is_xtrans(pattern: str) -> bool:
    """Whether `pattern` is the X-Trans layout at some phase."""
    return len(pattern) == 36 and xtrans_phase(pattern) is not None
