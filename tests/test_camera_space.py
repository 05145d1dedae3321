"""Camera-space display profiles (`network_space: camera`): G1 renders white-balanced camera RGB
from the `wb-headroom` mosaic, and a fixed rendering after it (camera → linear sRGB, clip, sRGB
encoding, the generic tone curve) makes the finished image — demosaicnet's pipeline, and what
X-Trans (no Malvar–He–Cutler for its 6×6 pattern) needs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from raw2rgb_cli.main import app
from raw2rgb_plugin.engine.converter import Converter, check_output_format
from raw2rgb_plugin.errors import ProfileError, Raw2RgbError
from raw2rgb_plugin.io.dng_write import write_bayer_dng
from raw2rgb_plugin.io.raw_file import decode_raw
from raw2rgb_plugin.pipeline.normalization import network_input
from raw2rgb_plugin.profiles.catalog import check_metadata
from raw2rgb_plugin.profiles.store import load_profile
from raw2rgb_plugin.training.data.unprocess import mosaic_rgb as bayer_from_rgb

from helpers import TEST_XYZ_TO_CAMERA, make_tiny_camera_profile, smooth_scene

BLACK, WHITE = 64, 4095
NEUTRAL = [0.5, 1.0, 0.625]  # camera RGB of grey → WB gains 2, 1, 1.6


@pytest.fixture(scope="module")
def camera_profile(tmp_path_factory):
    return make_tiny_camera_profile(tmp_path_factory.mktemp("camera") / "camera-test.safetensors")


def _frame(path, height: int, width: int):
    camera = smooth_scene(height, width, 3) * np.asarray(NEUTRAL)
    mosaic = (BLACK + (WHITE - BLACK) * bayer_from_rgb(camera, "GRBG")).round().astype(np.uint16)
    write_bayer_dng(path, mosaic, "GRBG", black_level=BLACK, white_level=WHITE, color_matrix1=TEST_XYZ_TO_CAMERA,
                    as_shot_neutral=NEUTRAL)
    return decode_raw(path)


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    # GRBG: a column of phase padding each side, cropped before the rendering
    return _frame(tmp_path_factory.mktemp("dng") / "scene.dng", 64, 94)


def _by_hand(profile, frame) -> np.ndarray:
    """G1 on the `wb-headroom` input → crop → × (camera → sRGB × the largest gain) → clip →
    sRGB encoding → 3x² − 2x³ → uint16, written out without the engine's helpers."""
    net_in = network_input(frame, "wb-headroom")
    with torch.no_grad():
        out = profile.model(net_in.packed).double()
    out = net_in.padding.crop(out)[0].numpy()  # (3, H, W) white-balanced camera RGB / max gain
    matrix = np.asarray(frame.camera_to_srgb, dtype=np.float64) * float(np.max(frame.wb_gains_rgb))
    linear = np.clip(np.einsum("ij,jhw->ihw", matrix, out), 0.0, 1.0)
    encoded = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055)
    toned = encoded * encoded * (3.0 - 2.0 * encoded)
    return np.rint(np.clip(toned, 0, 1) * 65535).astype(np.uint16).transpose(1, 2, 0)


def test_the_engine_renders_g1_then_the_fixed_display_rendering(camera_profile, frame):
    profile = load_profile(camera_profile)
    assert profile.network_space == "camera" and profile.output == "display" and not profile.scene_linear
    pixels = Converter(profile, device="cpu", tile=0, keep_hot_pixels=True).render(frame)
    expected = _by_hand(profile, frame)
    assert pixels.shape == expected.shape == (64, 94, 3)
    # The engine renders in float32, the hand path in float64: a level of rounding at most
    # (measured: 1, on 0.4 % of the values, with and without ATEN_CPU_CAPABILITY=default).
    difference = np.abs(pixels.astype(np.int64) - expected.astype(np.int64))
    assert difference.max() <= 2 and difference.mean() < 0.05, (difference.max(), difference.mean())


def test_tiles_equal_the_whole_frame(camera_profile, tmp_path):
    # The rendering is pointwise after the tiles are blended: the bounds of test_convert's tiles.
    frame = _frame(tmp_path / "tiles.dng", 224, 320)
    profile = load_profile(camera_profile)
    whole = Converter(profile, device="cpu", tile=0).render(frame)
    tiled = Converter(profile, device="cpu", tile=96, overlap=64).render(frame)
    difference = np.abs(whole.astype(np.int64) - tiled.astype(np.int64))
    assert difference.max() <= 0.002 * 65535 and difference.mean() < 0.0001 * 65535


