"""Noise model, blind Poisson–Gaussian estimation, darktable lookup, ISO prior, training sampling."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from raw2rgb_plugin.pipeline.noise import NoiseModel, estimate_poisson_gaussian, sigma_map

#: (ISO, a, b): median green profiles of darktable's cameras (docs/raw-io.md, "Real sensor noise").
ISO_LEVELS = ((100, 3.4e-6, 3.4e-9), (1600, 3.7e-5, 1.3e-7), (12800, 2.5e-4, 1.8e-6))
_BLACK, _WHITE = 512.0, 16383.0  # a 14-bit camera with a pedestal


def _blur(noise: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur via FFT (periodic; fine for a synthetic texture)."""
    fy = np.fft.fftfreq(noise.shape[0])[:, None]
    fx = np.fft.rfftfreq(noise.shape[1])[None, :]
    kernel = np.exp(-2 * (np.pi * sigma) ** 2 * (fx**2 + fy**2))
    return np.fft.irfft2(np.fft.rfft2(noise) * kernel, s=noise.shape)


def natural_mosaic(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A clean, levelled, not white-balanced RGGB mosaic in [0, 0.9]: a smooth log ramp (3e-4 … 0.9)
    with shading, a row of flat patches from 5e-4 to 0.85, and a bottom third of texture (fine
    random texture at ±30 % and a 16-pixel checkerboard with hard edges)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    scene = np.exp(np.log(3e-4) + (np.log(0.9) - np.log(3e-4)) * x / width) * (0.8 + 0.2 * np.cos(2 * np.pi * y / height))
    ph, pw = height // 6, width // 9
    for i, level in enumerate((5e-4, 2e-3, 0.01, 0.05, 0.2, 0.5, 0.85)):
        scene[ph // 2 : ph // 2 + ph, (i + 1) * pw : (i + 1) * pw + pw * 3 // 4] = level
    lower = slice(2 * height // 3, height)
    texture = _blur(rng.standard_normal((height - 2 * height // 3, width)), 1.2)
    scene[lower] *= 1.0 + 0.3 * texture / texture.std()
    check = ((y[lower] // 16 + x[lower] // 16) % 2).astype(bool)
    scene[lower][:, : width // 3][check[:, : width // 3]] = 0.4
    gains = np.array([[0.55, 1.0], [1.0, 0.7]])  # R, G / G, B sensitivities before white balance
    return np.clip(scene * np.tile(gains, (height // 2, width // 2)), 0.0, 0.9)


def noisy_dn(clean: np.ndarray, a: float, b: float, seed: int = 0) -> tuple[np.ndarray, float, float]:
    """Poisson (electrons = x / a) plus Gaussian read noise, quantised to 14-bit DN → (uint16, black, white)."""
    rng = np.random.default_rng(seed)
    x = rng.poisson(clean / a) * a + rng.normal(0.0, np.sqrt(b), clean.shape)
    dn = np.clip(np.round(x * (_WHITE - _BLACK) + _BLACK), 0, _WHITE)
    return dn.astype(np.uint16), _BLACK, _WHITE


def _quantised_b(b: float) -> float:
    """Rounding to DN adds 1/12 DN² of read variance (3.3e-10 at 14 bits: 10 % of ISO 100's b)."""
    return b + 1.0 / 12.0 / (_WHITE - _BLACK) ** 2


def _frame(mosaic: np.ndarray, black: float = _BLACK, white: float = _WHITE):
    from raw2rgb_plugin.io.raw_file import BayerFrame

    return BayerFrame(path=Path("synthetic.dng"), mosaic=mosaic, cfa_pattern="RGGB",
                      black_level_per_site=np.full((2, 2), black, np.float32), white_level=white,
                      wb_gains_rgb=np.ones(3, np.float32), wb_source="as-shot",
                      camera_to_srgb=np.eye(3, dtype=np.float32), matrix_source="identity", flip=0)


def _textured_everywhere(height: int = 512, width: int = 768, seed: int = 0) -> np.ndarray:
    """1/f texture at every scale down to the pixel: no flat block anywhere."""
    rng = np.random.default_rng(seed)
    t = sum(_blur(rng.standard_normal((height, width)), s) * s for s in (1, 2, 4, 8, 16, 32, 64))
    t = (t - t.min()) / (t.max() - t.min())
    return np.clip(0.002 + 0.85 * t**2.2, 0.0, 0.9)


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return natural_mosaic(768, 1152)


def _raw_levels():
    from raw2rgb_plugin.io.noise_profile import iso_prior

    # darktable's raw medians (the doc's ×1/0.084), plus the doc's ISO-100 numbers as printed: a
    # 12× cleaner sensor than any real one, the hardest case for texture.
    return [(iso, iso_prior(iso).shot, iso_prior(iso).read) for iso in (100, 1600, 12800)] + [(0, 3.4e-6, 3.4e-9)]


# --- the estimator ---------------------------------------------------------------------------

@pytest.mark.parametrize("iso,a,b", _raw_levels())
def test_estimator_recovers_known_noise(scene, iso, a, b):
    """a within ±15 % and b within ±15 % (measured over 6 seeds: a +1…+8 %, b −4…+3 %)."""
    dn, black, white = noisy_dn(scene, a, b, seed=iso)
    start = time.perf_counter()
    est = estimate_poisson_gaussian(dn, black_level_per_site=np.full((2, 2), black), white_level=white)
    elapsed = time.perf_counter() - start
    assert est.usable, est.reason
    assert abs(est.a / a - 1) < 0.15, (est.a, a)
    assert abs(est.b / _quantised_b(b) - 1) < 0.15, (est.b, _quantised_b(b))
    assert elapsed < 1.0  # ~25 ms on one core


def test_estimator_on_clamped_packed_tensor(scene):
    """levels_normalize output (clipped at 0), packed: zeros are not noise, a still within ±15 %."""
    from raw2rgb_plugin.pipeline.normalization import levels_normalize
    from raw2rgb_plugin.pipeline.packing import pack_rggb

    a, b = _raw_levels()[1][1:]
    dn, black, white = noisy_dn(scene, a, b, seed=3)
    packed = pack_rggb(levels_normalize(torch.from_numpy(dn.astype(np.int32)), np.full((2, 2), black), white))
    est = estimate_poisson_gaussian(packed[None])
    assert est.usable and abs(est.a / a - 1) < 0.15


def test_estimator_with_fixed_read_term(scene):
    a, b = _raw_levels()[0][1:]
    dn, black, white = noisy_dn(scene, a, b, seed=5)
    est = estimate_poisson_gaussian(dn, black_level_per_site=np.full((2, 2), black), white_level=white,
                                    fixed_b=_quantised_b(b))
    assert est.usable and est.b == pytest.approx(_quantised_b(b)) and abs(est.a / a - 1) < 0.15


def test_estimator_refuses_texture_everywhere():
    """Where every block is texture the line would be 1.7–13× too steep: it must say so instead."""
    dn, black, white = noisy_dn(_textured_everywhere(), 4e-4, 1.5e-6)
    est = estimate_poisson_gaussian(dn, black_level_per_site=np.full((2, 2), black), white_level=white)
    assert not est.usable and "flat" in est.reason


def test_estimator_is_fast_on_24_megapixels(scene):
    dn, black, white = noisy_dn(scene[:750, :1000], 4.4e-4, 1.5e-6)
    big = np.tile(dn, (16 // 3 + 1, 6))[:4000, :6000]
    start = time.perf_counter()
    est = estimate_poisson_gaussian(big, black_level_per_site=np.full((2, 2), black), white_level=white)
    elapsed = time.perf_counter() - start
    assert est.usable
    assert elapsed < 0.5, f"{elapsed:.2f} s"  # 0.14 s measured on one core


# --- model and sigma map ---------------------------------------------------------------------

def test_sigma_map_matches_formula():
    x = torch.rand(2, 4, 8, 8) * 1.2 - 0.1
    model = NoiseModel(a=(1e-3, 2e-3, 3e-3), b=(1e-6, 2e-6, 3e-6), source="test")
    expected_a = torch.tensor([1e-3, 2e-3, 2e-3, 3e-3]).view(4, 1, 1)
    expected_b = torch.tensor([1e-6, 2e-6, 2e-6, 3e-6]).view(4, 1, 1)
    torch.testing.assert_close(sigma_map(x, model), (expected_a * x.clamp(min=0) + expected_b).sqrt())

    single = NoiseModel(a=(4e-4,), b=(1e-6,), source="test")
    arr = np.linspace(-0.1, 1.0, 50, dtype=np.float32).reshape(5, 10)
    np.testing.assert_allclose(sigma_map(arr, single), np.sqrt(4e-4 * np.maximum(arr, 0) + 1e-6), rtol=1e-6)

    mosaic = torch.full((4, 4), 0.5)
    out = sigma_map(mosaic, model, cfa_pattern="GRBG")
    assert out[0, 0] == pytest.approx((2e-3 * 0.5 + 2e-6) ** 0.5) and out[0, 1] == pytest.approx((1e-3 * 0.5 + 1e-6) ** 0.5)
    with pytest.raises(ValueError):
        sigma_map(mosaic, model)
    with pytest.raises(ValueError):
        NoiseModel(a=(-1.0,), b=(0.0,), source="test")


# --- darktable profiles, ISO prior, fallbacks --------------------------------------------------

def _write_profiles(path: Path) -> Path:
    profiles = [
        {"name": "x 100", "iso": 100, "a": [9e-6, 1e-6, 9e-6], "b": [1e-9, 2e-9, 1e-9]},
        {"name": "x 400", "iso": 400, "a": [9e-6, 4e-6, 9e-6], "b": [1e-9, 8e-9, 1e-9]},
        {"name": "x 800 bad", "iso": 800, "a": [1.0, 1.0, 1.0], "b": [1.0, 1.0, 1.0], "skip": True},
        {"name": "x 1600", "iso": 1600, "a": [9e-6, 1.6e-5, 9e-6], "b": [1e-9, -5e-9, 1e-9]},
    ]
    data = {"version": 0, "noiseprofiles": [
        {"maker": "Nikon", "models": [{"comment": "", "model": "D850", "profiles": profiles}]},
        {"maker": "Pentax", "models": [{"comment": "", "model": "K-3 II", "profiles": profiles[:1]}]},
    ]}
    path.write_text(__import__("json").dumps(data))
    return path


def test_darktable_lookup_interpolates_and_converts(tmp_path):
    from raw2rgb_plugin.io.noise_profile import DARKTABLE_TO_RAW, darktable_noise_model, read_term_for_shot

    path = _write_profiles(tmp_path / "noiseprofiles.json")
    at_250 = darktable_noise_model("NIKON CORPORATION", "NIKON D850", 250, path)
    assert at_250.source == "darktable profile"
    assert at_250.shot == pytest.approx(2.5e-6 * DARKTABLE_TO_RAW)  # green only, linear in ISO
    assert at_250.read == pytest.approx(5e-9 * DARKTABLE_TO_RAW)
    # the skipped ISO-800 profile is ignored; above the range it scales with ISO
    assert darktable_noise_model("nikon", "d850", 800, path).shot == pytest.approx(
        (4e-6 + (1.6e-5 - 4e-6) * 400 / 1200) * DARKTABLE_TO_RAW)
    high = darktable_noise_model("Nikon", "D850", 3200, path)
    assert high.shot == pytest.approx(3.2e-5 * DARKTABLE_TO_RAW)
    assert high.read == pytest.approx(read_term_for_shot(high.shot))  # darktable's b ≤ 0 is replaced
    assert darktable_noise_model("Nikon", "NIKON D850", 50, path).shot == pytest.approx(0.5e-6 * DARKTABLE_TO_RAW)
    assert darktable_noise_model("RICOH IMAGING COMPANY, LTD.", "PENTAX K-3 II", 100, path) is not None
    assert darktable_noise_model("Nikon", "D85", 100, path) is None
    assert darktable_noise_model("Nikon", "D850", None, path) is None
    assert darktable_noise_model("Nikon", "D850", 100, tmp_path / "absent.json") is None


def test_darktable_installed_profile_has_the_right_magnitude():
    """Nikon D850 at ISO 800: a full well of ~57 k electrons at ISO 64 leaves 4.6 k at white at
    ISO 800, so a ≈ 1 / 4600 = 2.2e-4 per raw pixel; the converted profile must be within ×2."""
    from raw2rgb_plugin.io.noise_profile import darktable_noise_model, darktable_profiles_path

    if darktable_profiles_path() is None:
        pytest.skip("darktable's noiseprofiles.json is not installed")
    model = darktable_noise_model("NIKON CORPORATION", "NIKON D850", 800)
    assert model is not None and model.source == "darktable profile"
    assert 1.1e-4 < model.shot < 4.4e-4 and 0 < model.read < model.shot


def test_iso_prior_is_monotonic_and_matches_the_medians():
    from raw2rgb_plugin.io.noise_profile import DARKTABLE_TO_RAW, iso_prior

    isos = [25, 50, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 204800]
    a = [iso_prior(i).shot for i in isos]
    b = [iso_prior(i).read for i in isos]
    assert all(x < y for x, y in zip(a, a[1:])) and all(x < y for x, y in zip(b, b[1:]))
    assert iso_prior(1600).shot == pytest.approx(3.7e-5 * DARKTABLE_TO_RAW)
    assert iso_prior(12800).read == pytest.approx(1.8e-6 * DARKTABLE_TO_RAW)
    assert iso_prior(100).source == "ISO prior"


def test_noise_model_for_falls_back_in_order(tmp_path, scene):
    from raw2rgb_plugin.io.exif_read import PhotoMetadata
    from raw2rgb_plugin.io.noise_profile import noise_model_for

    profiles = _write_profiles(tmp_path / "noiseprofiles.json")
    a, b = _raw_levels()[1][1:]
    frame = _frame(noisy_dn(scene, a, b, seed=7)[0])
    meta = PhotoMetadata(make="NIKON CORPORATION", model="NIKON D850", iso=400)
    assert noise_model_for(frame, meta, darktable_path=profiles).source == "darktable profile"
    unknown = PhotoMetadata(make="Nobody", model="Camera 1", iso=1600)
    estimate = noise_model_for(frame, unknown, darktable_path=profiles)
    assert estimate.source == "image estimate" and abs(estimate.shot / a - 1) < 0.15
    textured = _frame(noisy_dn(_textured_everywhere(), a, b)[0])
    prior = noise_model_for(textured, unknown, darktable_path=profiles)
    assert prior.source == "ISO prior" and "unusable" in prior.detail
    default = noise_model_for(textured, None, use_darktable=False)
    assert default.source == "default" and default.iso is None


def test_optical_black_ignores_banding_and_hot_pixels():
    """A fake LibRaw object: 40-column masked margin with σ = 3 DN noise, ±20 DN row banding and a
    few hot pixels; the read variance must come back within ±5 %."""
    from types import SimpleNamespace

    from raw2rgb_plugin.io.noise_profile import optical_black_read_variance

    rng = np.random.default_rng(0)
    full = np.full((600, 840), 2048.0) + rng.normal(0, 3.0, (600, 840)) + rng.normal(0, 20.0, (600, 1))
    full[rng.integers(0, 600, 30), rng.integers(0, 40, 30)] = 16000
    frame = _frame(np.zeros((600, 800), np.uint16), black=2048.0)
    raw = SimpleNamespace(raw_image=np.round(full).astype(np.uint16), raw_colors=np.tile([[0, 1], [3, 2]], (300, 420)),
                          sizes=SimpleNamespace(top_margin=0, left_margin=40), black_level_per_channel=[2048] * 4)
    variance = optical_black_read_variance(raw, frame)
    expected = (9.0 + 1 / 12) / (_WHITE - 2048.0) ** 2
    assert variance == pytest.approx(expected, rel=0.05)
    raw.black_level_per_channel = [0] * 4  # margin far above black: not optical black
    assert optical_black_read_variance(raw, frame) is None


def test_real_files(shared_data):
    """Canon D30 (ISO 100): image estimate with b from its left optical-black margin; Kodak DC50
    (lossy KDC, 768×512): too few flat blocks, so the ISO prior. Neither camera is in darktable."""
    from raw2rgb_plugin.io.exif_read import read_photo_metadata
    from raw2rgb_plugin.io.noise_profile import noise_model_for
    from raw2rgb_plugin.io.raw_file import decode_raw

    results = {}
    for name in ("RAW_CANON_D30_SRGB.CRW", "RAW_KODAK_DC50.KDC"):
        frame, raw = decode_raw(shared_data / "raw" / name, keep_open=True)
        try:
            results[name] = noise_model_for(frame, read_photo_metadata(frame.path, raw), raw)
        finally:
            raw.close()
    d30 = results["RAW_CANON_D30_SRGB.CRW"]
    assert d30.source == "image estimate" and "optical black" in d30.detail
    assert 2.4e-5 < d30.shot < 3.6e-5 and 2e-7 < d30.read < 5e-7  # measured 3.0e-5, 3.3e-7 (2.3 DN)
    dc50 = results["RAW_KODAK_DC50.KDC"]
    assert dc50.source == "ISO prior" and dc50.iso == 84


# --- training: camera-realistic sampling -------------------------------------------------------

def test_sampling_ranges_relation_and_clean_fraction():
    from raw2rgb_plugin.training.data.camera_noise import READ_SLOPE, SHOT_RANGE, sample_camera_noise

    gen = torch.Generator().manual_seed(0)
    a, b = sample_camera_noise(20000, gen, clean_fraction=0.25)
    clean = a == 0
    assert abs(clean.float().mean().item() - 0.25) < 0.015 and torch.all(b[clean] == 0)
    noisy_a, noisy_b = a[~clean].double(), b[~clean].double()
    assert noisy_a.min() >= SHOT_RANGE[0] * 0.999 and noisy_a.max() <= SHOT_RANGE[1] * 1.001
    slope = np.polyfit(noisy_a.log().numpy(), noisy_b.log().numpy(), 1)[0]
    assert abs(slope - READ_SLOPE) < 0.05
    none_clean, _ = sample_camera_noise(1000, gen, clean_fraction=0.0)
    assert torch.all(none_clean > 0)
    with pytest.raises(ValueError):
        sample_camera_noise(4, gen, clean_fraction=1.5)


def test_numpy_sampler_matches_ranges():
    from raw2rgb_plugin.training.data.camera_noise import SHOT_RANGE, sample_camera_noise_np

    rng = np.random.default_rng(1)
    pairs = np.array([sample_camera_noise_np(rng, clean_fraction=0.5) for _ in range(4000)])
    clean = pairs[:, 0] == 0
    assert abs(clean.mean() - 0.5) < 0.04
    assert pairs[~clean, 0].min() >= SHOT_RANGE[0] and pairs[~clean, 0].max() <= SHOT_RANGE[1]


def test_add_noise_has_the_requested_variance_per_sample():
    from raw2rgb_plugin.training.data.camera_noise import add_noise

    gen = torch.Generator().manual_seed(2)
    levels = torch.tensor([0.05, 0.3, 0.6]).view(3, 1, 1, 1).expand(3, 4, 128, 128).contiguous()
    a = torch.tensor([1e-4, 1e-3, 5e-3])
    b = torch.tensor([1e-6, 1e-5, 0.0])
    noisy = add_noise(levels, a, b, gen, clip=False)
    measured = (noisy - levels).var(dim=(1, 2, 3))
    expected = a * levels[:, 0, 0, 0] + b
    torch.testing.assert_close(measured, expected, rtol=0.05, atol=0.0)
    clipped = add_noise(torch.zeros(2, 4, 8, 8), 1e-2, 1e-2, gen)
    assert clipped.min() >= 0 and clipped.max() <= 1
    assert torch.equal(add_noise(levels, 0.0, 0.0, gen), levels)


@pytest.mark.parametrize("relative_error, blocks, iso, expected", [
    (0.02, 9000, None, ("image estimate", 1e-3 * (1 - 2 * 0.02))),  # tight: taken at its lower 95 % bound
    (0.12, 9000, None, ("default", None)),  # loose, nothing to check it against: the ISO-400 default
    (0.12, 400, None, ("image estimate", 1e-3 * (1 - 2 * 0.12))),  # a small frame is allowed 5/√400 = 25 %
    (0.12, 9000, 3200.0, ("image estimate", 1e-3)),  # loose, but the ISO bounds it (16× the prior)
])
def test_without_an_iso_only_a_tight_estimate_is_trusted(monkeypatch, relative_error, blocks, iso, expected):
    """On 19 photographs unprocessed without noise or at ISO 100, the estimates that read texture
    as noise (2–27× the truth) had 6–27 % relative error from thousands of flat blocks; sound ones
    1–4 % (io/noise_profile)."""
    import raw2rgb_plugin.io.noise_profile as noise_profile
    from raw2rgb_plugin.pipeline.noise import NoiseEstimate

    estimate = NoiseEstimate(a=1e-3, b=1e-6, a_stderr=relative_error * 1e-3, b_stderr=1e-7, usable=True, reason="",
                             n_blocks=blocks, bin_means=np.linspace(0.1, 0.8, 20), bin_variances=np.ones(20),
                             bin_used=np.ones(20, bool))
    monkeypatch.setattr(noise_profile, "estimate_poisson_gaussian", lambda *a, **k: estimate)
    model, why = noise_profile.image_noise_model(_frame(np.zeros((64, 64), np.uint16)), None, iso)
    source, shot = expected
    if source == "default":
        assert model is None and "too uncertain to trust without an ISO" in why
    else:
        assert model is not None and model.shot == pytest.approx(shot)
