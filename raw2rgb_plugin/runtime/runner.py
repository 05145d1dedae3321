"""A `Runner` turns a packed, normalised input into RGB on its device.

The engine only sees this interface, so other runtimes (compiled graphs, ONNX Runtime, several
GPUs) plug in here without touching scheduling or writing. `TorchRunner` is eager PyTorch: the
profile's model with its exact inference rewrites (e.g. BatchNorm folded), resident on the
device in the chosen precision, run on the whole frame or in blended tiles when the frame would
not fit in memory.
"""

from __future__ import annotations

import copy
import os
from typing import Protocol

import torch
from torch import nn

from raw2rgb_plugin.models.spec import ArchitectureSpec
from raw2rgb_plugin.runtime.tiling import DEFAULT_OVERLAP, run_tiled

#: fraction of free memory whole-frame inference may plan to use before we tile instead.
_MEMORY_BUDGET = 0.5
#: packed pixels per tile side when tiling: keeps a base-width tile near 1 GB of activations on a
#: CPU; a GPU takes larger tiles (fewer launches) within its own free memory.
_CPU_TILE = 512
_GPU_TILE = 1024


class Runner(Protocol):
    device: torch.device
    dtype: torch.dtype

    def run(self, packed: torch.Tensor) -> torch.Tensor:
        """(1, C, h, w) float input on `device` → (1, 3, 2h, 2w) float32 RGB in [0, 1] on `device`."""
        ...


def available_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def prepare_for_inference(model: nn.Module, spec: ArchitectureSpec, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """A device-resident copy with the architecture's inference rewrites, channels_last, in `dtype`."""
    model = spec.prepare_for_inference(copy.deepcopy(model).eval())
    # Module.to takes memory_format at runtime; torch's stubs leave it out.
    model = model.to(device=device, dtype=dtype, memory_format=torch.channels_last)  # type: ignore[call-overload]
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # tiles have a fixed shape; frames repeat sizes
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class TorchRunner:
    """Eager PyTorch on one device, whole frame or tiled (see `runtime/tiling.py`)."""

    def __init__(
        self,
        model: nn.Module,
        spec: ArchitectureSpec,
        *,
        device: torch.device,
        dtype: torch.dtype,
        tile: int | None = None,
        overlap: int = DEFAULT_OVERLAP,
    ):
        self.spec = spec
        self.device = device
        self.dtype = dtype
        self.tile = tile  # None = choose per frame from free memory; 0 = whole frame
        self.overlap = overlap
        self.source_model = model  # the plain model, for memory estimates
        self.model = prepare_for_inference(model, spec, device, dtype)

    def tile_for(self, packed_pixels: int) -> int:
        if self.tile is not None:
            return self.tile
        needed = self.spec.activation_bytes(self.source_model, packed_pixels, self.dtype)
        if needed <= _MEMORY_BUDGET * available_memory_bytes(self.device):
            return 0
        return _GPU_TILE if self.device.type == "cuda" else _CPU_TILE

    def _forward(self, packed: torch.Tensor) -> torch.Tensor:
        return self.model(packed.to(self.dtype).contiguous(memory_format=torch.channels_last))

    @torch.inference_mode()
    def run(self, packed: torch.Tensor) -> torch.Tensor:
        tile = self.tile_for(packed.shape[-2] * packed.shape[-1])
        rgb = run_tiled(self._forward, packed, stride=self.spec.stride, tile=tile, overlap=self.overlap)
        return rgb.float()
