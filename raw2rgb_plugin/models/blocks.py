"""The `architecture` block a profile names, checked without building anything (no torch).

A profile is user data: its block is checked against these bounds before a single tensor is
allocated (`width=100000` must not reach the allocator), and `raw2rgb profiles list` checks it
without importing torch. `models/registry.py` builds the models the blocks describe.
"""

from __future__ import annotations

#: the packing periods a G1 reads: 2 (Bayer, 4 channels at half size; the default, absent from
#: every Bayer profile) and 6 (X-Trans, 36 channels at 1/6 size: pipeline/xtrans_packing.py).
G1_PERIODS = (2, 6)
#: the classical bases of each period: Malvar–He–Cutler or the fitted linear demosaic
#: (pipeline/bayer_lsq_demosaic.py) for Bayer, the fitted X-Trans demosaic
#: (pipeline/xtrans_demosaic.py) for X-Trans.
PERIOD_BASES = {2: ("mhc-srgb", "mhc-srgb-gated", "mhc-linear-gated", "lsq-srgb-gated", "lsq-linear-gated"),
                6: ("xtrans-srgb-gated", "xtrans-linear-gated")}
#: what G1 combines its output with (see models/g1.py).
RESIDUAL_BASES = ("none", *PERIOD_BASES[2], *PERIOD_BASES[6])
#: the input normalisation each classical base renders (the display bases tone-map linear sRGB;
#: the scene-linear ones demosaic white-balanced camera RGB and leave it linear).
RESIDUAL_BASE_INPUT = {"mhc-srgb": "linear-srgb", "mhc-srgb-gated": "linear-srgb", "mhc-linear-gated": "wb-headroom",
                       "lsq-srgb-gated": "linear-srgb", "lsq-linear-gated": "wb-headroom",
                       "xtrans-srgb-gated": "linear-srgb", "xtrans-linear-gated": "wb-headroom"}
#: bases whose G1 emits one gate per site of the period beside the image (4 or 36 more channels).
GATED_BASES = ("mhc-srgb-gated", "mhc-linear-gated", "lsq-srgb-gated", "lsq-linear-gated", "xtrans-srgb-gated",
               "xtrans-linear-gated")

#: inclusive bounds of every integer field of a G1 block. The seed's G1 is width 64 with 4
#: residual blocks; the bounds leave room for research variants while keeping a hostile profile
#: (width 100000, 10⁷ blocks) from asking the allocator for terabytes.
G1_BOUNDS = {"width": (1, 256), "residual_blocks": (0, 32), "in_channels": (1, 16), "out_channels": (1, 4),
             "noise_channels": (0, 4), "fine_blocks": (0, 8)}
#: a field's value when a block leaves it out (as `G1Config`'s defaults).
G1_DEFAULTS = {"width": 64, "residual_blocks": 4, "in_channels": 4, "out_channels": 3, "noise_channels": 0,
               "fine_blocks": 0}
G1_NORMS = ("batch", "none")


def g1_bounds(period: int) -> dict[str, tuple[int, int]]:
    """`G1_BOUNDS` for a packing period: the image and noise-map channels scale with the sites of
    the period (X-Trans: up to 144 input channels, a 36-channel noise map, one per site)."""
    sites = period * period
    return {**G1_BOUNDS, "in_channels": (1, 4 * sites), "noise_channels": (0, sites)}


def g1_defaults(period: int) -> dict[str, int]:
    """`G1_DEFAULTS` for a packing period: the input is one channel per site of the period."""
    return {**G1_DEFAULTS, "in_channels": period * period}


def check_g1_block(block: dict) -> None:
    period = block.get("period", 2)
    if not isinstance(period, int) or isinstance(period, bool) or period not in G1_PERIODS:
        raise ValueError(f"has G1 period {period!r}; it must be one of {', '.join(map(str, G1_PERIODS))}")
    defaults = g1_defaults(period)
    for key, (low, high) in g1_bounds(period).items():
        value = block.get(key, defaults[key])
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"has G1 {key} {value!r}; it must be an integer from {low} to {high}")
    if block.get("norm", "batch") not in G1_NORMS:
        raise ValueError(f"names an unknown G1 norm {block.get('norm')!r}")
    if block.get("residual_base", "none") not in RESIDUAL_BASES:
        raise ValueError(f"names an unknown residual base {block.get('residual_base')!r}")
    noise = block.get("noise_channels", 0)
    if period == 6 and noise not in (0, period * period):
        # The engine makes one noise-map channel per site of the period, so X-Trans reads all or none.
        raise ValueError(f"has an X-Trans G1 reading {noise} noise_channels; it must be 0 or {period * period}")
    base = block.get("residual_base", "none")
    if base != "none" and base not in PERIOD_BASES[period]:
        raise ValueError(f"puts the {base} residual base on a period-{period} G1")
    if base != "none" and block.get("in_channels", defaults["in_channels"]) != period * period:
        raise ValueError(f"has a {base} residual base on {block.get('in_channels')} input channels, not {period * period}")


def block_cfa(block: dict) -> str:
    """The colour filter array a (checked) G1 block renders: "xtrans" for period 6, else "bayer"
    (every block written before X-Trans leaves the period out)."""
    return "xtrans" if block.get("period", 2) == 6 else "bayer"


#: every architecture a profile may name → the check of its block.
BLOCK_CHECKS = {"g1": check_g1_block}


def check_architecture_block(block: object) -> None:
    """ValueError with the reason when `block` is no usable, bounded architecture block."""
    if not isinstance(block, dict):
        raise ValueError("has no architecture block")
    name = block.get("name")
    if not isinstance(name, str) or name not in BLOCK_CHECKS:
        raise ValueError(f"names an unknown architecture {name!r} (known: {', '.join(BLOCK_CHECKS)})")
    BLOCK_CHECKS[name](block)
