"""Stuck sensor sites (hot and dead pixels): found in the levelled mosaic, replaced before G1.

A stuck site reads far from what its surroundings say, and alone. At each site s, N(s) is its 8
nearest sites of its own colour (two apart in the mosaic) and, for a green site, the 4 diagonal
greens of the other phase as well. The means of N's opposite pairs are s interpolated along
each direction ("ramps": exact on a gradient, spread apart by texture). s is stuck when:

1. **it lies outside N**: above max N (hot) or below min N (dead) by more than
   max(`K_NOISE`·σ, `K_RANGE`·spread of the ramps); σ is the noise expected at the level of its
   4 axial neighbours (`NoiseModel`: the file's, or a noisy `DEFAULT_NOISE`);
2. **its other colours do not explain it**: N's values moved by the difference of the local
   luminance (the mean of the 4 direct neighbours, other colours) between s and each of them
   still leave s beyond all their ramps, by `K_CD` times their spread and by `K_REL` of the
   excess of test 1. A real detail (a star, a glint, a thin line) lights the other colours
   around it too and moves these predictions with it; a stuck site changes no other site;
3. **it is alone**: its excess over N is over `K_ALONE` times that of each of its 8 immediate
   neighbours (any colour) over their own N. Two stuck sites side by side are a cluster, kept.

Each stuck site becomes the median of the moved N, clamped to N's range.

Measured (the commit that added this says how): Kodak24 mosaicked at ISO 100 after
an optical blur of σ 0.7 px, 0.05 % of the sites stuck (white or black): 88 % of those that
were visibly off (> 0.05) are found and 83 % come out within 0.02 of the truth (median of N
alone: error 0.030 RMS, this estimate 0.020); 6 clean sites per million changed (3 without
noise; 91 per million without the blur: a mosaic of Kodak's pixel-sharp scans has single-site
detail). The real Canon D30 frame of ../shared: 58 sites of 3.2 M, the Kodak DC50 one: 1.
Sites against the frame's edge see N on one side only (the window is mirrored about s).

Cost: a full-frame pass over bands of rows judges test 1 against N's 8 same-plane sites only
(a necessary condition: N's extremes and ramps include theirs); the three tests then run on
7×7 windows around the few candidates. It runs on the render device, on the whole frame before
any tiling, so every tile sees the same repaired mosaic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from raw2rgb_plugin.pipeline.noise import NoiseModel

#: The tests' margins (module docstring), a trade-off measured on Kodak24 (blur 0.7 px, ISO 100):
#: K_CD 2 → 4 took the clean sites changed from 45 to 7 per million and the stuck ones found
#: from 94 % to 89 %; K_ALONE 16 → 32 would take 7 → 4 per million for 87 %.
K_NOISE = 6.0
K_RANGE = 1.0
K_CD = 4.0
K_REL = 0.75
K_ALONE = 16.0
#: Corrected values carry the noise of two 4-site means as well: σ·√(1 + 2/4).
_CD_NOISE = 1.22
#: Without a noise model: darktable's median camera at ISO 1600 (raw units), so an unknown
#: frame is judged as a noisy one: fewer false finds, and stuck sites are far outside anyway.
DEFAULT_NOISE = NoiseModel.of(4.4e-4, 1.5e-6, "default")
#: Rows per band of the candidate pass: its temporaries stay in the CPU's cache.
_BAND_ROWS = 128


@dataclass(frozen=True)
class StuckSites:
    """Ask `network_input` to repair stuck sites, judged with `noise` (DEFAULT_NOISE when None)."""

    noise: NoiseModel | None = None


# Offsets (dy, dx) in the mosaic.
_SAME = ((-2, -2), (-2, 0), (-2, 2), (0, -2), (0, 2), (2, -2), (2, 0), (2, 2))
_DIAG = ((-1, -1), (-1, 1), (1, -1), (1, 1))
_DIRECT = ((-1, 0), (1, 0), (0, -1), (0, 1))
_AXIAL = ((-2, 0), (2, 0), (0, -2), (0, 2))
_RING = _DIAG + _DIRECT
#: Opposite sites in N (indices into _SAME + _DIAG): their means are the linear interpolations
#: of s along 4 directions (6 for green).
_PAIRS = ((0, 7), (1, 6), (2, 5), (3, 4), (8, 11), (9, 10))
_R = 3  # window radius: a ring site's own N and a neighbour's direct neighbours lie within it
_MIN_SIDE = 2 * _R


def repair_stuck_sites(levelled: torch.Tensor, cfa_pattern: str, noise: NoiseModel | None = None) -> int:
    """Replace the stuck sites of a levelled (H, W) mosaic in place; return how many there were."""
    h, w = levelled.shape
    if min(h, w) < _MIN_SIDE:
        return 0
    a, b = _green_terms(noise or DEFAULT_NOISE)
    ys, xs = _candidates(levelled, a, b)
    if ys.numel() == 0:
        return 0
    window = _windows(levelled, ys, xs)
    green = _green_ring(cfa_pattern, ys, xs)
    stuck, value = _judge(window, green, a, b)
    levelled[ys[stuck], xs[stuck]] = value[stuck].to(levelled.dtype)
    return int(stuck.sum())


def _green_terms(noise: NoiseModel) -> tuple[float, float]:
    """One (a, b) for every site: before white balance all sites share one gain (`noise.py`)."""
    return float(noise.shot), float(noise.read)


def _candidates(x: torch.Tensor, a: float, b: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Sites that may pass test 1, judged against their 8 same-colour sites (N without green's
    diagonals: a necessary condition): the interior in bands of rows, the 2-site border on
    windows mirrored at the edges (`_windows`)."""
    h, w = x.shape
    found = torch.zeros(h, w, dtype=torch.bool, device=x.device)
    for top in range(2, h - 2, _BAND_ROWS):
        bottom = min(top + _BAND_ROWS, h - 2)
        centre = x[top:bottom, 2:-2]
        around = {(dy, dx): x[top + dy:bottom + dy, 2 + dx:w - 2 + dx] for dy, dx in _SAME}
        found[top:bottom, 2:-2] = _outside(centre, around, a, b)
    border = torch.ones(h, w, dtype=torch.bool, device=x.device)
    border[2:-2, 2:-2] = False
    ys, xs = torch.nonzero(border, as_tuple=True)
    window = _windows(x, ys, xs, radius=2)
    side = 5
    around = {(dy, dx): window[:, (2 + dy) * side + 2 + dx] for dy, dx in _SAME}
    found[ys, xs] = _outside(window[:, 2 * side + 2], around, a, b)
    ys, xs = torch.nonzero(found, as_tuple=True)
    return ys, xs


