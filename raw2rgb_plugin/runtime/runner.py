"""A `Runner` turns a packed, normalised input into RGB on its device.

The engine only sees this interface, so other runtimes (compiled graphs, ONNX Runtime, several
GPUs) plug in here without touching scheduling or writing. `TorchRunner` is PyTorch: the
profile's model resident on the device in the chosen precision, run on the whole frame or in
blended tiles when the frame would not fit in memory. Two forms:

- **eager** (`optimize=False`): the plain model with BatchNorm folded, channels_last: the
  reference the golden outputs were made with;
- **optimised** (`optimize=True`): the architecture's inference rewrites (`spec.optimize`,
  e.g. `models/g1_inference.py`), equal to eager to float rounding, ~1.6× faster on a CPU; with
  bf16 convolutions where the CPU does them natively (`runtime/precision.py`).

`build_runner` is what the converter calls: optimised, precision per machine on a CPU, and tiles
sized so the activations stay under a memory budget (`settings.CPU_MEMORY_BUDGET_MIB`).

Memory churn: glibc serves every tensor above 32 MiB with a fresh mmap and unmaps it on free,
so each large activation is page-faulted in again: with the eager model half of a 12 MP frame's
CPU time was in the kernel. The optimised model allocates fewer and smaller tensors, tiles cap
their size, and `heap_reuse` (runners from `build_runner`, CPU, glibc) keeps freed memory in
the heap while a frame runs, then hands it back. $RAW2RGB_MALLOC_TUNING=0, or any MALLOC_*
variable of your own, leaves glibc alone. (Measured and not used: process-wide
`MALLOC_MMAP_MAX_=0` is as fast but costs ~0.4 GiB of fragmentation in a whole `convert`;
`THP_MEM_ALLOC_ENABLE=1` cut the page faults 40× but not the kernel time.)
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import os
import platform
import sys
from collections.abc import Iterator
from typing import Protocol

import torch
from torch import nn

from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.models.spec import ArchitectureSpec
from raw2rgb_plugin.runtime.device import inference_dtype
from raw2rgb_plugin.runtime.precision import choose_cpu_precision
from raw2rgb_plugin.runtime.settings import (
    CPU_MEMORY_BUDGET_ENV,
    CPU_MEMORY_BUDGET_MIB,
    MALLOC_TUNING_ENV,
    RUNTIME_CHOICES,
    RUNTIME_ENV,
)
from raw2rgb_plugin.runtime.tiling import DEFAULT_OVERLAP, plan_tiles, run_tiled

#: fraction of free memory whole-frame inference may plan to use before we tile instead.
_MEMORY_BUDGET = 0.5
#: the eager runner's fixed tiles (packed pixels per side) when it has to tile without a budget.
_CPU_TILE = 512
_GPU_TILE = 1024


class Runner(Protocol):
    device: torch.device
    dtype: torch.dtype

    def run(self, packed: torch.Tensor) -> torch.Tensor:
        """(1, C, h, w) float input on `device` → (1, 3, s·h, s·w) float32 RGB in [0, 1] on `device`,
        s the architecture's output scale (the packing period: 2 Bayer, 6 X-Trans)."""
        ...


def available_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def prepare_for_inference(model: nn.Module, spec: ArchitectureSpec, device: torch.device, dtype: torch.dtype,
                          *, optimize: bool = False) -> nn.Module:
    """A device-resident copy with the architecture's inference rewrites, channels_last, in `dtype`.

    `optimize` uses `spec.optimize` (built from `model` without changing it) where the
    architecture has one; otherwise the plain model with `spec.prepare_for_inference` on a copy.
    """
    if optimize and spec.optimize is not None:
        model = spec.optimize(model)
    else:
        model = spec.prepare_for_inference(copy.deepcopy(model).eval())
    # Module.to takes memory_format at runtime; torch's stubs leave it out.
    model = model.to(device=device, dtype=dtype, memory_format=torch.channels_last)  # type: ignore[call-overload]
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # tiles have a fixed shape; frames repeat sizes
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@contextlib.contextmanager
def flush_denormals(device: torch.device) -> Iterator[None]:
    """Denormal floats flushed to zero on this thread while a CPU runner works (FTZ/DAZ).

    A guard: G1's activations on real frames hold no denormals (none in any layer's output on the
    example and test files), so it changes neither the output nor the time there, but a denormal
    costs ~100× a normal float on x86 if a pathological input ever made some.
    """
    if device.type != "cpu":
        yield
        return
    enabled = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if enabled:
            torch.set_flush_denormal(False)


