"""The inference runtime: exact rewrites against the eager model, CPU precision choice and its
cache, tiles under a memory budget, and the same on CUDA where there is one.

Stated tolerances (output on [0, 1]):
- rewrites in float32: max |optimised − eager| ≤ 2e-6 (float rounding; measured ~2e-7);
- bf16 convolutions: PSNR ≥ 50 dB against the eager float32 model (measured ~70 dB);
- tiles: the tiling tolerance of tests/test_tiling.py (max 2e-3, mean 1e-4).
"""

from __future__ import annotations

import json

import pytest
import torch
from torch.nn import functional as F

from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.models.g1 import G1, G1_SPEC, PACKED_STRIDE, G1Config
from raw2rgb_plugin.models.g1_inference import (
    G1Inference,
    reflect_border_,
    replicate_border_,
    upsample_conv_phase_kernels,
)
from raw2rgb_plugin.pipeline.metrics import MAX_DB, image_psnr
from raw2rgb_plugin.runtime import precision
from raw2rgb_plugin.runtime.precision import choose_cpu_precision, decide, reference_frame
from raw2rgb_plugin.runtime.runner import TorchRunner, build_runner, prepare_for_inference, runtime_choice
from raw2rgb_plugin.runtime.tiling import plan_tiles, run_tiled, tile_starts

from helpers import cuda_test

FP32_TOLERANCE = 2e-6
MIN_BF16_PSNR = 50.0
TILE_MAX_ABS, TILE_MEAN_ABS = 2e-3, 1e-4
CPU = torch.device("cpu")



class _no_tf32:
    """float32 convolutions in full float32 on CUDA (TF32 would swamp the rewrites' rounding)."""

    def __enter__(self):
        self.saved = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *exc):
        torch.backends.cudnn.allow_tf32 = self.saved


