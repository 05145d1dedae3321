"""X-Trans through the engine: an X-Trans profile (a period-6 G1) renders an `XTransFrame` on the
Bayer path's road — levels, white balance, the 36-channel noise map, tiles equal to the whole
frame, the phase crop, orientation, the TIFF and, for a scene-linear profile, the DNG.

Every file is a synthetic X-Trans DNG written by our writer and decoded by LibRaw (rawpy).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rawpy
import tifffile
import torch

from raw2rgb_plugin.engine.converter import Converter, check_output_format
from raw2rgb_plugin.engine.jobs import ConvertJob
from raw2rgb_plugin.errors import ProfileError, Raw2RgbError, UnsupportedRawError
from raw2rgb_plugin.io.noise_profile import noise_model_for
from raw2rgb_plugin.io.raw_file import RawFile, XTransFrame
from raw2rgb_plugin.pipeline.cfa import cfa_indices, xtrans_pattern, xtrans_phase
from raw2rgb_plugin.pipeline.metrics import image_psnr
from raw2rgb_plugin.pipeline.noise import NoiseModel
from raw2rgb_plugin.pipeline.noise_map import encode_sigma, packed_colours
from raw2rgb_plugin.pipeline.normalization import display_from_camera, network_input
from raw2rgb_plugin.pipeline.packing import site_tile
from raw2rgb_plugin.pipeline.xtrans_packing import unpack_xtrans
from raw2rgb_plugin.profiles.catalog import check_metadata
from raw2rgb_plugin.profiles.store import load_profile
from raw2rgb_plugin.training.data.unprocess import random_params, write_synthetic_dng

from helpers import smooth_scene
from test_convert import write_scene_dng
from xtrans_helpers import BLACK, META, WHITE, camera_scene, make_xtrans_profile, write_xtrans_scene

GAINS = np.array([2.0, 1.0, 1.6])  # 1 / NEUTRAL
HEADROOM = GAINS / GAINS.max()


@pytest.fixture(scope="module")
def profiles(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("xtrans-profiles")
    return {kind: make_xtrans_profile(folder / f"xt-{kind}", kind) for kind in ("srgb", "camera")}


def decoded(path: Path) -> XTransFrame:
    with RawFile(path) as raw:
        frame = raw.mosaic_frame
    assert isinstance(frame, XTransFrame)
    return frame


# --- the network input ---------------------------------------------------------------------------


@pytest.mark.parametrize("phase", [(0, 0), (1, 4), (2, 3), (5, 1)])
def test_a_flat_card_packs_every_phase_to_the_canonical_sites(tmp_path, phase):
    """A flat colour: every packed channel, padding included, holds its canonical site's colour."""
    camera = np.array([0.3, 0.45, 0.2])
    frame = decoded(write_xtrans_scene(tmp_path / "flat.dng", np.broadcast_to(camera, (61, 83, 3)), phase=phase))
    colours = packed_colours(36)
    net = network_input(frame, "raw")
    raw = net.packed[0]
    top, left = xtrans_phase(xtrans_pattern(*phase))  # (5, 1) is (2, 4): the layout repeats shifted by (3, 3)
    assert (net.padding.top, net.padding.left) == (top, left)
    assert raw.shape == (36, -(-(61 + top) // 6), -(-(83 + left) // 6))
    expected = torch.tensor(camera, dtype=torch.float32)[colours].view(36, 1, 1).expand_as(raw)
    assert torch.allclose(raw, expected, atol=3e-4)
    headroom = network_input(frame, "wb-headroom").packed[0]
    assert torch.allclose(headroom, (expected * torch.tensor(HEADROOM, dtype=torch.float32)[colours].view(36, 1, 1)),
                          atol=3e-4)
    # linear-srgb: each site its own colour of the matrix applied to the white-balanced colour
    # (the X-Trans demosaic is exact on flat colour)
    srgb = np.clip(frame.camera_to_srgb.astype(np.float64) @ (camera * GAINS), 0, 1)
    linear = network_input(frame, "linear-srgb").packed[0]
    assert torch.allclose(linear, torch.tensor(srgb, dtype=torch.float32)[colours].view(36, 1, 1).expand_as(raw),
                          atol=1e-3)
    with pytest.raises(ValueError, match="wb\\+ccm"):
        network_input(frame, "wb+ccm")


def test_the_input_is_the_levelled_mosaic_with_its_colours_gains_and_36_noise_channels(tmp_path):
    frame = decoded(write_xtrans_scene(tmp_path / "s.dng", camera_scene(61, 83, 1), phase=(1, 4)))
    noise = NoiseModel.of(2e-3, 1e-5)
    net = network_input(frame, "wb-headroom", noise=noise, strength=1.5)
    assert net.packed.shape[:2] == (1, 72) and net.stuck_sites is None
    levelled = np.clip((frame.mosaic.astype(np.float64) - BLACK) / (WHITE - BLACK), 0, 1)
    gains = site_tile(torch.tensor(HEADROOM[cfa_indices(frame.cfa_pattern)]), 61, 83).numpy()
    image = net.padding.crop(unpack_xtrans(net.packed[0, :36])).double().numpy()
    np.testing.assert_allclose(image, np.clip(levelled * gains, 0, 1), atol=1e-6)
    sigma = np.sqrt(2e-3 * levelled + 1e-5) * gains * 1.5
    noise_map = net.padding.crop(unpack_xtrans(net.packed[0, 36:])).double().numpy()
    np.testing.assert_allclose(noise_map, encode_sigma(torch.from_numpy(sigma)).numpy(), atol=1e-5)


# --- the engine ----------------------------------------------------------------------------------


def _by_hand(profile, frame, kind: str) -> np.ndarray:
    """G1 on the engine's input → crop → [camera → display] → uint16, upright for orientation 6."""
    net = network_input(frame, profile.input_normalization, noise=noise_model_for(frame))
    with torch.no_grad():
        out = net.padding.crop(profile.model(net.packed))
    if kind == "camera":
        out = display_from_camera(out, frame.wb_gains_rgb, frame.camera_to_srgb)
    upright = np.rint(out[0].clamp(0, 1).double().numpy() * 65535).astype(np.uint16).transpose(1, 2, 0)
    return np.rot90(upright, k=-1)


@pytest.mark.parametrize("kind", ["srgb", "camera"])
def test_an_xtrans_profile_renders_g1_then_crops_renders_and_orients(tmp_path, profiles, kind):
    # 94×93 at phase (2, 3): 96×96 sites once padded, 16×16 packed (G1's stride without more padding)
    frame = decoded(write_xtrans_scene(tmp_path / "s.dng", camera_scene(94, 93, 2), phase=(2, 3), orientation=6))
    profile = load_profile(profiles[kind])
    assert profile.cfa == "xtrans" and profile.reads_noise
    converter = Converter(profile, device="cpu", tile=0)
    pixels = converter.render(frame)
    expected = _by_hand(profile, frame, kind)
    assert pixels.shape == expected.shape == (93, 94, 3)  # the visible area exactly, turned
    difference = np.abs(pixels.astype(np.int64) - expected.astype(np.int64))
    assert difference.max() <= 2 and difference.mean() < 0.05, (difference.max(), difference.mean())
    assert converter.render(frame, half_size=True).shape == (46, 47, 3)


@pytest.mark.parametrize("kind", ["srgb", "camera"])
def test_a_classical_xtrans_profile_gives_back_the_scene(tmp_path, kind):
    """With its gate shut a profile is its base: the X-Trans demosaic, the camera's colour and the
    tone curve. An sRGB scene unprocessed into an X-Trans DNG comes back close to itself, so levels,
    white balance, matrix and phase are all right (one column off gives ~9 dB, tests/test_xtrans.py).
    Measured: 44.2 dB (srgb) and 48.6 dB (camera) with the fitted demosaic, whose cross-colour
    weights suit photographs (+5.4 dB on held-out ones) more than this scene of unrelated colours
    (51.5 / 49.4 with the Gaussian average it replaced)."""
    scene = smooth_scene(96, 120, seed=3)
    rng = np.random.default_rng(3)
    params = random_params(rng, cfa_pattern=xtrans_pattern(1, 2), noise=False)
    write_synthetic_dng(scene, tmp_path / "scene.dng", rng, params=params)
    profile = load_profile(make_xtrans_profile(tmp_path / "classical", kind, classical=True))
    pixels = Converter(profile, device="cpu").render(decoded(tmp_path / "scene.dng")) / 65535.0
    inner = (slice(6, -6), slice(6, -6))  # the borders replicate a period
    assert image_psnr(pixels[inner], scene[inner]) >= 42.0


def test_tiles_equal_the_whole_frame(tmp_path, profiles):
    """Measured: 90.2 dB, at most 65 levels apart (the bounds are test_convert's for Bayer)."""
    frame = decoded(write_xtrans_scene(tmp_path / "t.dng", camera_scene(240, 330, 4), phase=(1, 4)))
    profile = load_profile(profiles["camera"])
    whole = Converter(profile, device="cpu", tile=0).render(frame)
    tiled = Converter(profile, device="cpu", tile=32, overlap=24).render(frame)  # 41×56 packed: 2×3 tiles
    assert whole.shape == tiled.shape == (240, 330, 3)
    assert image_psnr(tiled / 65535.0, whole / 65535.0) >= 50.0
    difference = np.abs(whole.astype(np.int64) - tiled.astype(np.int64))
    assert difference.max() <= 0.002 * 65535 and difference.mean() < 0.0001 * 65535


def test_the_tiff_carries_the_rendering_and_the_exif(tmp_path, profiles):
    source = write_xtrans_scene(tmp_path / "in.dng", camera_scene(60, 84, 5), phase=(0, 3))
    converter = Converter(load_profile(profiles["srgb"]), device="cpu", lens="off")
    [result] = converter.convert([ConvertJob(source, tmp_path / "in.tif")])
    assert result.status == "converted", result.error
    # stuck sites are looked for on X-Trans as on Bayer: none in this clean scene, and no note
    assert result.details["hot_pixels"] == 0 and result.notes == []
    with tifffile.TiffFile(result.output) as tif:
        page = tif.pages[0]
        assert page.tags["Make"].value == META.make and page.tags["Model"].value == META.model
        np.testing.assert_array_equal(page.asarray(), converter.render(decoded(source)))
    kept = Converter(load_profile(profiles["srgb"]), device="cpu", keep_hot_pixels=True, lens="off")
    [result] = kept.convert([ConvertJob(source, tmp_path / "kept.tif")])
    assert result.status == "converted" and result.notes == []


def test_a_scene_linear_xtrans_profile_writes_the_camera_image_as_a_dng(tmp_path):
    """`--format dng`: camera-native linear RGB in sensor orientation, which LibRaw reads back as the
    camera image the mosaic sampled (a shut gate: the linear X-Trans demosaic). Measured 37.0 dB on this
    scene of unrelated colours (45.1 with the Gaussian average the fitted demosaic replaced)."""
    camera = camera_scene(60, 78, 6)
    source = write_xtrans_scene(tmp_path / "in.dng", camera, phase=(2, 1), orientation=8)
    profile = load_profile(make_xtrans_profile(tmp_path / "develop", "scene-linear", classical=True))
    converter = Converter(profile, device="cpu", output_format="dng")
    [result] = converter.convert([ConvertJob(source, tmp_path / "out.dng")])
    assert result.status == "converted", result.error
    with rawpy.imread(str(result.output)) as raw:
        assert raw.raw_type == rawpy.RawType.Stack and raw.sizes.flip == 5  # orientation 8 kept as a tag
        pixels = raw.raw_image_visible.astype(np.float64) / 65535.0
    assert pixels.shape == (60, 78, 4)  # LibRaw's fourth channel of a LinearRaw DNG is unused
    inner = (slice(6, -6), slice(6, -6))
    assert image_psnr(pixels[..., :3][inner], camera[inner]) >= 35.0
    with pytest.raises(Raw2RgbError, match="finished display image"):
        check_output_format("dng", load_profile(make_xtrans_profile(tmp_path / "display", "camera")))


# --- profiles and frames of the other CFA --------------------------------------------------------


def test_a_profile_renders_its_own_cfa_only(tmp_path, profiles, tiny_profile):
    xtrans = load_profile(profiles["camera"])
    bayer = load_profile(tiny_profile)
    assert xtrans.cfa == "xtrans" and bayer.cfa == "bayer" and load_profile("default-lite").cfa == "bayer"
    bayer_frame = RawFile(write_scene_dng(tmp_path / "bayer.dng")).mosaic_frame
    with pytest.raises(UnsupportedRawError) as caught:
        Converter(xtrans, device="cpu").render(bayer_frame)
    assert "renders X-Trans sensors only" in str(caught.value) and "\n" not in str(caught.value)


GOOD = {"format_version": 1, "input_normalization": "wb-headroom", "output_color_space": "srgb",
        "architecture": {"name": "g1", "width": 8, "period": 6, "in_channels": 36, "noise_channels": 36,
                         "residual_base": "xtrans-linear-gated"}, "network_space": "camera"}


@pytest.mark.parametrize(("change", "message"), [
    ({"input_normalization": "wb+ccm", "network_space": "srgb",
      "architecture": {**GOOD["architecture"], "residual_base": "none"}}, "wb\\+ccm input"),
    ({"architecture": {**GOOD["architecture"], "noise_channels": 4}}, "must be 0 or 36"),
])
def test_xtrans_metadata_the_engine_cannot_feed_is_refused_in_one_line(tmp_path, change, message):
    check_metadata(dict(GOOD), tmp_path / "p.safetensors")
    with pytest.raises(ProfileError, match=message) as caught:
        check_metadata({**GOOD, **change}, tmp_path / "p.safetensors")
    assert "\n" not in str(caught.value)
