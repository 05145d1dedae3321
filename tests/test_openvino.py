"""OpenVINO as a CPU runtime (the optional `openvino` extra): the same image as PyTorch, its
precision set explicitly, its conversion cached, and `auto` taking it only where it measured faster."""

from __future__ import annotations

import pytest
import torch

from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.models.g1 import G1_SPEC
from raw2rgb_plugin.pipeline.metrics import image_psnr
from raw2rgb_plugin.runtime import cpu_runtime, openvino_runner
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


def test_runtime_decision_needs_a_clear_win_and_the_same_image():
    assert cpu_runtime.decide(1.0, 0.5, 60.0)[0] == "openvino"
    assert cpu_runtime.decide(1.0, 0.95, 60.0)[0] == "torch"  # a tie on a noisy machine keeps PyTorch
    assert cpu_runtime.decide(1.0, 0.5, 30.0)[0] == "torch"


@pytest.mark.parametrize(("openvino_s", "expected"), [(0.5, "openvino bfloat16"), (0.95, "optimised bfloat16")])
def test_auto_takes_openvino_only_where_it_measured_faster(monkeypatch, openvino_s, expected):
    pytest.importorskip("openvino")
    measured = []

    def fake_measure(forwards, channels, **kwargs):
        measured.append(sorted(forwards))
        return 1.0, openvino_s, 60.0

    monkeypatch.setattr(cpu_runtime, "measure", fake_measure)
    model = trained_like_g1()
    block = {"name": "g1", "test": openvino_s}
    runner = build_runner(model, G1_SPEC, device=CPU, dtype=torch.bfloat16, architecture_block=block)
    assert runner.name == expected and measured == [["openvino", "torch"]]
    # Cached per machine and model: the next converter does not measure again.
    again = build_runner(model, G1_SPEC, device=CPU, dtype=torch.bfloat16, architecture_block=block)
    assert again.name == expected and len(measured) == 1
    # A runtime named outright is not measured.
    assert build_runner(model, G1_SPEC, device=CPU, runtime="optimized", dtype=torch.bfloat16).name == "optimised bfloat16"
    assert len(measured) == 1


def test_the_runtime_measurement_times_both_on_one_input_and_compares_their_images():
    calls = {"torch": 0, "openvino": 0}

    def forward(name):
        def run(packed):
            calls[name] += 1
            return packed[:, :3]
        return run

    ticks = iter(range(1000))
    torch_s, openvino_s, quality = cpu_runtime.measure({name: forward(name) for name in calls}, 4,
                                                       timer=lambda: float(next(ticks)), repeats=2)
    assert calls == {"torch": 4, "openvino": 4}  # warm-up + 2 timed + the test frame, each
    assert torch_s == openvino_s == 1.0 and quality >= 99.0
