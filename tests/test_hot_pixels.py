"""Stuck sites (hot and dead pixels): found against their neighbours and replaced before G1."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch
from typer.testing import CliRunner

from raw2rgb_cli.main import app
from raw2rgb_plugin.io.dng_write import write_bayer_dng
from raw2rgb_plugin.io.noise_profile import noise_model_for
from raw2rgb_plugin.io.raw_file import RawFile
from raw2rgb_plugin.pipeline import hot_pixels
from raw2rgb_plugin.pipeline.hot_pixels import repair_stuck_sites
from raw2rgb_plugin.pipeline.noise import NoiseModel
from raw2rgb_plugin.pipeline.normalization import levels_normalize
from raw2rgb_plugin.training.data.unprocess import mosaic_rgb

from helpers import CUDA_PARAM, TEST_XYZ_TO_CAMERA, make_classical_develop_profile, smooth_scene

ORDERS = ["RGGB", "BGGR", "GRBG", "GBRG"]
#: darktable's median camera at ISO 100 in raw units (io/noise_profile.iso_prior(100))
BASE_ISO = NoiseModel.of(4.05e-5, 4.05e-8)
BLACK, WHITE = 64, 4095


def noisy_mosaic(cfa: str, height: int = 96, width: int = 128, seed: int = 0,
                 noise: NoiseModel = BASE_ISO) -> np.ndarray:
    """A levelled float32 mosaic of a smooth scene with Poisson–Gaussian noise. Its colours change
    over ~60 sites: steeper colour gradients defeat test 2 for a site only 0.2 too bright."""
    scene = smooth_scene(2 * height, 2 * width, seed)[:height, :width]
    clean = mosaic_rgb(scene * [0.5, 1.0, 0.625], cfa)
    rng = np.random.default_rng(seed)
    noisy = clean + rng.standard_normal(clean.shape) * np.sqrt(noise.shot * clean + noise.read)
    return np.clip(noisy, 0, 1).astype(np.float32)


def stuck_sites(shape: tuple[int, int]) -> dict[tuple[int, int], float]:
    """Hot (white) and dead (black) sites on all four 2×2 phases, on the edges and corners and
    inside, and warm ones (+0.2, marked -1) inside; all at least 4 sites apart (alone)."""
    h, w = shape
    edges = [(0, 0), (1, 5), (h - 1, w - 1), (h - 2, 9), (14, w - 2), (20, 0), (0, 33), (h - 1, 60)]
    inside = [(y, x) for y in range(30, h - 8, 13) for x in range(12, w - 8, 11)]
    sites = {site: (1.0, 0.0)[k % 2] for k, site in enumerate(edges)}
    sites.update({site: (1.0, 0.0, -1.0)[k % 3] for k, site in enumerate(inside)})
    return sites


def inject(clean: np.ndarray, sites: dict[tuple[int, int], float]) -> np.ndarray:
    stuck = clean.copy()
    for (y, x), value in sites.items():
        stuck[y, x] = min(clean[y, x] + 0.2, 1.0) if value < 0 else value
    return stuck


@pytest.mark.parametrize("cfa", ORDERS)
def test_every_injected_stuck_site_is_replaced_near_the_truth_and_nothing_else(cfa):
    clean = noisy_mosaic(cfa)
    sites = stuck_sites(clean.shape)
    phases = {(y % 2, x % 2) for y, x in sites}
    assert phases == {(0, 0), (0, 1), (1, 0), (1, 1)}  # every CFA colour
    stuck = inject(clean, sites)
    repaired = torch.from_numpy(stuck.copy())
    assert repair_stuck_sites(repaired, cfa, BASE_ISO) == len(sites)
    repaired_np = repaired.numpy()
    where = tuple(np.array(list(sites)).T)
    assert np.abs(stuck[where] - clean[where]).min() > 0.05  # what they were: far off
    # Each replaced by its neighbours' estimate: inside within a few noise σ of the true value; on
    # an edge, with neighbours on one side only, within a step of the scene's gradient.
    error = np.abs(repaired_np[where] - clean[where])
    inside = np.array([2 < y < clean.shape[0] - 3 and 2 < x < clean.shape[1] - 3 for y, x in sites])
    assert error[inside].max() < 0.02 and error.max() < 0.05
    elsewhere = np.ones(clean.shape, dtype=bool)
    elsewhere[where] = False
    assert np.array_equal(repaired_np[elsewhere], stuck[elsewhere])


@pytest.mark.parametrize("noise", [BASE_ISO, NoiseModel.of(1.7e-3, 9.5e-6), None], ids=["iso100", "iso6400", "unknown"])
def test_a_clean_frame_has_no_stuck_sites(noise):
    for seed, cfa in enumerate(ORDERS):
        frame = torch.from_numpy(noisy_mosaic(cfa, 160, 224, seed=seed, noise=noise or BASE_ISO))
        before = frame.clone()
        assert repair_stuck_sites(frame, cfa, noise) == 0
        assert torch.equal(frame, before)


def test_small_points_of_light_and_clusters_are_kept():
    # A star through a lens (here a Gaussian of σ 0.7–0.8 sites, FWHM 1.6+) lights its
    # neighbours of every colour, even centred on one site; two stuck sites side by side are a
    # cluster. (Points narrower than σ 0.6 centred on a site can be taken for a stuck one.)
    clean = noisy_mosaic("RGGB", 96, 96)
    scene = clean.copy()
    y, x = np.mgrid[0:96, 0:96]
    for cy, cx, sigma, peak in ((30.5, 30.5, 0.7, 0.8), (60.2, 40.7, 0.8, 3.0), (20.0, 70.0, 0.7, 0.3),
                                (41.0, 41.0, 0.7, 0.8), (80.0, 20.0, 0.75, 2.0)):
        scene += peak * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2))
    scene[70, 70] = scene[70, 72] = 1.0  # two red sites, neighbours in their plane
    scene[10, 50] = scene[10, 51] = 1.0  # a red and a green site side by side
    scene = np.clip(scene, 0, 1).astype(np.float32)
    frame = torch.from_numpy(scene.copy())
    assert repair_stuck_sites(frame, "RGGB", BASE_ISO) == 0
    # The same frame with one lone hot site: found (so the test above can fail).
    scene[50, 10] = 1.0
    assert repair_stuck_sites(torch.from_numpy(scene), "RGGB", BASE_ISO) == 1


def blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def busy_texture(cfa: str, seed: int) -> np.ndarray:
    """Fine grey texture (white noise blurred by σ 1 site, ±0.25) under a slowly varying tint."""
    rng = np.random.default_rng(seed)
    luminance = blurred(rng.standard_normal((160, 224)), 1.0)
    luminance = 0.35 + 0.25 * luminance / luminance.std()
    tint = 1 + 0.3 * np.stack([blurred(rng.standard_normal((160, 224)), 8) for _ in range(3)], -1)
    clean = mosaic_rgb(np.clip(luminance[..., None] * tint * [0.5, 1.0, 0.625], 0, 1), cfa)
    noisy = clean + rng.standard_normal(clean.shape) * np.sqrt(BASE_ISO.shot * clean + BASE_ISO.read)
    return np.clip(noisy, 0, 1).astype(np.float32)


def finds_in_texture() -> int:
    return sum(repair_stuck_sites(torch.from_numpy(busy_texture(cfa, seed)), cfa, BASE_ISO)
               for seed, cfa in enumerate(ORDERS))


def test_fine_texture_is_left_alone_and_each_test_is_needed_for_that(monkeypatch):
    assert finds_in_texture() <= 3  # of 143 360 sites
    for switched_off in ({"K_RANGE": 0.0}, {"K_CD": 0.0, "K_REL": 0.0}, {"K_ALONE": 0.0}):
        with monkeypatch.context() as patch:
            for name, value in switched_off.items():
                patch.setattr(hot_pixels, name, value)
            assert finds_in_texture() >= 5, switched_off


def test_the_candidate_pass_only_saves_time():
    # The full-frame pass is a necessary condition of the tests: judging every site gives the same.
    stuck = inject(noisy_mosaic("GRBG", 64, 80, seed=3), stuck_sites((64, 80)))
    frame = torch.from_numpy(stuck)
    a, b = BASE_ISO.shot, BASE_ISO.read
    ys, xs = hot_pixels._candidates(frame, a, b)
    every = torch.nonzero(torch.ones_like(frame, dtype=torch.bool), as_tuple=True)

    def found(rows, cols) -> set:
        stuck_rows, _ = hot_pixels._judge(hot_pixels._windows(frame, rows, cols),
                                          hot_pixels._green_ring("GRBG", rows, cols), a, b)
        return set(zip(rows[stuck_rows].tolist(), cols[stuck_rows].tolist()))

    assert len(ys) < frame.numel() // 4
    assert found(ys, xs) == found(*every) == set(stuck_sites((64, 80)))


def test_frames_too_small_to_judge_are_left_alone():
    frame = torch.full((5, 40), 0.3)
    frame[2, 20] = 1.0
    assert repair_stuck_sites(frame, "RGGB") == 0 and frame[2, 20] == 1.0


def test_real_photographs_have_few_stuck_sites(shared_data):
    # Both files are old sensors that may have real ones; what matters is that photographs do
    # not lose detail by the hundred (measured: 58 of 3.2 M sites on the D30, 1 on the DC50).
    for name in ("RAW_CANON_D30_SRGB.CRW", "RAW_KODAK_DC50.KDC"):
        with RawFile(shared_data / "raw" / name) as raw:
            frame, noise = raw.frame, noise_model_for(raw.frame, raw.metadata, raw.libraw)
        levelled = levels_normalize(torch.from_numpy(frame.mosaic.astype(np.int32)), frame.black_level_per_site,
                                    frame.white_level)
        assert repair_stuck_sites(levelled, frame.cfa_pattern, noise) <= 30e-6 * levelled.numel(), name


@pytest.mark.parametrize("device", ["cpu", CUDA_PARAM])
def test_the_same_sites_on_every_device(device):
    stuck = inject(noisy_mosaic("BGGR"), stuck_sites((96, 128)))
    on_cpu = torch.from_numpy(stuck.copy())
    on_device = torch.from_numpy(stuck.copy()).to(device)
    assert repair_stuck_sites(on_device, "BGGR", BASE_ISO) == repair_stuck_sites(on_cpu, "BGGR", BASE_ISO)
    assert torch.allclose(on_device.cpu(), on_cpu, atol=1e-6)


# --- through `raw2rgb convert` ----------------------------------------------------------------


@pytest.fixture(scope="module")
def stuck_and_clean_dngs(tmp_path_factory) -> tuple[Path, Path, dict[tuple[int, int], float]]:
    """The same GRBG frame as two DNGs: with stuck sites (`stuck_sites`) and without."""
    folder = tmp_path_factory.mktemp("stuck")
    clean = noisy_mosaic("GRBG")
    sites = stuck_sites(clean.shape)

    def dng(name: str, levelled: np.ndarray) -> Path:
        mosaic = np.round(BLACK + (WHITE - BLACK) * levelled).astype(np.uint16)
        write_bayer_dng(folder / name, mosaic, "GRBG", black_level=BLACK, white_level=WHITE,
                        color_matrix1=TEST_XYZ_TO_CAMERA, as_shot_neutral=[0.5, 1.0, 0.625])
        return folder / name

    return dng("stuck.dng", inject(clean, sites)), dng("clean.dng", clean), sites


def convert(out: Path, dngs, *options: str) -> tuple[dict[str, int | None], dict[str, np.ndarray]]:
    """`raw2rgb convert --json` of both frames → (hot_pixels per file, linear RGB per TIFF file)."""
    stuck, clean, _ = dngs
    result = CliRunner().invoke(app, ["convert", str(stuck), str(clean), "-o", str(out), "--json", "-q", *options])
    assert result.exit_code == 0, result.stdout
    counts = {Path(f["input"]).stem: f["hot_pixels"] for f in json.loads(result.stdout)["files"]}
    images = {p.stem: tifffile.imread(p).astype(np.float64) / 65535 for p in out.glob("*.tif")}
    return counts, images


@pytest.mark.parametrize("output_format", ["tiff", "dng"])
def test_convert_replaces_every_stuck_site_and_counts_them(tmp_path, stuck_and_clean_dngs, output_format):
    # The classical develop profile renders exactly the linear Malvar–He–Cutler demosaic of its
    # input (5×5): what the network would see, with nothing of a network's own.
    profile = make_classical_develop_profile(tmp_path / "develop.safetensors")
    sites = stuck_and_clean_dngs[2]
    on = ["--profile", str(profile), "--format", output_format]
    counts, fixed = convert(tmp_path / "on", stuck_and_clean_dngs, *on)
    assert counts == {"stuck": len(sites), "clean": 0}
    kept_counts, kept = convert(tmp_path / "off", stuck_and_clean_dngs, *on, "--keep-hot-pixels")
    assert kept_counts == {"stuck": None, "clean": None}
    if output_format == "dng":
        return
    where = tuple(np.array(list(sites)).T)
    repaired_error = np.abs(fixed["stuck"] - fixed["clean"])[where].max(axis=-1)
    kept_error = np.abs(kept["stuck"] - kept["clean"])[where].max(axis=-1)
    assert np.median(repaired_error) < 0.2 * np.median(kept_error) and repaired_error.max() < 0.1
    near = np.zeros(fixed["stuck"].shape[:2], dtype=bool)
    for y, x in sites:
        near[max(y - 2, 0):y + 3, max(x - 2, 0):x + 3] = True  # the demosaic's reach
    assert np.array_equal(fixed["stuck"][~near], kept["stuck"][~near])


def test_with_the_shipped_profile_the_rest_of_the_frame_is_unchanged(tmp_path, stuck_and_clean_dngs):
    # G1 spreads a change further than a demosaic: 8 sites away it is below the 50 dB.
    sites = stuck_and_clean_dngs[2]
    _, fixed = convert(tmp_path / "on", stuck_and_clean_dngs, "--profile", "default-lite")
    _, kept = convert(tmp_path / "off", stuck_and_clean_dngs, "--profile", "default-lite", "--keep-hot-pixels")
    near = np.zeros(fixed["stuck"].shape[:2], dtype=bool)
    for y, x in sites:
        near[max(y - 8, 0):y + 9, max(x - 8, 0):x + 9] = True
    assert (~near).mean() > 0.25
    assert psnr(fixed["stuck"][~near], kept["stuck"][~near]) >= 50
    # and the frame as a whole: near the clean frame's rendering with, far from it without
    assert psnr(fixed["stuck"], fixed["clean"]) >= 50 > 40 >= psnr(kept["stuck"], kept["clean"])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1 / max(np.mean((a - b) ** 2), 1e-20)))