def _outside(centre: torch.Tensor, around: dict[tuple[int, int], torch.Tensor], a: float, b: float) -> torch.Tensor:
    """Test 1 against the 8 same-colour sites `around` (offset → values)."""
    values = list(around.values())
    high, low = torch.maximum(values[0], values[1]), torch.minimum(values[0], values[1])
    for v in values[2:]:
        torch.maximum(high, v, out=high)
        torch.minimum(low, v, out=low)
    excess = torch.maximum(centre - high, low - centre)
    sums = [around[_SAME[i]] + around[_SAME[j]] for i, j in _PAIRS[:4]]  # twice the ramps
    # K_NOISE²·σ² at the mean of the 4 axial sites (the vertical and horizontal pairs), σ² = a·level + b
    margin2 = (sums[1] + sums[3]).mul_(a * K_NOISE**2 / 4).add_(b * K_NOISE**2)
    top, bottom = torch.maximum(sums[0], sums[1]), torch.minimum(sums[0], sums[1])
    for pair_sum in sums[2:]:
        torch.maximum(top, pair_sum, out=top)
        torch.minimum(bottom, pair_sum, out=bottom)
    contrast = top.sub_(bottom).mul_(K_RANGE / 2)
    return (excess > contrast) & (excess.square_() > margin2)


def _mirrored(centre: torch.Tensor, steps: torch.Tensor, size: int) -> torch.Tensor:
    """Indices `centre + steps`, those past an edge mirrored about the centre: the same colour (a
    step's parity is kept), never the centre itself, and the nearest such site there is."""
    index = centre[:, None] + steps
    outside = (index < 0) | (index >= size)
    return torch.where(outside, centre[:, None] - steps, index).clamp_(0, size - 1)


def _windows(x: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, radius: int = _R) -> torch.Tensor:
    """(n, side²) flattened windows of the mosaic centred on each site, side = 2·radius + 1."""
    h, w = x.shape
    steps = torch.arange(-radius, radius + 1, device=x.device)
    rows, cols = _mirrored(ys, steps, h), _mirrored(xs, steps, w)
    return x[rows[:, :, None], cols[:, None, :]].reshape(len(ys), -1)


def _flat(dy: int, dx: int) -> int:
    return (_R + dy) * (2 * _R + 1) + _R + dx


#: The centre and its 8 immediate neighbours, the sites whose own N the tests read.
_POSITIONS = ((0, 0),) + _RING
#: Per position: its N (8 same-colour sites, then the 4 diagonal ones that count for green only).
_N_INDEX = torch.tensor([[_flat(py + dy, px + dx) for dy, dx in _SAME + _DIAG] for py, px in _POSITIONS])
_AXIAL_INDEX = torch.tensor([[_flat(py + dy, px + dx) for dy, dx in _AXIAL] for py, px in _POSITIONS])
_CENTRE_INDEX = torch.tensor([_flat(py, px) for py, px in _POSITIONS])
#: The direct neighbours of the centre and of each site of its N (the "luminance" of test 2).
_LUMA_INDEX = torch.tensor([[_flat(qy + dy, qx + dx) for dy, dx in _DIRECT] for qy, qx in ((0, 0),) + _SAME + _DIAG])
_DIAG_COLUMNS = torch.arange(len(_SAME + _DIAG)) >= len(_SAME)


