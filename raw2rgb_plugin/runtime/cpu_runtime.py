"""Which CPU runtime `auto` uses per machine: PyTorch, or OpenVINO where it measured faster.

Considered only when the optional openvino package is installed. At first use on a machine
both run the same prepared model, in the precision already chosen for it (`precision.py`), on a
fixed packed input; OpenVINO is taken only when it is clearly faster (`SPEEDUP_MARGIN` of
PyTorch's time) and its output is within `MIN_PSNR_DB` of PyTorch's. The result is cached beside
the precision choice (same file, its own key); $RAW2RGB_RUNTIME names a runtime outright.
Like `precision.py` this module builds no models: the forwards and the timer are injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from raw2rgb_plugin.errors import OutputError
from raw2rgb_plugin.io.files import write_json
from raw2rgb_plugin.pipeline.metrics import image_psnr
from raw2rgb_plugin.runtime.precision import (
    MIN_PSNR_DB,
    REPEATS,
    SPEEDUP_MARGIN,
    Forward,
    cache_key,
    cache_path,
    read_cache,
    reference_frame,
)

#: packed side of the timing input: near the memory budget's tiles (752×536 packed at 12 MP). On
#: 256² the two runtimes' ratio was not the one of a 12 MP frame (a loaded EPYC: 0.92 there, 0.59
#: on the frame); per-call overheads weigh too much on small inputs.
TIMING_SIDE = 512
TEST_FRAME_SIDE = 96
RUNTIMES = ("torch", "openvino")


@dataclass(frozen=True)
class RuntimeChoice:
    runtime: str  # "torch" or "openvino"
    source: str  # "cache" or "measured"
    torch_s: float | None = None
    openvino_s: float | None = None
    psnr_db: float | None = None  # OpenVINO's output against PyTorch's on the test frame
    reason: str = ""


def decide(torch_s: float, openvino_s: float, psnr_db: float) -> tuple[str, str]:
    if openvino_s > SPEEDUP_MARGIN * torch_s:
        return "torch", f"OpenVINO is not faster ({openvino_s * 1e3:.0f} ms vs PyTorch {torch_s * 1e3:.0f} ms)"
    if psnr_db < MIN_PSNR_DB:
        return "torch", f"OpenVINO is faster but its output differs ({psnr_db:.1f} dB < {MIN_PSNR_DB:g} dB)"
    return "openvino", f"OpenVINO {torch_s / max(openvino_s, 1e-9):.2f}× faster, {psnr_db:.1f} dB against PyTorch"


def measure(forwards: Mapping[str, Forward], channels: int, *, timer: Callable[[], float] = time.perf_counter,
            repeats: int = REPEATS) -> tuple[float, float, float]:
    """(PyTorch seconds, OpenVINO seconds, OpenVINO's PSNR against PyTorch): best of alternating
    runs, so load on a shared machine hits both alike; the first run of each (compilation,
    kernel selection) does not count."""
    timing_input = reference_frame(channels, TIMING_SIDE, seed=1)
    best = {name: float("inf") for name in RUNTIMES}
    with torch.inference_mode():
        for repeat in range(repeats + 1):
            for name in RUNTIMES:
                start = timer()
                forwards[name](timing_input)
                if repeat:
                    best[name] = min(best[name], timer() - start)
        frame = reference_frame(channels, TEST_FRAME_SIDE)
        reference = forwards["torch"](frame).float().clamp(0, 1)
        quality = image_psnr(forwards["openvino"](frame).float().clamp(0, 1), reference)
    return best["torch"], best["openvino"], quality


def choose_cpu_runtime(forwards_for: Callable[[], Mapping[str, Forward]], architecture_block: Mapping,
                       channels: int, precision: str, *, cache: Path | None = None,
                       timer: Callable[[], float] = time.perf_counter) -> RuntimeChoice:
    """PyTorch or OpenVINO for this model in `precision` on this CPU: cached, else measured.

    `forwards_for()` builds the two forwards ({"torch": …, "openvino": …}); it is called only
    when there is something to measure, since converting for OpenVINO takes seconds."""
    path = cache if cache is not None else cache_path()
    key = f"runtime:{precision}:" + cache_key(architecture_block)
    cached = read_cache(path).get(key)
    if isinstance(cached, dict) and cached.get("runtime") in RUNTIMES:
        fields = {name: cached.get(name) for name in ("torch_s", "openvino_s", "psnr_db")}
        return RuntimeChoice(cached["runtime"], "cache", reason=str(cached.get("reason", "")), **fields)
    torch_s, openvino_s, quality = measure(forwards_for(), channels, timer=timer)
    runtime, reason = decide(torch_s, openvino_s, quality)
    choice = RuntimeChoice(runtime, "measured", torch_s, openvino_s, quality, reason)
    data = read_cache(path)
    data[key] = {name: value for name, value in asdict(choice).items() if name != "source"}
    try:
        write_json(path, data, sort_keys=True)
    except (OSError, OutputError):
        pass  # an unwritable cache only costs the next start another measurement
    return choice
