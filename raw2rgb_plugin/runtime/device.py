"""Where G1 runs and in which precision.

auto = CUDA, then Apple MPS, then CPU. Half precision only where the hardware does it natively:
bf16 on CUDA sm_80+, fp16 on older CUDA; on the CPU `inference_dtype` is fp32 and the runner
measures whether bf16 is faster on this machine (runtime/precision.py).
"""

from __future__ import annotations

import os

import torch

from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.runtime.settings import DEVICE_CHOICES, DEVICE_HELP, check_device_name  # noqa: F401 - re-exported


def choose_device(name: str = "auto") -> torch.device:
    name = check_device_name(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise Raw2RgbError("CUDA was asked for but no CUDA GPU is available", "use --device cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise Raw2RgbError("Apple MPS was asked for but is not available", "use --device cpu or auto")
    return torch.device(name)


def inference_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        if major >= 8:
            return torch.bfloat16
        if major >= 7:
            return torch.float16
        return torch.float32
    if device.type == "mps":
        return torch.float16
    return torch.float32


def bound_cpu_threads(threads: int | None = None) -> int:
    """Use the cores we were given (cgroup/affinity aware), never more."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        available = os.cpu_count() or 1
    threads = max(1, min(threads or available, available))
    torch.set_num_threads(threads)
    return threads
