"""OpenVINO as a CPU runtime (the optional `openvino` extra; skipped where it is not installed, as
in CI): the same image as PyTorch, its precision set explicitly, its conversion cached."""

from __future__ import annotations

import pytest
import torch

from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.models.g1 import G1_SPEC
from raw2rgb_plugin.pipeline.metrics import image_psnr
from raw2rgb_plugin.runtime import openvino_runner
from raw2rgb_plugin.runtime.runner import build_runner

from test_runtime import trained_like_g1

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _private_cache(one_torch_thread, tmp_path, monkeypatch):
    monkeypatch.setenv("RAW2RGB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("RAW2RGB_RUNTIME", raising=False)


def _compiled_hints(runner) -> set[str]:
    return {str(request.get_compiled_model().get_property("INFERENCE_PRECISION_HINT"))
            for request in runner._external._compiled.values()}


def test_openvino_gives_the_torch_image_in_fp32_and_caches_its_conversion(tmp_path):
    pytest.importorskip("openvino")
    model = trained_like_g1(residual_base="mhc-srgb-gated", noise_channels=4)
    x = torch.rand(1, 8, 48, 72, generator=torch.Generator().manual_seed(5))
    runner = build_runner(model, G1_SPEC, device=CPU, runtime="openvino", dtype=torch.float32, tile=0)
    reference = build_runner(model, G1_SPEC, device=CPU, runtime="eager", dtype=torch.float32, tile=0)
    assert runner.name == "openvino float32" and runner.dtype == torch.float32
    # Measured max 2.4e-7 on an AMD EPYC; 1e-5 is 0.66 of a 16-bit level.
    assert float((runner.run(x) - reference.run(x)).abs().max()) <= 1e-5
    # fp32 asked for is fp32 compiled: left alone OpenVINO picks bf16 on AVX512-BF16 and AMX CPUs.
    assert _compiled_hints(runner) == {"<Type: 'float32'>"}
    # Tiles (all of one shape: compiled once), blended as PyTorch's tiles are; the conversion is
    # read back from the cache, not done again.
    tiled = build_runner(model, G1_SPEC, device=CPU, runtime="openvino", dtype=torch.float32, tile=32, overlap=8)
    torch_tiled = build_runner(model, G1_SPEC, device=CPU, runtime="eager", dtype=torch.float32, tile=32, overlap=8)
    y = torch.rand(1, 8, 64, 40)
    assert float((tiled.run(y) - torch_tiled.run(y)).abs().max()) <= 1e-5
    assert len(tiled._external._compiled) == 1
    # A frame of another shape gets its own compiled model beside the first.
    z = torch.rand(1, 8, 40, 56)
    assert float((runner.run(z) - reference.run(z)).abs().max()) <= 1e-5
    assert len(runner._external._compiled) == 2
    assert len(list((tmp_path / "cache" / "openvino").glob("*.xml"))) == 1
    assert len(list((tmp_path / "cache" / "openvino").glob("*.bin"))) == 1
    assert not list((tmp_path / "cache" / "openvino").glob(".*"))  # no temporary left behind


def test_openvino_bf16_is_bf16_and_close_to_fp32():
    pytest.importorskip("openvino")
    model = trained_like_g1(residual_base="mhc-srgb-gated")
    runner = build_runner(model, G1_SPEC, device=CPU, runtime="openvino", dtype=torch.bfloat16, tile=0)
    reference = build_runner(model, G1_SPEC, device=CPU, runtime="eager", dtype=torch.float32, tile=0)
    assert runner.name == "openvino bfloat16" and runner.dtype == torch.bfloat16
    x = torch.rand(1, 4, 48, 48, generator=torch.Generator().manual_seed(1))
    # Emulated where the CPU has no bf16 unit; either way the precision asked for is compiled.
    quality = image_psnr(runner.run(x).clamp(0, 1), reference.run(x).clamp(0, 1))
    assert _compiled_hints(runner) == {"<Type: 'bfloat16'>"}
    # Measured 67.9 dB on random weights (PyTorch's optimised bf16, whose head stays fp32: 80.2 dB).
    assert quality >= 50.0


def test_the_openvino_runtime_without_its_package_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(openvino_runner, "openvino_available", lambda: False)
    with pytest.raises(Raw2RgbError, match="openvino") as caught:
        build_runner(trained_like_g1(), G1_SPEC, device=CPU, runtime="openvino", dtype=torch.float32)
    assert "pip install 'raw2rgb[openvino]'" in str(caught.value.hint)
