"""The `architecture` block a profile names, checked without building anything (no torch).

A profile is user data: its block is checked against these bounds before a single tensor is
allocated (`width=100000` must not reach the allocator), and `raw2rgb profiles list` checks it
without importing torch. `models/registry.py` builds the models the blocks describe.
"""

from __future__ import annotations

#: what G1 combines its output with (see models/g1.py).
RESIDUAL_BASES = ("none", "mhc-srgb", "mhc-srgb-gated", "mhc-linear-gated")
#: the input normalisation each classical base renders (the display bases tone-map linear sRGB;
#: the scene-linear one demosaics white-balanced camera RGB and leaves it linear).
RESIDUAL_BASE_INPUT = {"mhc-srgb": "linear-srgb", "mhc-srgb-gated": "linear-srgb", "mhc-linear-gated": "wb-headroom"}
#: bases whose G1 emits one gate per Bayer site beside the image (4 more output channels).
GATED_BASES = ("mhc-srgb-gated", "mhc-linear-gated")

#: inclusive bounds of every integer field of a G1 block. The seed's G1 is width 64 with 4
#: residual blocks; the bounds leave room for research variants while keeping a hostile profile
#: (width 100000, 10⁷ blocks) from asking the allocator for terabytes.
G1_BOUNDS = {"width": (1, 256), "residual_blocks": (0, 32), "in_channels": (1, 16), "out_channels": (1, 4),
             "noise_channels": (0, 4), "fine_blocks": (0, 8)}
#: a field's value when a block leaves it out (as `G1Config`'s defaults).
G1_DEFAULTS = {"width": 64, "residual_blocks": 4, "in_channels": 4, "out_channels": 3, "noise_channels": 0,
               "fine_blocks": 0}
G1_NORMS = ("batch", "none")


def check_g1_block(block: dict) -> None:
    for key, (low, high) in G1_BOUNDS.items():
        value = block.get(key, G1_DEFAULTS[key])
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"has G1 {key} {value!r}; it must be an integer from {low} to {high}")
    if block.get("norm", "batch") not in G1_NORMS:
        raise ValueError(f"names an unknown G1 norm {block.get('norm')!r}")
    if block.get("residual_base", "none") not in RESIDUAL_BASES:
        raise ValueError(f"names an unknown residual base {block.get('residual_base')!r}")


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
