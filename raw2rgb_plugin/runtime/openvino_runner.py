"""OpenVINO on the CPU: the profile's plain model converted once, each tile shape compiled once.

An optional runtime (`pip install 'raw2rgb[openvino]'`): `RAW2RGB_RUNTIME=openvino` runs every
tile through it; tiling and the memory budget stay `TorchRunner`'s. `auto` does not take it:
- it did not win here (below), so `auto` would only pay a measurement to keep PyTorch;
- a test process that had run OpenVINO's converted model and then trained with spawned DataLoader
  workers died of SIGSEGV in the parent while it waited for a worker (os.waitpid, gdb), reproduced
  every time (pytest tests/test_openvino.py::…fp32… then tests/test_train_cli.py::
  test_worker_processes_change_nothing); each alone passes. Until that is understood, OpenVINO
  is loaded only into a process that asked for it, and CI does not install the extra.

Why these choices, measured on this project's 2-core EPYC (AVX512-BF16, no AMX), openvino
2026.4, `default-lite`, a 12 MP frame (752×1000 packed, the budget's two 752×536 tiles), a
loaded machine:
- **The precision is always set** (`INFERENCE_PRECISION_HINT`): left alone, OpenVINO picks bf16
  by itself on AVX512-BF16 and AMX CPUs, so "fp32" would silently be bf16.
- **Static shapes**: one graph with dynamic H and W took 1.04–1.22 s (f32) and 1.72 s (bf16)
  per frame; the same graph reshaped to each tile's shape and compiled once (0.1 s a shape)
  took 1.04 s and 0.49–0.53 s. PyTorch's optimised G1 took 0.73 s (fp32) and 0.41 s (bf16).
- **Converted from PyTorch** (`openvino.convert_model`), not read from the ONNX export: that
  gives PyTorch's fp32 output within 3e-7, where the ONNX graph read by OpenVINO was 1.3e-3 off.
  Conversion takes ~2.7 s, so the IR is cached in the user cache folder under a digest of the
  weights and the torch and openvino versions.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.runtime.precision import cache_folder

#: OpenVINO's names for the precisions the converter knows.
PRECISION_HINTS = {torch.float32: "f32", torch.bfloat16: "bf16"}
#: compiled tile shapes kept per model: a frame has at most four (interior, right, bottom, corner).
MAX_SHAPES = 8
_EXAMPLE_SIDE = 64  # packed pixels of the example input the model is traced with


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


class OpenVinoForward:
    """A prepared (eager, BatchNorm-folded, float32) model's forward, computed by OpenVINO in
    `dtype` (float32 or bfloat16, set explicitly). `TorchRunner.use_forward` takes it."""

    def __init__(self, prepared: nn.Module, channels: int, dtype: torch.dtype):
        if not openvino_available():
            raise Raw2RgbError("the openvino runtime needs the openvino package",
                               "pip install 'raw2rgb[openvino]', or unset RAW2RGB_RUNTIME")
        if dtype not in PRECISION_HINTS:
            raise ValueError(f"OpenVINO runs float32 or bfloat16, not {dtype}")
        import openvino as ov

        self.core = ov.Core()
        self.model = _converted(self.core, prepared, channels)
        self.hint = PRECISION_HINTS[dtype]
        self.name = f"openvino {'float32' if dtype == torch.float32 else 'bfloat16'}"
        self._compiled: OrderedDict[tuple[int, ...], object] = OrderedDict()

    def _request(self, shape: tuple[int, ...]):
        """The infer request of `shape`'s compiled model (compiled now if new; oldest dropped)."""
        if shape in self._compiled:
            self._compiled.move_to_end(shape)
            return self._compiled[shape]
        model = self.model.clone()
        model.reshape({0: list(shape)})
        config = {"INFERENCE_PRECISION_HINT": self.hint, "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": torch.get_num_threads()}  # what the converter bounded torch to
        request = self.core.compile_model(model, "CPU", config).create_infer_request()
        self._compiled[shape] = request
        if len(self._compiled) > MAX_SHAPES:
            self._compiled.popitem(last=False)
        return request

    def __call__(self, packed: torch.Tensor) -> torch.Tensor:
        request = self._request(tuple(packed.shape))
        request.infer({0: packed.float().contiguous().numpy()})
        # The request reuses its output buffer on the next call: the tile must own its pixels.
        return torch.from_numpy(request.get_output_tensor(0).data.copy())


def _converted(core, model: nn.Module, channels: int):
    """`model` as an OpenVINO model (H and W dynamic), from the cache or converted now and cached."""
    import openvino as ov

    digest = hashlib.sha256(f"{torch.__version__}|{ov.__version__}|{channels}".encode())
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    path = _cache_dir() / f"{digest.hexdigest()[:32]}.xml"
    if path.is_file() and path.with_suffix(".bin").is_file():
        try:
            return core.read_model(path)
        except RuntimeError:
            pass  # a damaged cache entry: convert again and replace it
    example = torch.rand(1, channels, _EXAMPLE_SIDE, _EXAMPLE_SIDE)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes: not the user's business
        converted = ov.convert_model(model.float().eval(), example_input=example,
                                     input=[ov.PartialShape([-1, channels, -1, -1])])
    _save(converted, path)
    return converted


def _save(model, path: Path) -> None:
    """Write the IR pair under temporary names and rename, .bin first: a reader that finds the
    .xml finds its weights. An unwritable cache only costs the next start another conversion."""
    import openvino as ov

    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.xml")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(model, tmp, compress_to_fp16=False)  # fp16 weights would change fp32's output
        os.replace(tmp.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(tmp, path)
    except (OSError, RuntimeError):
        for leftover in (tmp, tmp.with_suffix(".bin")):
            leftover.unlink(missing_ok=True)


def _cache_dir() -> Path:
    return cache_folder() / "openvino"
