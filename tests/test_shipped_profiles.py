"""The profiles shipped in the package: loadable, documented, and real converters (not random)."""

from __future__ import annotations

import numpy as np
import pytest
import rawpy

from raw2rgb_plugin.engine.converter import Converter
from raw2rgb_plugin.io.raw_file import decode_raw
from raw2rgb_plugin.profiles.store import SHIPPED_PROFILE_DIR, load_profile

SHIPPED = sorted(SHIPPED_PROFILE_DIR.glob("*.safetensors"))


def test_a_default_profile_and_a_dng_profile_ship():
    assert {"default-lite", "develop-lite"} <= {p.stem for p in SHIPPED}
    assert load_profile("develop-lite").metadata["output"] == "scene-linear"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_profile_has_provenance_and_a_model_card(path):
    profile = load_profile(path)
    training = profile.metadata["training"]
    assert training["steps"] > 0 and training["command_line"] and training["validation"]["psnr"] > 0
    assert training["dataset"]["manifest"]["kind"] in ("synthetic", "synthetic-on-the-fly")
    # one profile for every camera: normalised colour, or white-balanced camera RGB for a DNG
    assert profile.metadata["input_normalization"] in ("wb+ccm", "linear-srgb", "wb-headroom")
    assert path.with_suffix(".md").is_file(), "each shipped profile has a model card beside it"


def test_default_lite_renders_the_example_like_a_raw_converter(repo_root):
    """A random-weight network gives ~10 dB against a classical rendering; a trained one > 20 dB."""
    example = repo_root / "examples" / "astronaut.dng"
    ours = Converter(load_profile("default-lite"), device="cpu").render(decode_raw(example)).astype(np.float64)
    with rawpy.imread(str(example)) as raw:
        classical = raw.postprocess(use_camera_wb=True, output_bps=16, no_auto_bright=True).astype(np.float64)
    assert ours.shape == classical.shape == (512, 512, 3)
    mse = np.mean((ours / 65535 - classical / 65535) ** 2)
    assert 10 * np.log10(1 / mse) > 20


NOISE_AWARE = [p for p in SHIPPED if load_profile(p).metadata["architecture"].get("noise_channels")]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOISE_AWARE, ids=lambda p: p.stem)
def test_denoise_strength_has_a_clear_monotonic_effect(path, tmp_path):
    """--denoise 0 keeps the most high-frequency energy (detail and grain), 2 the least."""
    import torch

    from raw2rgb_plugin.pipeline.cfa import xtrans_pattern
    from raw2rgb_plugin.training.data.unprocess import random_params, write_synthetic_dng

    from helpers import smooth_scene

    rng = np.random.default_rng(4)
    pattern = xtrans_pattern() if load_profile(path).cfa == "xtrans" else "RGGB"  # the profile's own sensor
    params = random_params(rng, cfa_pattern=pattern, noise=False)
    params = params.__class__(**{**params.__dict__, "shot_noise": 1e-3, "read_noise": 2e-5})  # ~ISO 3200
    scene = smooth_scene(192, 192, seed=4)
    write_synthetic_dng(scene, tmp_path / "noisy.dng", rng, params=params)
    from raw2rgb_plugin.io.raw_file import RawFile

    with RawFile(tmp_path / "noisy.dng") as raw:  # a Bayer or an X-Trans frame
        frame = raw.mosaic_frame
    energy = []
    for strength in (0.0, 1.0, 2.0):
        rgb = Converter(load_profile(path), device="cpu", denoise=strength).render(frame).astype(np.float64) / 65535
        luma = torch.from_numpy(rgb.mean(axis=2))[None, None]
        laplacian = torch.nn.functional.conv2d(luma, torch.tensor([[[[0, 1, 0], [1, -4, 1], [0, 1, 0]]]], dtype=luma.dtype))
        energy.append(float((laplacian**2).mean()))
    assert energy[0] > energy[1] > energy[2], energy
    assert energy[0] > 1.2 * energy[2], "the effect must be clear, not a rounding difference"


def test_develop_lite_writes_a_dng_libraw_renders_like_its_source(repo_root, tmp_path):
    """The shipped scene-linear profile, end to end: its DNG of the example renders in the
    example's colours (a random-weight network would be far off; the classical path gives ~0.2)."""
    from raw2rgb_plugin.engine.jobs import ConvertJob
    from raw2rgb_plugin.training.color_difference import delta_e2000, linear_srgb_to_lab

    example = repo_root / "examples" / "astronaut.dng"
    converter = Converter(load_profile("develop-lite"), device="cpu", output_format="dng")
    [result] = converter.convert([ConvertJob(example, tmp_path / "astronaut.dng")])
    assert result.status == "converted", result.error

    def render(path):
        with rawpy.imread(str(path)) as raw:
            rgb = raw.postprocess(use_camera_wb=True, no_auto_bright=True, gamma=(1, 1), output_bps=16,
                                  adjust_maximum_thr=0.0, output_color=rawpy.ColorSpace.sRGB)
        return rgb.reshape(64, 8, 64, 8, 3).mean(axis=(1, 3)) / 65535.0

    delta = np.median(delta_e2000(linear_srgb_to_lab(render(result.output)), linear_srgb_to_lab(render(example))))
    assert delta <= 3.0, delta