class NamedForward(Protocol):
    """A tile's forward computed by another runtime, with the name logs and benchmarks show."""

    name: str

    def __call__(self, packed: torch.Tensor) -> torch.Tensor: ...


class TorchRunner:
    """PyTorch on one device, whole frame or tiled (see `runtime/tiling.py`)."""

    def __init__(
        self,
        model: nn.Module,
        spec: ArchitectureSpec,
        *,
        device: torch.device,
        dtype: torch.dtype,
        tile: int | None = None,
        overlap: int = DEFAULT_OVERLAP,
        optimize: bool = False,
        memory_budget: int | None = None,
        reuse_heap: bool = False,
    ):
        self.spec = spec
        self.device = device
        self.dtype = dtype
        self.tile = tile  # None = choose per frame from memory; 0 = whole frame
        self.overlap = overlap
        #: bytes the activations may take (tiles are sized to stay under it); None = half the free
        #: memory, with fixed-size tiles beyond it (the eager runner's original policy).
        self.memory_budget = memory_budget
        self.optimized = optimize and spec.optimize is not None
        #: keep freed activations in the heap while a frame runs (`heap_reuse`; CPU, glibc)
        self.reuse_heap = reuse_heap
        self.source_model = model  # the plain model, for memory estimates
        #: output pixels per packed pixel along each axis (G1: 2 Bayer, 6 X-Trans)
        self.scale = spec.output_scale(model)
        self.model = prepare_for_inference(model, spec, device, dtype, optimize=self.optimized)
        self._external: NamedForward | None = None

    def use_forward(self, forward: NamedForward) -> None:
        """Compute every tile with `forward` (another runtime, e.g. `onnx_runner.OnnxForward`)
        instead of `self.model`; tiling and the memory budget stay as they are."""
        self._external = forward

    @property
    def name(self) -> str:
        """What runs, for logs and benchmarks: e.g. 'optimised bf16', 'eager float32'."""
        if self._external is not None:
            return self._external.name
        return f"{'optimised' if self.optimized else 'eager'} {str(self.dtype).removeprefix('torch.')}"

    def activation_bytes(self, packed_pixels: int) -> int:
        estimate = self.spec.optimized_activation_bytes if self.optimized else None
        return (estimate or self.spec.activation_bytes)(self.source_model, packed_pixels, self.dtype)

    def tile_for(self, height: int, width: int) -> int | tuple[int, int]:
        """The tile `run` uses for a packed height×width frame: 0 (whole), a side, or (tile_h, tile_w)."""
        if self.tile is not None:
            return self.tile
        stride = self.spec.stride
        padded_h, padded_w = -(-height // stride) * stride, -(-width // stride) * stride
        if self.memory_budget is None:
            if self.activation_bytes(padded_h * padded_w) <= _MEMORY_BUDGET * available_memory_bytes(self.device):
                return 0
            return _GPU_TILE if self.device.type == "cuda" else _CPU_TILE
        per_million = self.activation_bytes(1_000_000)
        max_pixels = max(1, int(self.memory_budget * 1_000_000 // max(1, per_million)))
        tile_h, tile_w = plan_tiles(padded_h, padded_w, max_pixels, overlap=self.overlap, stride=stride)
        return 0 if tile_h == 0 else (tile_h, tile_w)

    def _forward(self, packed: torch.Tensor) -> torch.Tensor:
        if self._external is not None:
            return self._external(packed)
        if self.optimized:  # takes float32 and casts its trunk itself (its head stays float32)
            return self.model(packed)
        return self.model(packed.to(self.dtype).contiguous(memory_format=torch.channels_last))

    @torch.inference_mode()
    def run(self, packed: torch.Tensor) -> torch.Tensor:
        tile = self.tile_for(packed.shape[-2], packed.shape[-1])
        with flush_denormals(self.device), heap_reuse(self.device, self.reuse_heap):
            rgb = run_tiled(self._forward, packed, stride=self.spec.stride, tile=tile, overlap=self.overlap,
                            scale=self.scale)
        return rgb.float()


def _openvino_runner(model: nn.Module, spec: ArchitectureSpec, dtype: torch.dtype, *, tile: int | None,
                     overlap: int) -> TorchRunner:
    """A runner whose tiles OpenVINO computes in `dtype`, sized by the CPU memory budget."""
    from raw2rgb_plugin.runtime.openvino_runner import OpenVinoForward  # an optional extra, imported on demand

    runner = TorchRunner(model, spec, device=torch.device("cpu"), dtype=torch.float32, tile=tile, overlap=overlap,
                         memory_budget=cpu_memory_budget())
    runner.use_forward(OpenVinoForward(runner.model, input_channels(model), dtype))
    runner.dtype = dtype  # what the tiles are computed in (and what `convert` reports)
    return runner


def input_channels(model: nn.Module) -> int:
    """Channels of the packed input `model` reads (4, plus a noise map's where it has one)."""
    config = getattr(model, "config", None)
    return int(getattr(config, "in_channels", 4)) + int(getattr(config, "noise_channels", 0))


def _forward_for(model: nn.Module, spec: ArchitectureSpec, optimize: bool):
    """dtype → a CPU forward of `model` in it, float32 in and out (what the precision choice times)."""
    cpu = torch.device("cpu")

    def forward_for(dtype: torch.dtype):
        runner = TorchRunner(model, spec, device=cpu, dtype=dtype, tile=0, optimize=optimize)
        return lambda packed: runner.run(packed)

    return forward_for


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters
_GLIBC_MMAP_MAX, _GLIBC_TRIM_THRESHOLD = 65536, 128 * 1024  # glibc's defaults
_KEEP_TOP = 256 << 20
_libc: ctypes.CDLL | bool | None = None  # None: not looked up yet; False: not glibc or declined


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        _libc = False
        own = any(name.startswith("MALLOC_") for name in os.environ)
        if (os.environ.get(MALLOC_TUNING_ENV, "1") != "0" and not own and sys.platform.startswith("linux")
                and platform.libc_ver()[0] == "glibc"):
            try:
                _libc = ctypes.CDLL("libc.so.6")
            except OSError:
                pass
    return _libc if isinstance(_libc, ctypes.CDLL) else None


@contextlib.contextmanager
def heap_reuse(device: torch.device, enabled: bool = True) -> Iterator[bool]:
    """While a CPU frame runs, freed tensors stay in glibc's heap for the next layer and tile.

    glibc gives every block above its mmap threshold (at most 32 MiB) its own mmap and unmaps it
    on free, so each large activation is page-faulted in again, layer after layer. Inside this
    block glibc does not mmap and keeps up to 256 MiB free at the top of the heap; on leaving it,
    the defaults come back and `malloc_trim` returns the free memory, so what follows the network
    (and the next frame's decode) does not inherit a fragmented heap. Yields whether it applied:
    glibc only, not with $RAW2RGB_MALLOC_TUNING=0 or the user's own MALLOC_* settings.
    """
    libc = _glibc() if enabled and device.type == "cpu" else None
    if libc is None:
        yield False
        return
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_TOP)
    try:
        yield True
    finally:
        libc.mallopt(_M_MMAP_MAX, _GLIBC_MMAP_MAX)
        libc.mallopt(_M_TRIM_THRESHOLD, _GLIBC_TRIM_THRESHOLD)
        libc.malloc_trim(0)


def runtime_choice(name: str | None = None) -> str:
    """`name`, else $RAW2RGB_RUNTIME, else 'auto'; checked against `settings.RUNTIME_CHOICES`."""
    value = (name or os.environ.get(RUNTIME_ENV) or "auto").strip().lower()
    if value not in RUNTIME_CHOICES:
        raise Raw2RgbError(f"unknown runtime {value!r} (from {'the caller' if name else RUNTIME_ENV})",
                           f"use one of {', '.join(RUNTIME_CHOICES)}")
    return value


def cpu_memory_budget() -> int:
    """Bytes a CPU frame's activations may take: $RAW2RGB_CPU_MEMORY_MIB or the default, and at
    most half of the memory free now."""
    raw = os.environ.get(CPU_MEMORY_BUDGET_ENV)
    try:
        mib = float(raw) if raw else float(CPU_MEMORY_BUDGET_MIB)
    except ValueError:
        raise Raw2RgbError(f"{CPU_MEMORY_BUDGET_ENV}={raw!r} is not a number", "give MiB, e.g. 1024") from None
    if mib <= 0:
        raise Raw2RgbError(f"{CPU_MEMORY_BUDGET_ENV}={raw!r} must be positive", "give MiB, e.g. 1024")
    return int(min(mib * (1 << 20), _MEMORY_BUDGET * available_memory_bytes(torch.device("cpu"))))


def build_runner(
    model: nn.Module,
    spec: ArchitectureSpec,
    *,
    device: torch.device,
    dtype: torch.dtype | None = None,
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    runtime: str | None = None,
    architecture_block: dict | None = None,
) -> TorchRunner:
    """The runner the converter uses for `model` on `device`.

    - `runtime` 'onnx' on a CPU: ONNX Runtime (`runtime/onnx_runner.py`, fp32; the optional extra).
    - `runtime` 'openvino' on a CPU: OpenVINO in the CPU's precision (`runtime/openvino_runner.py`,
      the optional extra). 'auto' does not take it (see that module's docstring).
    - `runtime` (else $RAW2RGB_RUNTIME): 'auto'/'optimized' = the architecture's inference
      rewrites, tiles by memory budget, heap reuse; 'eager' = the runner as it was before (the
      plain model, its tile policy: in fp32 bit for bit the golden outputs).
    - `dtype` None: on a CPU, fp32 or bf16 as measured on this machine (`runtime/precision.py`,
      $RAW2RGB_CPU_PRECISION overrides, cached per CPU, torch and `architecture_block`); on a GPU,
      `device.inference_dtype`.
    - Tiles (optimised): on a CPU sized from the memory budget (`cpu_memory_budget`); on a GPU
      from half its free memory.
    """
    choice = runtime_choice(runtime)
    if choice == "onnx" and device.type == "cpu":
        from raw2rgb_plugin.runtime.onnx_runner import OnnxForward  # an optional extra, imported on demand

        runner = TorchRunner(model, spec, device=device, dtype=torch.float32, tile=tile, overlap=overlap,
                             memory_budget=cpu_memory_budget())
        runner.use_forward(OnnxForward(runner.model, input_channels(model)))
        return runner
    optimize = choice != "eager"
    block = architecture_block if architecture_block is not None else {"name": spec.name, **spec.to_block(model)}
    if dtype is None:
        if device.type == "cpu":
            dtype = choose_cpu_precision(_forward_for(model, spec, optimize), block, input_channels(model)).dtype
        else:
            dtype = inference_dtype(device)
    if device.type == "cpu" and choice == "openvino":
        return _openvino_runner(model, spec, dtype, tile=tile, overlap=overlap)
    if not optimize:  # the runner as it was: whole frame within half the free memory, fixed tiles beyond
        return TorchRunner(model, spec, device=device, dtype=dtype, tile=tile, overlap=overlap)
    budget = cpu_memory_budget() if device.type == "cpu" else int(_MEMORY_BUDGET * available_memory_bytes(device))
    return TorchRunner(model, spec, device=device, dtype=dtype, tile=tile, overlap=overlap, optimize=True,
                       memory_budget=budget, reuse_heap=True)