@pytest.fixture(autouse=True)
def _one_thread_and_private_cache(one_torch_thread, tmp_path, monkeypatch):
    monkeypatch.setenv(precision.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv("RAW2RGB_CPU_PRECISION", raising=False)
    monkeypatch.delenv("RAW2RGB_RUNTIME", raising=False)
    monkeypatch.setenv("RAW2RGB_MALLOC_TUNING", "0")  # the pytest process keeps glibc's defaults


def trained_like_g1(seed: int = 0, **overrides) -> G1:
    """A plain-weights G1 (as profiles hold) with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    config = G1Config.for_variant("lite", spectral_norm=False, **overrides)
    model = G1(config)
    with torch.no_grad():
        if config.residual_base == "mhc-srgb":
            model.residual_gain.fill_(0.8)
        for block in model.fine:  # as trained: a fine block's gain has moved off its zero start
            block.gain.fill_(0.7)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(2, config.in_channels + config.noise_channels, 32, 32))
    return model.eval()


def eager(model: G1, dtype=torch.float32, device=CPU):
    net = prepare_for_inference(model, G1_SPEC, device, dtype)
    return lambda x: net(x.to(device, dtype).contiguous(memory_format=torch.channels_last)).float()


def optimised(model: G1, dtype=torch.float32, device=CPU):
    return prepare_for_inference(model, G1_SPEC, device, dtype, optimize=True)


# ------------------------------------------------------------------------------------------------
# each rewrite on its own


def test_upsample_then_conv_is_a_phase_conv_at_low_resolution_borders_included():
    torch.manual_seed(1)
    x = torch.randn(2, 5, 7, 9, dtype=torch.float64)
    weight, bias = torch.randn(3, 5, 3, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    # eager: nearest ×2, reflect padding of the upsampled image, 3×3 conv
    up = F.interpolate(x, scale_factor=2, mode="nearest")
    expected = F.conv2d(F.pad(up, (1, 1, 1, 1), mode="reflect"), weight, bias)
    # rewrite: replicate padding at low resolution, one 2×2 conv with 4 phases, interleave
    phase_w, phase_b = upsample_conv_phase_kernels(weight, bias)
    z = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), phase_w, phase_b)
    got = torch.empty_like(expected)
    for phase, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        got[..., a::2, b::2] = z[:, phase * 3 : (phase + 1) * 3, a : a + 7, b : b + 9]
    assert torch.allclose(got, expected, rtol=0, atol=1e-12)
    # the border needs replicate: reflect at low resolution would differ there
    z_reflect = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), phase_w, phase_b)
    assert not torch.allclose(z_reflect[..., 0, 0], z[..., 0, 0])


@pytest.mark.parametrize("pad", [1, 2, 3])
def test_border_fills_equal_torch_padding(pad):
    x = torch.randn(1, 6, 9, 11).contiguous(memory_format=torch.channels_last)
    buf = torch.full((1, 6, 9 + 2 * pad, 11 + 2 * pad), float("nan")).contiguous(memory_format=torch.channels_last)
    buf[..., pad:-pad, pad:-pad] = x
    assert torch.equal(reflect_border_(buf, pad), F.pad(x, (pad,) * 4, mode="reflect"))
    one = torch.full((1, 6, 11, 13), float("nan"))
    one[..., 1:-1, 1:-1] = x
    assert torch.equal(replicate_border_(one), F.pad(x, (1, 1, 1, 1), mode="replicate"))


# ------------------------------------------------------------------------------------------------
# the whole rewritten G1 against the eager one


@pytest.mark.parametrize("overrides", [
    {"residual_base": "none"},
    {"residual_base": "mhc-srgb"},
    {"residual_base": "mhc-srgb-gated"},
    {"residual_base": "mhc-srgb-gated", "noise_channels": 4},
    {"residual_base": "mhc-linear-gated", "noise_channels": 4},
    {"residual_base": "lsq-srgb-gated", "noise_channels": 4},
    {"residual_base": "lsq-linear-gated", "noise_channels": 4},
    {"residual_base": "mhc-srgb-gated", "noise_channels": 4, "fine_blocks": 2},
    {"norm": "none", "residual_blocks": 0, "out_channels": 1, "fine_blocks": 1},
    # X-Trans (period 6): 36 packed sites, a 36-channel noise map, pixel_shuffle(6)
    {"period": 6, "in_channels": 36},
    {"period": 6, "in_channels": 36, "residual_base": "xtrans-linear-gated", "noise_channels": 36},
    {"period": 6, "in_channels": 36, "residual_base": "xtrans-srgb-gated", "noise_channels": 36, "fine_blocks": 1},
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_rewritten_g1_equals_eager_in_float32(overrides):
    model = trained_like_g1(**overrides)
    channels = model.config.in_channels + model.config.noise_channels
    x = torch.rand(1, channels, 40, 56, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        expected, got = eager(model)(x), optimised(model)(x)
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert float((got - expected).abs().max()) <= FP32_TOLERANCE


def test_rewritten_g1_leaves_the_model_unchanged_and_needs_no_batchnorm_fold():
    model = trained_like_g1(residual_base="mhc-srgb-gated")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    net = G1Inference(model, PACKED_STRIDE)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(p.requires_grad for p in net.parameters())
    with pytest.raises(ValueError, match="multiples of 8"):
        net(torch.rand(1, 4, 20, 24))


@pytest.mark.parametrize("overrides", [
    {"residual_base": "mhc-srgb-gated"},
    {"period": 6, "in_channels": 36, "residual_base": "xtrans-srgb-gated"},
], ids=lambda o: o["residual_base"])
def test_bf16_convolutions_stay_within_the_psnr_bound(overrides):
    model = trained_like_g1(**overrides)
    frame = reference_frame(model.config.in_channels, 64)
    with torch.inference_mode():
        reference, fast_bf16 = eager(model)(frame), optimised(model, torch.bfloat16)(frame)
    assert fast_bf16.dtype == torch.float32
    assert image_psnr(fast_bf16.clamp(0, 1), reference.clamp(0, 1)) >= MIN_BF16_PSNR


# ------------------------------------------------------------------------------------------------
# tiles


def test_rewritten_g1_tiled_matches_its_whole_frame():
    model = optimised(trained_like_g1(residual_base="mhc-srgb-gated"))
    x = reference_frame(4, 200)[..., :184, :200]
    with torch.inference_mode():
        whole = run_tiled(model, x, stride=PACKED_STRIDE, tile=0)
        tiled = run_tiled(model, x, stride=PACKED_STRIDE, tile=(184, 136))
    diff = (tiled - whole).abs()
    assert float(diff.max()) < TILE_MAX_ABS and float(diff.mean()) < TILE_MEAN_ABS


def test_a_memory_budget_tiles_the_frame_and_matches_the_whole_frame():
    model = trained_like_g1(residual_base="mhc-srgb-gated")
    x = reference_frame(4, 200)[..., :200, :184]
    whole_runner = TorchRunner(model, G1_SPEC, device=CPU, dtype=torch.float32, optimize=True, tile=0)
    budget = whole_runner.activation_bytes(200 * 184) // 2
    runner = TorchRunner(model, G1_SPEC, device=CPU, dtype=torch.float32, optimize=True, memory_budget=budget)
    tile = runner.tile_for(200, 184)
    assert isinstance(tile, tuple) and tile[0] * tile[1] <= 200 * 184 / 2
    assert runner.activation_bytes(tile[0] * tile[1]) <= budget
    diff = (runner.run(x) - whole_runner.run(x)).abs()
    assert float(diff.max()) < TILE_MAX_ABS and float(diff.mean()) < TILE_MEAN_ABS


def test_tile_plans_fit_the_budget_and_cover_the_frame():
    for height, width, budget in ((1504, 2000, 2_300_000), (2000, 3000, 900_000), (400, 3000, 150_000)):
        tile_h, tile_w = plan_tiles(height, width, budget, overlap=64, stride=8)
        assert 0 < tile_h * tile_w <= budget and tile_h % 8 == 0 and tile_w % 8 == 0
        rows, cols = tile_starts(height, tile_h, 64, 8), tile_starts(width, tile_w, 64, 8)
        assert rows[-1] + tile_h == height and cols[-1] + tile_w == width
        assert len(rows) * len(cols) * tile_h * tile_w < 1.25 * height * width  # little recomputed
    assert plan_tiles(1504, 2000, 1504 * 2000, overlap=64, stride=8) == (0, 0)
    # two tiles side by side, not 512² squares
    assert plan_tiles(1504, 2000, 2_300_000, overlap=64, stride=8) == (1504, 1032)


def test_the_optimised_runner_estimates_less_memory_than_the_eager_one():
    model = trained_like_g1(residual_base="mhc-srgb-gated")
    fast = TorchRunner(model, G1_SPEC, device=CPU, dtype=torch.float32, optimize=True)
    slow = TorchRunner(model, G1_SPEC, device=CPU, dtype=torch.float32)
    assert fast.activation_bytes(10**6) < 0.6 * slow.activation_bytes(10**6)


# ------------------------------------------------------------------------------------------------
# the CPU precision choice


class FakeClock:
    """A clock the fake forwards advance: each dtype 'takes' its given seconds per call."""

    def __init__(self):
        self.now = 0.0
        self.calls: dict[torch.dtype, int] = {}

    def __call__(self) -> float:
        return self.now

    def forward_for(self, seconds: dict[torch.dtype, float], bf16_error: float = 0.0, warmup: float = 1.0):
        def make(dtype):
            def forward(x):
                self.calls[dtype] = self.calls.get(dtype, 0) + 1
                self.now += seconds[dtype] * (warmup if self.calls[dtype] == 1 else 1.0)
                out = x[:, :3].repeat_interleave(2, -1).repeat_interleave(2, -2).clamp(0, 1)
                return out + bf16_error if dtype == torch.bfloat16 else out
            return forward
        return make


BLOCK = {"name": "g1", "width": 16}


def choose(clock, seconds, tmp_path, **kwargs):
    forward_for = clock.forward_for(seconds, **{k: kwargs.pop(k) for k in ("bf16_error", "warmup") if k in kwargs})
    return choose_cpu_precision(forward_for, BLOCK, 4, timer=clock, cache=tmp_path / "p.json", env={}, **kwargs)


def test_bf16_slower_keeps_fp32(tmp_path):
    choice = choose(FakeClock(), {torch.float32: 1.0, torch.bfloat16: 2.0}, tmp_path)
    assert choice.precision == "fp32" and choice.dtype == torch.float32 and choice.source == "measured"
    assert choice.fp32_s == 1.0 and choice.bf16_s == 2.0


def test_bf16_faster_and_accurate_is_chosen(tmp_path):
    choice = choose(FakeClock(), {torch.float32: 1.0, torch.bfloat16: 0.6}, tmp_path)
    assert choice.precision == "bf16" and choice.dtype == torch.bfloat16
    assert choice.psnr_db == MAX_DB  # identical outputs


def test_a_tie_or_an_inaccurate_bf16_keeps_fp32(tmp_path):
    assert choose(FakeClock(), {torch.float32: 1.0, torch.bfloat16: 0.95}, tmp_path).precision == "fp32"
    inaccurate = choose(FakeClock(), {torch.float32: 1.0, torch.bfloat16: 0.5}, tmp_path / "b", bf16_error=0.01)
    assert inaccurate.precision == "fp32" and inaccurate.psnr_db is not None and inaccurate.psnr_db < 50


def test_an_emulated_bf16_is_given_up_on_after_one_run(tmp_path):
    clock = FakeClock()
    choice = choose(clock, {torch.float32: 0.1, torch.bfloat16: 10.0}, tmp_path)
    assert choice.precision == "fp32" and choice.bf16_s is None
    assert clock.calls[torch.bfloat16] == 1


def test_decide_is_the_documented_rule():
    assert decide(1.0, 0.5, 60.0)[0] == "bf16"
    assert decide(1.0, 0.5, 49.9)[0] == "fp32"
    assert decide(1.0, 0.91, 80.0)[0] == "fp32"
    assert decide(1.0, None, None)[0] == "fp32"


def test_the_choice_is_cached_per_architecture_and_reused(tmp_path):
    first = choose(FakeClock(), {torch.float32: 1.0, torch.bfloat16: 0.5}, tmp_path)
    assert first.source == "measured"
    data = json.loads((tmp_path / "p.json").read_text())
    [entry] = data.values()
    assert entry["precision"] == "bf16" and entry["fp32_s"] == 1.0

    def must_not_measure(dtype):
        raise AssertionError("measured again despite the cache")

    again = choose_cpu_precision(must_not_measure, BLOCK, 4, cache=tmp_path / "p.json", env={})
    assert (again.precision, again.source) == ("bf16", "cache")
    clock = FakeClock()
    other = choose_cpu_precision(clock.forward_for({torch.float32: 1.0, torch.bfloat16: 2.0}),
                                 {**BLOCK, "width": 64}, 4, timer=clock, cache=tmp_path / "p.json", env={})
    assert other.source == "measured" and len(json.loads((tmp_path / "p.json").read_text())) == 2


def test_a_damaged_cache_is_measured_again(tmp_path):
    (tmp_path / "p.json").write_text("{not json")
    assert choose(FakeClock(), {torch.float32: 1.0, torch.bfloat16: 2.0}, tmp_path).source == "measured"


def test_the_environment_overrides_the_measurement(tmp_path):
    def must_not_measure(dtype):
        raise AssertionError("measured despite the override")

    for value, dtype in (("bf16", torch.bfloat16), ("FP32", torch.float32)):
        choice = choose_cpu_precision(must_not_measure, BLOCK, 4, cache=tmp_path / "p.json",
                                      env={"RAW2RGB_CPU_PRECISION": value})
        assert choice.dtype == dtype and choice.source == "env"
    assert not (tmp_path / "p.json").exists()
    clock = FakeClock()
    auto = choose_cpu_precision(clock.forward_for({torch.float32: 1.0, torch.bfloat16: 2.0}), BLOCK, 4,
                                timer=clock, cache=tmp_path / "p.json", env={"RAW2RGB_CPU_PRECISION": "auto"})
    assert auto.source == "measured"
    with pytest.raises(Raw2RgbError, match="RAW2RGB_CPU_PRECISION"):
        choose_cpu_precision(must_not_measure, BLOCK, 4, cache=tmp_path / "p.json", env={"RAW2RGB_CPU_PRECISION": "fp16"})


def test_the_default_cache_is_the_user_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(precision.CACHE_ENV)
    assert precision.cache_path().parent.name.lower() == "raw2rgb"
    monkeypatch.setenv(precision.CACHE_ENV, str(tmp_path))
    assert precision.cache_path() == tmp_path / precision.CACHE_FILE


def test_cache_keys_name_the_cpu_torch_and_architecture():
    key = json.loads(precision.cache_key({"name": "g1", "width": 16}))
    assert key["torch"] == torch.__version__ and key["architecture"]["width"] == 16 and key["cpu"]


# ------------------------------------------------------------------------------------------------
# what the converter builds


def test_build_runner_measures_once_then_reads_the_cache(monkeypatch):
    model = trained_like_g1(residual_base="mhc-srgb-gated")
    block = {"name": "g1", **G1_SPEC.to_block(model)}
    runner = build_runner(model, G1_SPEC, device=CPU, architecture_block=block)
    assert runner.optimized and runner.dtype in (torch.float32, torch.bfloat16)
    assert precision.cache_path().exists()
    monkeypatch.setattr(precision, "measure", lambda *a, **k: pytest.fail("measured twice"))
    assert build_runner(model, G1_SPEC, device=CPU, architecture_block=block).dtype == runner.dtype


def test_the_eager_runtime_is_the_reference_bit_for_bit(monkeypatch):
    model = trained_like_g1(residual_base="mhc-srgb-gated")
    monkeypatch.setenv("RAW2RGB_RUNTIME", "eager")
    runner = build_runner(model, G1_SPEC, device=CPU, dtype=torch.float32)
    assert not runner.optimized and runner.name == "eager float32"
    x = torch.rand(1, 4, 48, 40)
    # Exact by construction: one eager module, the same kernels, in one process.
    assert torch.equal(runner.run(x), TorchRunner(model, G1_SPEC, device=CPU, dtype=torch.float32).run(x))
    monkeypatch.setenv("RAW2RGB_RUNTIME", "compiled")
    with pytest.raises(Raw2RgbError, match="unknown runtime"):
        runtime_choice()


def test_heap_reuse_applies_on_glibc_and_can_be_declined(monkeypatch):
    import platform
    import sys

    from raw2rgb_plugin.runtime import runner

    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    for env, expected in (({"RAW2RGB_MALLOC_TUNING": "0"}, False), ({"MALLOC_ARENA_MAX": "2"}, False), ({}, glibc)):
        monkeypatch.setattr(runner, "_libc", None)
        for name in [n for n in __import__("os").environ if n.startswith("MALLOC_")]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("RAW2RGB_MALLOC_TUNING", "1")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        with runner.heap_reuse(CPU) as applied:
            assert applied is expected
        with runner.heap_reuse(CPU, enabled=False) as applied:
            assert applied is False
    monkeypatch.setattr(runner, "_libc", None)


# ------------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU; benchmarks/gpu_check.sh runs them)


@cuda_test
@pytest.mark.parametrize("overrides", [{"residual_base": "mhc-srgb-gated"}, {"residual_base": "none"}])
def test_rewritten_g1_equals_eager_on_cuda(overrides):
    device = torch.device("cuda")
    model = trained_like_g1(**overrides)
    x = torch.rand(1, 4, 128, 96, device=device)
    with torch.inference_mode(), _no_tf32():
        expected = eager(model, device=device)(x)
        got = optimised(model, device=device)(x)
        fast_bf16 = optimised(model, torch.bfloat16, device=device)(x)
    assert float((got - expected).abs().max()) <= 1e-4  # cuDNN picks its algorithms per shape
    assert image_psnr(fast_bf16.clamp(0, 1), expected.clamp(0, 1)) >= MIN_BF16_PSNR


@cuda_test
def test_build_runner_on_cuda_tiles_and_matches_the_whole_frame():
    device = torch.device("cuda")
    model = trained_like_g1(residual_base="mhc-srgb-gated")
    runner = build_runner(model, G1_SPEC, device=device)
    assert runner.optimized and runner.dtype in (torch.bfloat16, torch.float16, torch.float32)
    x = reference_frame(4, 256)[..., :248, :256].to(device)
    whole = runner.run(x)
    tiled = run_tiled(runner._forward, x, stride=PACKED_STRIDE, tile=(248, 136))
    diff = (tiled.float() - whole).abs()
    assert whole.device.type == "cuda" and float(diff.max()) < TILE_MAX_ABS + 4e-3  # + bf16 rounding per tile


# ------------------------------------------------------------------------------------------------
# the GPU check's script, dry on the CPU


@pytest.mark.slow
def test_gpu_check_script_dry_run_on_the_cpu(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "RAW2RGB_GPU_CHECK_DRY": "1", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
           "RAW2RGB_CPU_PRECISION": "fp32"}
    done = subprocess.run(["bash", str(root / "benchmarks" / "gpu_check.sh"), str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "bench.json").read_text())
    [row] = report["runtimes"]
    assert row["runtime"] == "optimized-bf16" and row["files_per_s"] > 0 and row["peak_rss_gib"] > 0
    assert "optimized-bf16" in (tmp_path / "out" / "bench.txt").read_text()
    assert "skipped" in (tmp_path / "out" / "cuda-tests.txt").read_text() or torch.cuda.is_available()


# ------------------------------------------------------------------------------------------------
# the CPU training precision choice


@pytest.mark.parametrize("bf16_seconds, expected", [(0.6, "bf16"), (0.95, "fp32"), (9.0, "fp32")])
def test_training_uses_bf16_autocast_only_where_measured_faster(tmp_path, bf16_seconds, expected):
    from raw2rgb_plugin.runtime.precision import choose_cpu_training_precision

    clock = FakeClock()
    seconds = {None: 1.0, torch.bfloat16: bf16_seconds}

    def step_for(dtype):
        def step():
            clock.now += seconds[dtype]
        return step

    choice = choose_cpu_training_precision(step_for, BLOCK, timer=clock, cache=tmp_path / "p.json", env={})
    assert (choice.precision, choice.source) == (expected, "measured")
    # Cached apart from the inference choice of the same architecture, and reused.
    again = choose_cpu_training_precision(lambda dtype: pytest.fail("measured twice"), BLOCK, cache=tmp_path / "p.json", env={})
    assert (again.precision, again.source) == (expected, "cache")
    inference = choose(FakeClock(), {torch.float32: 1.0, torch.bfloat16: 2.0}, tmp_path)
    assert (inference.precision, inference.source) == ("fp32", "measured")
    forced = choose_cpu_training_precision(lambda dtype: pytest.fail("measured"), BLOCK, cache=tmp_path / "p.json",
                                           env={"RAW2RGB_CPU_PRECISION": "fp32"})
    assert forced.precision == "fp32" and forced.source == "env"


def test_cpu_training_runs_in_bf16_autocast_when_asked(tmp_path):
    import dataclasses
    import json as json_module

    from raw2rgb_plugin.training.trainer import TrainConfig, Trainer

    from train_helpers import PairDatasetInMemory

    config = TrainConfig(width=8, d_width=8, batch_size=2, stage1_epochs=1, stage2_epochs=0, perceptual=False,
                         max_steps=2, device="cpu", amp="bf16")
    trainer = Trainer(config, PairDatasetInMemory(), tmp_path / "run", install_profile=False)
    assert trainer.amp_dtype == torch.bfloat16
    result = trainer.run()
    start = json_module.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert start["amp"] == "bfloat16" and result.global_step == 2 and result.validation is not None
    with pytest.raises(Exception, match="CUDA"):
        Trainer(dataclasses.replace(config, amp="fp16"), PairDatasetInMemory(), tmp_path / "fp16", install_profile=False)


# ------------------------------------------------------------------------------------------------
# ONNX Runtime (the optional `onnx` extra)


def test_onnx_runtime_gives_the_torch_image_and_caches_its_export(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from raw2rgb_plugin.models.registry import ARCHITECTURES
    from raw2rgb_plugin.runtime.runner import build_runner

    monkeypatch.setenv("RAW2RGB_CACHE_DIR", str(tmp_path / "cache"))
    model = trained_like_g1(residual_base="mhc-srgb-gated", noise_channels=4)
    spec = ARCHITECTURES["g1"]
    x = torch.rand(1, 8, 48, 72, generator=torch.Generator().manual_seed(5))
    onnx_runner = build_runner(model, spec, device=torch.device("cpu"), runtime="onnx", tile=0)
    reference = build_runner(model, spec, device=torch.device("cpu"), runtime="eager", dtype=torch.float32, tile=0)
    assert onnx_runner.name == "onnxruntime float32"
    # Two libraries' kernels sum in other orders: measured max 1.8e-7 (ATEN_CPU_CAPABILITY=avx512,
    # avx2) and 2.4e-7 (default) on an AMD EPYC; 1e-5 is 0.66 of a 16-bit level, 40× that.
    assert float((onnx_runner.run(x) - reference.run(x)).abs().max()) <= 1e-5
    # Tiles of other sizes through one session (the export's height and width are dynamic), blended
    # as PyTorch's tiles are.
    tiled = build_runner(model, spec, device=torch.device("cpu"), runtime="onnx", tile=32, overlap=8)
    torch_tiled = build_runner(model, spec, device=torch.device("cpu"), runtime="eager", dtype=torch.float32, tile=32,
                               overlap=8)
    y = torch.rand(1, 8, 64, 40)
    assert float((tiled.run(y) - torch_tiled.run(y)).abs().max()) <= 1e-5
    assert len(list((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 1  # one export, reused
