"""ONNX Runtime on the CPU: the profile's plain model exported once, run by onnxruntime.

An optional runtime (`pip install 'raw2rgb[onnx]'`, `RAW2RGB_RUNTIME=onnx`): the same tiles and
memory budget as `TorchRunner`, with each tile computed by an `onnxruntime.InferenceSession` of
the eager model (BatchNorm folded, float32). It is not what `auto` picks, because it does not win
here. Measured on this project's 2-core EPYC (AVX512-BF16, no AMX), lite G1, one process, a busy
machine: on a whole 6 MP frame (512×768 packed, no tiles) onnxruntime 1.32 took 1.80 s against
PyTorch's optimised bf16 1.92–2.08 s and optimised fp32 2.52–2.61 s (outputs within 7e-7 of
PyTorch fp32); but whole frames break the memory budget, and with the budget's tiles on a 12 MP
frame (752×1000 packed) it took 4.2–4.6 s against optimised fp32 3.7 s and bf16 2.7–2.8 s: each
new tile shape costs it a new memory plan, and it has no bf16 path on this CPU.
`benchmarks/bench_convert.py --runtimes onnx-fp32` measures it end to end beside the others.

The export (torch's TorchScript-based exporter, which needs the `onnx` package) takes seconds,
so the model is cached in the user cache folder under a digest of its weights and the torch and
onnxruntime versions; a profile's model is exported once per machine.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from raw2rgb_plugin.errors import OutputError, Raw2RgbError
from raw2rgb_plugin.io.files import write_bytes
from raw2rgb_plugin.runtime.precision import cache_folder

OPSET = 17
_EXPORT_SIDE = 64  # packed pixels of the example input the graph is traced with (H and W stay dynamic)


def onnx_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


class OnnxForward:
    """A prepared (eager, BatchNorm-folded, float32) model's forward, computed by ONNX Runtime.

    `TorchRunner.use_forward` takes it, so tiling and the memory budget stay PyTorch's.
    """

    name = "onnxruntime float32"

    def __init__(self, prepared: nn.Module, channels: int):
        if not onnx_available():
            raise Raw2RgbError("the onnx runtime needs onnxruntime and onnx",
                               "pip install 'raw2rgb[onnx]', or unset RAW2RGB_RUNTIME")
        self.session = _session(prepared, channels)

    def __call__(self, packed: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {"packed": packed.float().contiguous().numpy()})[0]
        return torch.from_numpy(out)


def _session(model: nn.Module, channels: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # what the converter bounded torch to
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(_exported(model, channels), options, providers=["CPUExecutionProvider"])


def _exported(model: nn.Module, channels: int) -> bytes:
    """The ONNX bytes of `model`, from the cache or exported now (and cached, atomically)."""
    import onnxruntime as ort

    digest = hashlib.sha256(f"{torch.__version__}|{ort.__version__}|{OPSET}|{channels}".encode())
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    path = _cache_dir() / f"{digest.hexdigest()[:32]}.onnx"
    if path.is_file():
        return path.read_bytes()
    buffer = io.BytesIO()
    example = torch.rand(1, channels, _EXPORT_SIDE, _EXPORT_SIDE)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes: not the user's business
        # A file object works (and keeps the export off the disk); the stubs only name paths.
        torch.onnx.export(model.float(), (example,), buffer, dynamo=False, opset_version=OPSET,  # type: ignore[arg-type]
                          input_names=["packed"], output_names=["rgb"],
                          dynamic_axes={"packed": {0: "n", 2: "h", 3: "w"}, "rgb": {0: "n", 2: "height", 3: "width"}})
    data = buffer.getvalue()
    try:
        write_bytes(path, data)
    except (OSError, OutputError):
        pass  # an unwritable cache only costs the next start another export
    return data


def _cache_dir() -> Path:
    return cache_folder() / "onnx"