def _green_ring(cfa_pattern: str, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """(n, 9): whether each candidate's `_POSITIONS` are green sites."""
    table = torch.tensor([letter == "G" for letter in cfa_pattern], device=ys.device).view(2, 2)
    dy = torch.tensor([p[0] for p in _POSITIONS], device=ys.device)
    dx = torch.tensor([p[1] for p in _POSITIONS], device=ys.device)
    return table[(ys[:, None] + dy).remainder(2), (xs[:, None] + dx).remainder(2)]


def _range(values: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    inf = torch.tensor(float("inf"), device=values.device, dtype=values.dtype)
    return torch.where(valid, values, -inf).amax(-1), torch.where(valid, values, inf).amin(-1)


def _judge(window: torch.Tensor, green: torch.Tensor, a: float, b: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The three tests on (n, 49) windows → (stuck (n,), replacement value (n,)); tests 1 and 2
    first, on the centre alone, test 3 (its 8 neighbours' own N) on the few that pass them."""
    device = window.device
    centre = window[:, _CENTRE_INDEX[0]]
    values = window[:, _N_INDEX[0].to(device)]  # (n, 12): the centre's N
    valid = ~_DIAG_COLUMNS.to(device) | green[:, :1]
    high, low = _range(values, valid)
    sigma = window[:, _AXIAL_INDEX[0].to(device)].mean(-1).clamp(min=0).mul(a).add(b).sqrt()
    ramps_high, ramps_low = _range(*_ramps(values, valid))
    margin = torch.maximum(K_NOISE * sigma, K_RANGE * (ramps_high - ramps_low))
    luma = window[:, _LUMA_INDEX.to(device)].mean(-1)  # (n, 13): the centre's, then its N's
    moved = values - luma[:, 1:] + luma[:, :1]
    moved_high, moved_low = _range(*_ramps(moved, valid))
    moved_margin = torch.maximum(K_NOISE * _CD_NOISE * sigma, K_CD * (moved_high - moved_low))
    hot = _beyond(centre - high, centre - moved_high, margin, moved_margin)
    dead = _beyond(low - centre, moved_low - centre, margin, moved_margin)
    hot &= _alone(window, green, hot, lambda c, hi, lo: c - hi)
    dead &= _alone(window, green, dead, lambda c, hi, lo: lo - c)
    value = _median(moved, valid).clamp(min=low, max=high)
    return hot | dead, value


def _beyond(excess: torch.Tensor, moved_excess: torch.Tensor, margin: torch.Tensor,
            moved_margin: torch.Tensor) -> torch.Tensor:
    """Tests 1 and 2 on one side (hot or dead)."""
    return (excess > margin) & (moved_excess > torch.maximum(moved_margin, K_REL * excess))


def _ramps(values: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The means of N's opposite pairs (s interpolated along each direction, exact on a ramp),
    and which of them count (n, 6)."""
    first, second = (torch.tensor(side, device=values.device) for side in zip(*_PAIRS))
    return (values[:, first] + values[:, second]) / 2, valid[:, first]


def _alone(window: torch.Tensor, green: torch.Tensor, suspect: torch.Tensor,
           excess: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Test 3 for the `suspect` rows (the rest stay False): `excess(value, max N, min N)` of the
    centre beyond K_ALONE times the largest of its 8 immediate neighbours' over their own N."""
    rows = torch.nonzero(suspect, as_tuple=True)[0]
    alone = torch.zeros_like(suspect)
    if rows.numel() == 0:
        return alone
    device = window.device
    sub = window[rows]
    values = sub[:, _N_INDEX.to(device)]  # (k, 9, 12)
    high, low = _range(values, ~_DIAG_COLUMNS.to(device) | green[rows][:, :, None])
    own = excess(sub[:, _CENTRE_INDEX.to(device)], high, low)  # (k, 9)
    alone[rows] = own[:, 0] > K_ALONE * own[:, 1:].clamp(min=0).amax(-1)
    return alone


def _median(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Median of each row's valid values (8 or 12: the mean of the middle two)."""
    ordered = torch.where(valid, values, torch.tensor(float("inf"), device=values.device)).sort(-1).values
    count = valid.sum(-1, keepdim=True)
    lower = ordered.gather(-1, (count - 1).div(2, rounding_mode="floor"))
    upper = ordered.gather(-1, count.div(2, rounding_mode="floor"))
    return ((lower + upper) / 2)[:, 0]
