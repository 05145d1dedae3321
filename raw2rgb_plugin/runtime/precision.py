"""CPU precision per machine: fp32 or bf16, measured once, cached.

Whether bf16 pays off depends on the CPU: with native bf16 dot products (AVX512-BF16, AMX) the
convolutions run ~2× faster than fp32; without them oneDNN emulates bf16 and it can be slower
than fp32, or, on an AVX2-only CPU, ~100× slower. So at first use the runtime times both on a
small fixed input and compares bf16's output with fp32's on a fixed test frame; bf16 is chosen
only if it is clearly faster (`SPEEDUP_MARGIN`) and its PSNR against fp32 is at least
`MIN_PSNR_DB` on [0, 1]. The choice is cached per (CPU model, ISA, torch version, architecture
block) in the user cache folder (platformdirs user_cache_dir("raw2rgb"), or $RAW2RGB_CACHE_DIR),
and $RAW2RGB_CPU_PRECISION=fp32|bf16|auto overrides it.

The measuring is injected (`forward_for`, `timer`), so the decision logic is tested with fake
timings; this module builds no models itself.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from raw2rgb_plugin.errors import OutputError, Raw2RgbError
from raw2rgb_plugin.io.files import write_json
from raw2rgb_plugin.pipeline.metrics import image_psnr
from raw2rgb_plugin.runtime.settings import CPU_PRECISION_CHOICES, CPU_PRECISION_ENV

#: bf16's output against fp32's on the test frame, on [0, 1]: below this bf16 is not used.
MIN_PSNR_DB = 50.0
#: bf16 must take at most this fraction of fp32's time: a tie on a noisy machine keeps fp32.
SPEEDUP_MARGIN = 0.9
#: a bf16 warm-up this many times slower than fp32's ends the measurement (emulated bf16).
GIVE_UP_RATIO = 4.0
#: packed input of the timing runs and the test frame (C × side × side).
TIMING_SIDE = 128
TEST_FRAME_SIDE = 96
REPEATS = 3
CACHE_ENV = "RAW2RGB_CACHE_DIR"
CACHE_FILE = "cpu_precision.json"

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}

Forward = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # "fp32" or "bf16"
    source: str  # "env", "cache" or "measured"
    fp32_s: float | None = None  # best time of the timing input, seconds
    bf16_s: float | None = None  # None where bf16 was given up on after its warm-up
    psnr_db: float | None = None  # bf16 against fp32 on the test frame
    reason: str = ""

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.precision]


def decide(fp32_s: float, bf16_s: float | None, psnr_db: float | None) -> tuple[str, str]:
    """(precision, reason) from the measurements: bf16 only when clearly faster and accurate."""
    if bf16_s is None:
        return "fp32", "bf16 is far slower here (no native bf16)"
    if bf16_s > SPEEDUP_MARGIN * fp32_s:
        return "fp32", f"bf16 is not faster ({bf16_s * 1e3:.0f} ms vs fp32 {fp32_s * 1e3:.0f} ms)"
    if psnr_db is None or psnr_db < MIN_PSNR_DB:
        return "fp32", f"bf16 is faster but inaccurate ({psnr_db:.1f} dB < {MIN_PSNR_DB:g} dB)"
    return "bf16", f"bf16 {fp32_s / max(bf16_s, 1e-9):.2f}× faster, {psnr_db:.1f} dB against fp32"


def cpu_model_name() -> str:
    """The CPU's model string (/proc/cpuinfo on Linux), else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> str:
    """The bf16-relevant ISA flags: a VM's model string ('AMD EPYC') may not tell them apart."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return ",".join(sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile", "avx512f", "avx2"}))
    except OSError:
        pass
    return ""


def cache_key(architecture_block: Mapping) -> str:
    return json.dumps({"cpu": cpu_model_name(), "flags": _cpu_flags(), "isa": torch.backends.cpu.get_cpu_capability(),
                       "torch": torch.__version__, "architecture": dict(architecture_block)}, sort_keys=True)


def cache_folder() -> Path:
    """$RAW2RGB_CACHE_DIR, else the user cache folder: where per-machine measurements and
    converted models are kept."""
    folder = os.environ.get(CACHE_ENV)
    if not folder:
        import platformdirs

        folder = platformdirs.user_cache_dir("raw2rgb", appauthor=False)
    return Path(folder)


def cache_path() -> Path:
    return cache_folder() / CACHE_FILE


def read_cache(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_cache(path: Path, key: str, choice: PrecisionChoice) -> None:
    """Add `choice` under `key`, atomically; a cache that cannot be written is only a lost shortcut."""
    data = read_cache(path)
    data[key] = {k: v for k, v in asdict(choice).items() if k != "source"}
    try:
        write_json(path, data, sort_keys=True)
    except (OSError, OutputError):
        pass


def reference_frame(channels: int, side: int, seed: int = 0) -> torch.Tensor:
    """A fixed packed frame in [0, 1]: smooth shading, hard edges, fine texture and mild noise."""
    generator = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, side), indexing="ij")
    planes = []
    for c in range(channels):
        smooth = 0.45 + 0.3 * torch.sin(6.0 * x + 2.0 * c) * torch.cos(4.0 * y - c)
        edges = 0.2 * ((x + 0.3 * y) > 0.5).float() - 0.1 * ((y - 0.2 * x) > 0.6).float()
        texture = 0.05 * torch.sin(60.0 * x * (1 + y))
        planes.append(smooth + edges + texture)
    frame = torch.stack(planes)[None] + 0.01 * torch.randn(1, channels, side, side, generator=generator)
    return frame.clamp(0.0, 1.0)


def measure(
    forward_for: Callable[[torch.dtype], Forward],
    channels: int,
    *,
    timer: Callable[[], float] = time.perf_counter,
    repeats: int = REPEATS,
    timing_side: int = TIMING_SIDE,
    test_side: int = TEST_FRAME_SIDE,
) -> tuple[float, float | None, float | None]:
    """(fp32 seconds, bf16 seconds or None, bf16 PSNR against fp32) on this CPU.

    `forward_for(dtype)` returns the model's forward in that precision (float32 in and out).
    Runs alternate between the two so load on a shared machine hits both alike; the best time
    of each counts.
    """
    timing_input = reference_frame(channels, timing_side, seed=1)
    frame = reference_frame(channels, test_side)
    forwards = {name: forward_for(dtype) for name, dtype in DTYPES.items()}

    def timed(name: str) -> float:
        start = timer()
        forwards[name](timing_input)
        return timer() - start

    with torch.inference_mode():
        warm = {name: timed(name) for name in DTYPES}  # first runs: allocation, kernel selection
        if warm["bf16"] > GIVE_UP_RATIO * warm["fp32"]:
            return min(warm["fp32"], timed("fp32")), None, None
        best = dict(warm)
        for _ in range(repeats):
            for name in DTYPES:
                best[name] = min(best[name], timed(name))
        reference = forwards["fp32"](frame)
        quality = image_psnr(forwards["bf16"](frame).float().clamp(0, 1), reference.float().clamp(0, 1))
    return best["fp32"], best["bf16"], quality


def precision_override(env: Mapping[str, str] | None = None) -> str:
    """$RAW2RGB_CPU_PRECISION: 'auto' (the default), 'fp32' or 'bf16'."""
    value = (env if env is not None else os.environ).get(CPU_PRECISION_ENV, "auto").strip().lower() or "auto"
    if value not in CPU_PRECISION_CHOICES:
        raise Raw2RgbError(f"{CPU_PRECISION_ENV}={value!r} is not a precision", f"use one of {', '.join(CPU_PRECISION_CHOICES)}")
    return value


def choose_cpu_precision(
    forward_for: Callable[[torch.dtype], Forward],
    architecture_block: Mapping,
    channels: int,
    *,
    env: Mapping[str, str] | None = None,
    cache: Path | None = None,
    timer: Callable[[], float] = time.perf_counter,
) -> PrecisionChoice:
    """fp32 or bf16 for this model on this CPU: the override, else the cached, else a measurement."""
    override = precision_override(env)
    if override != "auto":
        return PrecisionChoice(override, "env", reason=f"{CPU_PRECISION_ENV}={override}")
    path = cache if cache is not None else cache_path()
    key = cache_key(architecture_block)
    cached = read_cache(path).get(key)
    if isinstance(cached, dict) and cached.get("precision") in DTYPES:
        fields = {k: cached.get(k) for k in ("fp32_s", "bf16_s", "psnr_db")}
        return PrecisionChoice(cached["precision"], "cache", reason=str(cached.get("reason", "")), **fields)
    fp32_s, bf16_s, quality = measure(forward_for, channels, timer=timer)
    precision, reason = decide(fp32_s, bf16_s, quality)
    choice = PrecisionChoice(precision, "measured", fp32_s, bf16_s, quality, reason)
    write_cache(path, key, choice)
    return choice


#: a training step's input side (sensor px) for timing: small, but big enough for oneDNN's bf16 kernels.
TRAINING_TIMING_SIDE = 96


def choose_cpu_training_precision(
    step_for: Callable[[torch.dtype | None], Callable[[], None]],
    architecture_block: Mapping,
    *,
    env: Mapping[str, str] | None = None,
    cache: Path | None = None,
    timer: Callable[[], float] = time.perf_counter,
    repeats: int = REPEATS,
) -> PrecisionChoice:
    """fp32 or bf16 autocast for training this model on this CPU: the override, the cache, or a
    measurement of forward + backward steps (`step_for(None)` fp32, `step_for(bfloat16)` autocast).

    Speed decides, as for inference; whether bf16 autocast keeps convergence was measured once
    for this project's networks (README "CPU precision"), not per machine: a per-machine check
    would cost a training run.
    """
    override = precision_override(env)
    if override != "auto":
        return PrecisionChoice(override, "env", reason=f"{CPU_PRECISION_ENV}={override}")
    path = cache if cache is not None else cache_path()
    key = "train:" + cache_key(architecture_block)
    cached = read_cache(path).get(key)
    if isinstance(cached, dict) and cached.get("precision") in DTYPES:
        return PrecisionChoice(cached["precision"], "cache", cached.get("fp32_s"), cached.get("bf16_s"),
                               reason=str(cached.get("reason", "")))
    steps = {"fp32": step_for(None), "bf16": step_for(torch.bfloat16)}

    def timed(name: str) -> float:
        start = timer()
        steps[name]()
        return timer() - start

    best = {name: timed(name) for name in steps}  # warm-up: allocation, kernel selection
    if best["bf16"] <= GIVE_UP_RATIO * best["fp32"]:
        for _ in range(repeats):
            for name in steps:  # alternating, so load on a shared machine hits both alike
                best[name] = min(best[name], timed(name))
    fast_enough = best["bf16"] <= SPEEDUP_MARGIN * best["fp32"]
    precision = "bf16" if fast_enough else "fp32"
    reason = (f"bf16 autocast {best['fp32'] / max(best['bf16'], 1e-9):.2f}× faster per step" if fast_enough
              else f"bf16 autocast is not faster ({best['bf16'] * 1e3:.0f} ms vs fp32 {best['fp32'] * 1e3:.0f} ms per step)")
    choice = PrecisionChoice(precision, "measured", best["fp32"], best["bf16"], None, reason)
    write_cache(path, key, choice)
    return choice
