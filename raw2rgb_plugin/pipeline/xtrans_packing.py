"""X-Trans mosaic ↔ the packed layout an X-Trans G1 reads: the 36 sites of a 6×6 period as 36
channels at 1/6 resolution, channel 6·row + column of the site in the canonical period.

The canonical phase is `cfa.XTRANS` at (0, 0): a frame whose pattern is `xtrans_pattern(top,
left)` gets `top` rows and `left` columns in front (`cfa.xtrans_phase`: top < 3, left < 6), and
the bottom and right are filled up to whole periods, so the network always sees the same colour in
the same channel and no sensor pixel is lost.

**Period-shift padding.** Reflect padding keeps a Bayer site's colour because a period-2 pattern
is symmetric about every site; the X-Trans period is symmetric only about rows and columns 2 and 5
of its phase, so a reflected row is another colour wherever the frame starts elsewhere. Here every
added site takes the value of the site one whole period (6) further inside the frame, which has
its colour by definition of a period, at any phase and any size ≥ 6. On the packed grid that is
replicate padding of the partial period (an added site holds what the same site of the next
period holds), the padding the X-Trans classical demosaic (`pipeline/xtrans_demosaic.py`) uses at
its borders too. The nearest same-colour site would be closer for some sites (a green is often 1
away) but needs a per-site table; a period shift is one index array per axis.

`PhasePadding` (pipeline/packing.py) remembers what was added, so the network's full-resolution
output crops back to the visible frame pixel for pixel, as on the Bayer path.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from raw2rgb_plugin.pipeline.cfa import XTRANS, cfa_indices, xtrans_phase
from raw2rgb_plugin.pipeline.packing import PhasePadding

#: the side of the X-Trans period: pixel_unshuffle/pixel_shuffle factor of the packed layout.
XTRANS_PERIOD = 6
#: packed channels of one X-Trans period.
XTRANS_SITES = XTRANS_PERIOD * XTRANS_PERIOD


def xtrans_padding(pattern: str, height: int, width: int) -> PhasePadding:
    """Sites to add on each side of a height×width frame of `pattern` (36 letters, the frame's
    phase) to reach the canonical phase and whole periods. ValueError when `pattern` is no
    X-Trans phase or the frame is smaller than one period."""
    phase = xtrans_phase(pattern)
    if phase is None:
        raise ValueError(f"{pattern!r} is not the X-Trans layout at any phase")
    if height < XTRANS_PERIOD or width < XTRANS_PERIOD:
        raise ValueError(f"an X-Trans frame needs at least {XTRANS_PERIOD}×{XTRANS_PERIOD} sites, got {height}×{width}")
    top, left = phase
    return PhasePadding(top=top, left=left, bottom=-(height + top) % XTRANS_PERIOD,
                        right=-(width + left) % XTRANS_PERIOD)


def _period_shift_index(length: int, before: int, after: int, device) -> torch.Tensor:
    """Source index of every position of an axis padded by `before`/`after`: inside positions are
    themselves, an added one the nearest position a whole number of periods inside."""
    index = torch.arange(-before, length + after, device=device)
    low = index < 0
    index[low] += XTRANS_PERIOD * ((-index[low] + XTRANS_PERIOD - 1) // XTRANS_PERIOD)
    high = index >= length
    index[high] -= XTRANS_PERIOD * ((index[high] - length) // XTRANS_PERIOD + 1)
    return index


def pad_xtrans(mosaic: torch.Tensor, padding: PhasePadding) -> torch.Tensor:
    """Period-shift pad a (…, H, W) mosaic: every added site holds the site 6 further inside."""
    if padding == PhasePadding(0, 0, 0, 0):
        return mosaic
    h, w = mosaic.shape[-2:]
    if h < XTRANS_PERIOD or w < XTRANS_PERIOD:
        raise ValueError(f"period-shift padding needs at least {XTRANS_PERIOD}×{XTRANS_PERIOD} sites, got {h}×{w}")
    rows = _period_shift_index(h, padding.top, padding.bottom, mosaic.device)
    cols = _period_shift_index(w, padding.left, padding.right, mosaic.device)
    return mosaic.index_select(-2, rows).index_select(-1, cols)


def pack_xtrans(mosaic: torch.Tensor) -> torch.Tensor:
    """(…, 6h, 6w) canonical-phase mosaic → (…, 36, h, w), channel 6·row + column of the site."""
    lead = mosaic.shape[:-2]
    packed = F.pixel_unshuffle(mosaic.reshape(-1, 1, *mosaic.shape[-2:]), XTRANS_PERIOD)
    return packed.reshape(*lead, XTRANS_SITES, *packed.shape[-2:])


def unpack_xtrans(packed: torch.Tensor) -> torch.Tensor:
    """(…, 36, h, w) → (…, 6h, 6w) canonical-phase mosaic; the inverse of `pack_xtrans`."""
    lead = packed.shape[:-3]
    mosaic = F.pixel_shuffle(packed.reshape(-1, XTRANS_SITES, *packed.shape[-2:]), XTRANS_PERIOD)
    return mosaic.reshape(*lead, *mosaic.shape[-2:])


def pack_xtrans_frame(mosaic: torch.Tensor, pattern: str) -> tuple[torch.Tensor, PhasePadding]:
    """A (…, H, W) mosaic of `pattern` (its visible phase) → (…, 36, ⌈·/6⌉, ⌈·/6⌉) canonical packed
    input and the padding whose `crop` takes the network's (…, 3, 6h, 6w) output back to H×W."""
    padding = xtrans_padding(pattern, *mosaic.shape[-2:])
    return pack_xtrans(pad_xtrans(mosaic, padding)), padding


def xtrans_samples(rgb: torch.Tensor) -> torch.Tensor:
    """(…, 3, 6h, 6w) RGB → (…, 36, h, w): what a canonical-phase X-Trans sensor samples of it, packed
    (`packing.rggb_samples`' analogue: each site keeps its own colour of `cfa.XTRANS`)."""
    colours = torch.from_numpy(cfa_indices(XTRANS).ravel()).to(rgb.device)
    every = pack_xtrans(rgb)  # (…, 3, 36, h, w): every colour at every site
    return every[..., colours, torch.arange(XTRANS_SITES, device=rgb.device), :, :]