def test_a_camera_space_display_profile_is_still_refused_for_dng(camera_profile):
    with pytest.raises(Raw2RgbError, match="finished display image"):
        check_output_format("dng", load_profile(camera_profile))


def test_profiles_show_lists_the_network_space(camera_profile):
    result = CliRunner().invoke(app, ["profiles", "show", str(camera_profile)])
    assert result.exit_code == 0, result.output
    assert "network space: camera" in result.output
    shown = CliRunner().invoke(app, ["profiles", "show", str(camera_profile), "--json"])
    assert json.loads(shown.output)["network_space"] == "camera"


GOOD = {"format_version": 1, "input_normalization": "wb-headroom", "output_color_space": "srgb", "output": "display",
        "architecture": {"name": "g1", "width": 8, "residual_base": "mhc-linear-gated"}, "network_space": "camera"}


@pytest.mark.parametrize(("change", "message"), [
    ({"network_space": "xyz"}, "unknown network space 'xyz'"),
    ({"network_space": 3}, "unknown network space 3"),
    ({"output": "scene-linear", "output_color_space": "camera-linear"}, "network space 'camera' with output 'scene-linear'"),
    ({"input_normalization": "linear-srgb", "architecture": {"name": "g1", "width": 8}},
     "network space 'camera' with output 'display' and 'linear-srgb' input"),
])
def test_bad_network_space_metadata_is_refused_in_one_line(tmp_path, change, message):
    check_metadata(dict(GOOD), tmp_path / "p.safetensors")  # the good one passes
    with pytest.raises(ProfileError, match=message) as caught:
        check_metadata({**GOOD, **change}, tmp_path / "p.safetensors")
    assert "\n" not in str(caught.value)


def test_a_profile_without_the_key_is_srgb(tmp_path):
    check_metadata({k: v for k, v in GOOD.items() if k != "network_space"}, tmp_path / "p.safetensors")
    check_metadata({**GOOD, "network_space": "srgb"}, tmp_path / "p.safetensors")


# --- training ----------------------------------------------------------------------------------


def test_camera_space_pairs_read_the_engines_input_and_render_to_the_display_target(tmp_path):
    """The input is the engine's `wb-headroom` input of the same RAW; the clean camera image the
    mosaic sampled, rendered with the item's `to_srgb` as the engine renders a frame, is the sRGB
    target (bar the highlights, where unprocessing fades the white balance out)."""
    from raw2rgb_plugin.pipeline.metrics import psnr
    from raw2rgb_plugin.pipeline.noise import NoiseModel
    from raw2rgb_plugin.training.data.onthefly import synthesize_pair
    from raw2rgb_plugin.training.data.unprocess import random_params, write_synthetic_dng
    from raw2rgb_plugin.training.losses import camera_display

    rng = np.random.default_rng(5)
    srgb = smooth_scene(64, 96, seed=5)
    params = random_params(rng, cfa_pattern="RGGB", noise=False)
    write_synthetic_dng(srgb, tmp_path / "s.dng", np.random.default_rng(7), params=params)
    engine = network_input(decode_raw(tmp_path / "s.dng"), "wb-headroom", noise=NoiseModel.of(0.0, 0.0)).packed[0]
    item = synthesize_pair(srgb, params, (0.0, 0.0), np.random.default_rng(7), with_noise_map=True, camera_input=True)
    assert torch.allclose(item["raw"], engine, atol=2e-3), (item["raw"] - engine).abs().max()
    assert torch.equal(item["rgb"], torch.from_numpy(srgb.transpose(2, 0, 1)).float())
    clean = synthesize_pair(srgb, params, (0.0, 0.0), np.random.default_rng(7), with_noise_map=False, linear_target=True)
    rendered = camera_display(clean["rgb"][None], item["to_srgb"][None])
    assert float(psnr(rendered, item["rgb"][None])) >= 40


def test_camera_space_needs_pairs_made_on_the_fly_and_a_display_target():
    from raw2rgb_plugin.training.config import TrainConfig, TrainingError

    with pytest.raises(TrainingError, match="pairs made on the fly"):
        TrainConfig(network_space="camera").for_data(synthetic=False)
    config = TrainConfig(network_space="camera").for_data(synthetic=True)
    assert config.input_normalization == "wb-headroom" and config.space == "camera"
    with pytest.raises(TrainingError, match="for display profiles"):
        TrainConfig(network_space="camera", synthetic_output="scene-linear").validate()
    with pytest.raises(TrainingError, match="unknown --network-space 'xyz'"):
        TrainConfig(network_space="xyz").validate()


