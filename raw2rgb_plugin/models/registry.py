"""The architectures profiles may name, registered explicitly (one line each, no import magic)."""

from __future__ import annotations

from torch import nn

from raw2rgb_plugin.models.blocks import check_architecture_block
from raw2rgb_plugin.models.g1 import G1_SPEC
from raw2rgb_plugin.models.spec import ArchitectureSpec

ARCHITECTURES: dict[str, ArchitectureSpec] = {spec.name: spec for spec in (G1_SPEC,)}
# models/blocks.py checks the same blocks without torch (a test keeps the two lists equal).


def check_block(block: object) -> ArchitectureSpec:
    """Validate a profile's `architecture` block; its spec, or ValueError with the reason.

    The checks are blocks.check_architecture_block's (torch-free, shared with `profiles list`).
    """
    check_architecture_block(block)
    assert isinstance(block, dict)
    return ARCHITECTURES[block["name"]]


def build_model(block: dict) -> nn.Module:
    """The plain-weights model an `architecture` block describes (eval mode, CPU, random weights)."""
    spec = check_block(block)
    return spec.from_block(block).eval()


def block_of(model: nn.Module) -> dict:
    """The `architecture` block that rebuilds `model` (plain weights)."""
    for spec in ARCHITECTURES.values():
        try:
            return {"name": spec.name, **spec.to_block(model)}
        except TypeError:
            continue
    raise TypeError(f"{type(model).__name__} is not a registered architecture")
