"""Runtime constants the CLI shows in its help; torch-free so commands start fast."""

from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.vocabulary import DEVICE_CHOICES

DEVICE_HELP = "auto, cpu, cuda[:N] or mps (auto: CUDA, then MPS, then CPU)."


def check_device_name(name: str) -> str:
    """`name` lower-cased if --device accepts it; a one-line error otherwise (no torch needed)."""
    name = name.lower()
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise Raw2RgbError(f"unknown device {name!r}", f"use one of {', '.join(DEVICE_CHOICES)} or cuda:N")
    return name

#: packed pixels of overlap between neighbouring tiles: most of G1's effective receptive field.
DEFAULT_OVERLAP = 64

#: which inference runtime the converter builds (runtime/runner.build_runner): `auto` and
#: `optimized` = the architecture's exact inference rewrites; `eager` = the plain model; `onnx` =
#: ONNX Runtime on the CPU (the `onnx` extra; runtime/onnx_runner.py); `openvino` = OpenVINO on
#: the CPU (the `openvino` extra; runtime/openvino_runner.py), named outright only.
RUNTIME_ENV = "RAW2RGB_RUNTIME"
RUNTIME_CHOICES = ("auto", "optimized", "eager", "onnx", "openvino")

#: CPU compute precision: `auto` measures fp32 against bf16 once per machine (runtime/precision.py).
CPU_PRECISION_ENV = "RAW2RGB_CPU_PRECISION"
CPU_PRECISION_CHOICES = ("auto", "fp32", "bf16")

#: MiB a CPU frame's activations may take (never more than half the free memory); larger frames
#: are tiled to fit, with tiles as large as the budget allows (runtime/tiling.plan_tiles). 768
#: keeps a whole `convert` process of the lite G1 near 1.2–1.3 GiB at 12 MP (two tiles, 3 %
#: recomputed) and under 2.5 GiB at 24 MP; $RAW2RGB_CPU_MEMORY_MIB overrides it.
CPU_MEMORY_BUDGET_ENV = "RAW2RGB_CPU_MEMORY_MIB"
CPU_MEMORY_BUDGET_MIB = 768

#: "0" leaves glibc's allocator as it is (runtime/runner.heap_reuse).
MALLOC_TUNING_ENV = "RAW2RGB_MALLOC_TUNING"