@pytest.mark.slow  # ~10 s: three tiny runs and a conversion
def test_train_network_space_camera_exports_a_profile_convert_renders(tmp_path, isolated_profile_dir):
    import tifffile
    from PIL import Image

    from raw2rgb_plugin.io.noise_profile import noise_model_for
    from raw2rgb_plugin.pipeline.normalization import display_from_camera

    from helpers import make_tiny_profile

    images = tmp_path / "rgb"
    images.mkdir()
    for i in range(3):
        Image.fromarray((smooth_scene(96, 96, seed=i) * 255).astype(np.uint8)).save(images / f"im{i}.png")
    tiny = ["--variant", "lite", "--no-perceptual", "--stage1-epochs", "1", "--stage2-epochs", "0", "--patch-size", "64",
            "--patches-per-image", "2", "--batch-size", "2", "--max-steps", "2", "--device", "cpu", "--amp", "off"]
    runner = CliRunner()
    trained = runner.invoke(app, ["train", "--synthetic", str(images), "-o", str(tmp_path / "run"), "--profile-name", "cam",
                                  "--network-space", "camera", *tiny])
    assert trained.exit_code == 0, trained.output
    profile = load_profile("cam")
    assert profile.network_space == "camera" and profile.input_normalization == "wb-headroom"
    assert profile.metadata["architecture"]["residual_base"] == "lsq-linear-gated"  # auto: the fitted demosaic's linear gate
    assert profile.metadata["training"]["dataset"]["manifest"]["network_space"] == "camera"
    # --init from a camera-space profile continues in camera space without being told; pairs on the device.
    again = runner.invoke(app, ["train", "--synthetic", str(images), "-o", str(tmp_path / "run2"), "--profile-name", "cam2",
                                "--init", "cam", "--pairs-on-device", *tiny])
    assert again.exit_code == 0, again.output
    assert load_profile("cam2").network_space == "camera"
    # A camera run may start from an srgb display profile: --network-space names it explicitly.
    make_tiny_profile(tmp_path / "srgb.safetensors", width=16, input_normalization="linear-srgb")
    third = runner.invoke(app, ["train", "--synthetic", str(images), "-o", str(tmp_path / "run3"), "--profile-name", "cam3",
                                "--network-space", "camera", "--init", str(tmp_path / "srgb.safetensors"), *tiny])
    assert third.exit_code == 0, third.output
    assert load_profile("cam3").network_space == "camera"

    frame = _frame(tmp_path / "scene.dng", 64, 94)
    done = runner.invoke(app, ["convert", str(tmp_path / "scene.dng"), "-o", str(tmp_path / "out"), "--profile", "cam",
                               "--json", "-q"])
    assert done.exit_code == 0, done.output
    converted = tifffile.imread(tmp_path / "out" / "scene.tif")
    assert converted.shape == (64, 94, 3)
    # What convert wrote is the converter's render: G1's camera RGB through the fixed rendering.
    pixels = Converter(profile, device="cpu", tile=0).render(frame)
    assert np.abs(pixels.astype(np.int64) - converted.astype(np.int64)).max() <= 1
    net_in = network_input(frame, "wb-headroom", noise=noise_model_for(frame))
    with torch.no_grad():
        camera = net_in.padding.crop(profile.model(net_in.packed))
    expected = display_from_camera(camera, frame.wb_gains_rgb, frame.camera_to_srgb)[0].permute(1, 2, 0).numpy()
    assert np.abs(pixels / 65535.0 - expected).max() < 1e-3


def test_init_from_another_network_space_only_when_named(camera_profile):
    from raw2rgb_plugin.training.checkpoint import starting_point
    from raw2rgb_plugin.training.config import TrainConfig, TrainingError

    torch.manual_seed(0)
    with pytest.raises(TrainingError, match="works in camera space, this run in srgb"):
        starting_point(TrainConfig(init_profile=str(camera_profile)), "linear-srgb", None)
    named = starting_point(TrainConfig(init_profile=str(camera_profile), network_space="srgb"), "linear-srgb", None)
    assert named.g1_config.residual_base == "mhc-srgb-gated"
    # Not named: an --init profile's own space is the run's.
    assert TrainConfig(init_profile=str(camera_profile)).for_data(synthetic=True).space == "camera"
