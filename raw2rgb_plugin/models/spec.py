"""What the rest of raw2rgb needs to know about an architecture, without knowing its layers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ArchitectureSpec:
    """One architecture a profile's `architecture` block can name.

    - `stride`: packed inputs must be a multiple of it (the encoder's total downsampling).
    - `check_block`: raises ValueError with a one-line reason for an unusable or unbounded block
      (a profile is user data: `width=100000` must not reach the allocator).
    - `from_block` / `to_block`: the plain-weights inference model ↔ its JSON block.
    - `activation_bytes`: peak activation memory of a forward pass on `packed_pixels` in `dtype`,
      which the runtime uses to decide whether a frame fits or must be tiled.
    - `prepare_for_inference`: exact rewrites for eval (e.g. BatchNorm folded into convolutions).
    - `optimize` (optional): a faster inference module computing the same function to float
      rounding (re-arranged convolutions, fused padding), built from the plain model without
      changing it; its `.to(dtype)` sets the compute precision and it takes and returns float32.
      `optimized_activation_bytes` is its peak memory, as `activation_bytes` is the plain model's.
    - `output_scale`: full-resolution output pixels per packed pixel along each axis for a model
      (G1: its packing period, 2 for Bayer, 6 for X-Trans); tiling places tiles with it.
    """

    name: str
    stride: int
    check_block: Callable[[dict], None]
    from_block: Callable[[dict], nn.Module]
    to_block: Callable[[nn.Module], dict]
    activation_bytes: Callable[[nn.Module, int, torch.dtype], int]
    prepare_for_inference: Callable[[nn.Module], nn.Module]
    optimize: Callable[[nn.Module], nn.Module] | None = None
    optimized_activation_bytes: Callable[[nn.Module, int, torch.dtype], int] | None = None
    output_scale: Callable[[nn.Module], int] = lambda model: 2