def _xtrans_scene_file(folder, seed: int):
    """(scene, path): a smooth sRGB scene unprocessed into a clean X-Trans DNG in `folder`."""
    from raw2rgb_plugin.pipeline.cfa import xtrans_pattern
    from raw2rgb_plugin.training.data.unprocess import random_params, write_synthetic_dng

    from helpers import smooth_scene

    scene = smooth_scene(96, 120, seed=seed)
    rng = np.random.default_rng(seed)
    params = random_params(rng, cfa_pattern=xtrans_pattern(1, 2), noise=False)
    write_synthetic_dng(scene, folder / "scene.dng", rng, params=params)
    return scene, folder / "scene.dng"


def test_xtrans_lite_is_picked_for_xtrans_files_and_renders_a_scene_close_to_itself(tmp_path):
    """The shipped X-Trans profile: `convert` picks it by the file's sensor, and an sRGB scene
    unprocessed into a clean X-Trans DNG comes back close to itself (measured 41.2 dB; a random
    network gives ~10, a phase or colour slip under 20)."""
    from raw2rgb_plugin.io.raw_file import RawFile
    from raw2rgb_plugin.pipeline.metrics import image_psnr
    from raw2rgb_plugin.profiles.catalog import installed_default

    assert installed_default("cpu", "xtrans") == installed_default("cuda", "xtrans") == "xtrans-lite"
    profile = load_profile("xtrans-lite")
    assert profile.cfa == "xtrans" and profile.metadata["output"] == "display"
    scene, path = _xtrans_scene_file(tmp_path, seed=3)
    with RawFile(path) as raw:
        frame = raw.mosaic_frame
    pixels = Converter(profile, device="cpu").render(frame) / 65535.0
    inner = (slice(6, -6), slice(6, -6))
    assert image_psnr(pixels[inner], scene[inner]) >= 30.0


def test_xtrans_develop_lite_writes_an_xtrans_files_dng_that_libraw_renders_as_the_scene(tmp_path):
    """The shipped scene-linear X-Trans profile is what `--format dng` picks for an X-Trans file,
    and the linear DNG it writes, developed by LibRaw with the scene's tone curve, is the scene
    (measured 42.8 dB; a random network gives ~10, a phase, colour or white-balance slip under
    20). The input is never touched."""
    import json

    from typer.testing import CliRunner

    from raw2rgb_cli.main import app
    from raw2rgb_plugin.pipeline.metrics import image_psnr
    from raw2rgb_plugin.profiles.catalog import installed_default

    assert installed_default("cpu", "xtrans", "dng") == installed_default("cuda", "xtrans", "dng") == "xtrans-develop-lite"
    profile = load_profile("xtrans-develop-lite")
    assert profile.cfa == "xtrans" and profile.metadata["output"] == "scene-linear"
    scene, path = _xtrans_scene_file(tmp_path, seed=5)
    before = path.read_bytes()
    result = CliRunner().invoke(app, ["convert", str(path), "-o", str(tmp_path / "out"), "--format", "dng", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    [entry] = json.loads(result.stdout)["files"]
    assert entry["status"] == "converted" and entry["profile"] == "xtrans-develop-lite", entry
    with rawpy.imread(str(tmp_path / "out" / "scene.dng")) as raw:
        assert raw.raw_type == rawpy.RawType.Stack
        developed = raw.postprocess(use_camera_wb=True, no_auto_bright=True, output_bps=16, adjust_maximum_thr=0.0,
                                    output_color=rawpy.ColorSpace.sRGB, gamma=(2.4, 12.92)) / 65535.0
    developed = 3 * developed**2 - 2 * developed**3  # the tone curve the synthetic scene was unprocessed through
    inner = (slice(6, -6), slice(6, -6))
    assert image_psnr(developed[inner], scene[inner]) >= 30.0
    assert path.read_bytes() == before


def test_without_a_scene_linear_xtrans_profile_dng_is_refused_in_one_line_pointing_to_the_tiff(
        without_shipped_xtrans_develop):
    from raw2rgb_plugin.engine.converter import cfa_refusal
    from raw2rgb_plugin.profiles.catalog import installed_default

    assert installed_default("cpu", "xtrans", "dng") is None
    assert str(cfa_refusal("xtrans", None, "bayer", "dng")) == (
        "is an X-Trans RAW (Fujifilm's 6×6 colour filter array), and no scene-linear X-Trans profile is installed "
        "for --format dng — convert it to a TIFF (without --format dng: xtrans-lite renders it), or develop the RAW "
        "itself in darktable or RawTherapee")
