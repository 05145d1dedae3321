"""`convert --format dng`: an editable linear DNG whose LibRaw rendering has the source's colours.

The profile here is a scene-linear G1 whose gate is shut, so its image is exactly the linear
Malvar–He–Cutler demosaic of its input: what is tested is the engine's colour path (levels,
headroom white balance, back to camera-native values, the DNG's matrix and neutral), not how
well a network was trained.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import exifread
import numpy as np
import pytest
import rawpy
import tifffile
from typer.testing import CliRunner

from raw2rgb_cli.main import app
from raw2rgb_plugin.engine.converter import Converter
from raw2rgb_plugin.engine.jobs import ConvertJob
from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.io.exif_read import PhotoMetadata
from raw2rgb_plugin.profiles.store import load_profile
from raw2rgb_plugin.training.color_difference import delta_e2000, linear_srgb_to_lab
from raw2rgb_plugin.training.data.unprocess import BAYER_ORDERS, random_params, write_synthetic_dng

from helpers import make_classical_develop_profile, smooth_scene

MAX_MEDIAN_DELTA_E = 3.0  # the bar; the classical path measures well below it
META = PhotoMetadata(make="Testmaker", model="T-100", iso=400, exposure_time=Fraction(1, 125), f_number=Fraction(28, 10),
                     datetime_original="2026:11:29 10:11:12", orientation=1)


@pytest.fixture(scope="module")
def classical_develop(tmp_path_factory) -> Path:
    return make_classical_develop_profile(tmp_path_factory.mktemp("develop") / "develop-test.safetensors")


def _libraw_linear_srgb(path: Path, wb_gains_rgb: np.ndarray | None = None) -> np.ndarray:
    """LibRaw's rendering with the camera's white balance (or `wb_gains_rgb`), linear sRGB in [0, 1]."""
    wb = {"use_camera_wb": True} if wb_gains_rgb is None else {"user_wb": [*map(float, wb_gains_rgb), float(wb_gains_rgb[1])]}
    with rawpy.imread(str(path)) as raw:
        # adjust_maximum_thr=0: LibRaw would otherwise rescale a frame whose brightest value is near white.
        rgb = raw.postprocess(**wb, no_auto_bright=True, gamma=(1, 1), output_bps=16, output_color=rawpy.ColorSpace.sRGB,
                              adjust_maximum_thr=0.0)
    return rgb.astype(np.float64) / 65535.0


def _median_delta_e(a: np.ndarray, b: np.ndarray, block: int) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)

    def mean(image: np.ndarray) -> np.ndarray:  # downscaled: demosaic differences are not colour
        h, w = image.shape[0] // block * block, image.shape[1] // block * block
        return image[:h, :w].reshape(h // block, block, w // block, block, 3).mean(axis=(1, 3))

    return float(np.median(delta_e2000(linear_srgb_to_lab(mean(a)), linear_srgb_to_lab(mean(b)))))


def _convert(profile: Path, source: Path, out_dir: Path, output_format: str = "dng") -> Path:
    converter = Converter(load_profile(profile), device="cpu", output_format=output_format)
    suffix = ".dng" if output_format == "dng" else ".tif"
    [result] = converter.convert([ConvertJob(source, out_dir / f"{source.stem}{suffix}")])
    assert result.status == "converted", result.error
    return result.output


@pytest.mark.parametrize("cfa", BAYER_ORDERS)
def test_libraw_renders_the_dng_in_the_colours_of_its_source(tmp_path, classical_develop, cfa):
    rng = np.random.default_rng(BAYER_ORDERS.index(cfa))
    params = random_params(rng, cfa_pattern=cfa, noise=False)
    source = tmp_path / "in" / "scene.dng"
    source.parent.mkdir()
    write_synthetic_dng(smooth_scene(96, 128, seed=4), source, rng, params=params, metadata=META)
    out = _convert(classical_develop, source, tmp_path)
    with rawpy.imread(str(out)) as raw:
        assert raw.raw_type == rawpy.RawType.Stack
        assert raw.raw_image_visible.shape[:2] == (96, 128)
        assert np.allclose(np.asarray(raw.camera_whitebalance[:3]) / raw.camera_whitebalance[1],
                           [params.red_gain, 1.0, params.blue_gain], rtol=1e-3)
    delta = _median_delta_e(_libraw_linear_srgb(out), _libraw_linear_srgb(source), block=4)
    assert delta <= MAX_MEDIAN_DELTA_E, delta


# Not the DC50: its KDC carries no colour matrix (the engine takes camera RGB as sRGB, LibRaw renders
# "raw colour"), so there is no source colour to keep; measured 5.4 median ΔE between the two.
@pytest.mark.parametrize("name", ["RAW_CANON_D30_SRGB.CRW"])
def test_a_real_raw_keeps_its_colours_and_exif(tmp_path, classical_develop, shared_data, name):
    from raw2rgb_plugin.io.raw_file import decode_raw

    source = shared_data / "raw" / name
    out = _convert(classical_develop, source, tmp_path)
    # The source is rendered with the white balance the engine read from it: the D30 stores "auto"
    # (-1) as its as-shot multipliers, which LibRaw answers with its own auto white balance, while
    # the engine (and so the DNG's AsShotNeutral) takes the camera's daylight balance.
    gains = decode_raw(source).wb_gains_rgb
    delta = _median_delta_e(_libraw_linear_srgb(out), _libraw_linear_srgb(source, gains), block=8)
    assert delta <= MAX_MEDIAN_DELTA_E, delta
    with open(out, "rb") as f:
        tags = exifread.process_file(f, details=False)
    from raw2rgb_plugin.io.exif_read import read_photo_metadata

    # The camera's own matrix, rows at its own scale: darktable 5 and RawTherapee read them as written.
    written = np.array([float(Fraction(str(v))) for v in tags["Image Tag 0xC621"].values]).reshape(3, 3)
    with rawpy.imread(str(source)) as raw:
        assert np.allclose(written, raw.rgb_xyz_matrix[:3], atol=1e-4)
    meta = read_photo_metadata(source)
    assert str(tags["Image Make"]) == meta.make and str(tags["Image Model"]) == meta.model
    assert str(tags["EXIF DateTimeOriginal"]) == meta.datetime_original
    assert read_photo_metadata(out).exposure_time == meta.exposure_time


def test_orientation_stays_a_tag_and_renders_as_the_source(tmp_path, classical_develop):
    from raw2rgb_plugin.io.dng_write import write_bayer_dng
    from raw2rgb_plugin.training.data.unprocess import unprocess

    rng = np.random.default_rng(8)
    params = random_params(rng, cfa_pattern="GRBG", noise=False)
    mosaic = unprocess(smooth_scene(64, 96, seed=2), params, rng)
    source = tmp_path / "in" / "rotated.dng"
    source.parent.mkdir()
    write_bayer_dng(source, mosaic, "GRBG", black_level=params.black_level, white_level=params.white_level,
                    color_matrix1=np.asarray(params.xyz_to_camera), as_shot_neutral=params.as_shot_neutral, orientation=6)
    out = _convert(classical_develop, source, tmp_path)
    with rawpy.imread(str(out)) as ours, rawpy.imread(str(source)) as theirs:
        assert ours.sizes.flip == theirs.sizes.flip != 0
    a, b = _libraw_linear_srgb(out), _libraw_linear_srgb(source)
    assert a.shape == b.shape == (96, 64, 3)
    assert _median_delta_e(a, b, block=4) <= MAX_MEDIAN_DELTA_E


def test_a_display_profile_cannot_write_a_dng(tiny_profile):
    with pytest.raises(Raw2RgbError, match="scene-linear"):
        Converter(load_profile(tiny_profile), device="cpu", output_format="dng")


def test_a_scene_linear_tiff_is_linear_srgb_with_a_linear_icc(tmp_path, classical_develop):
    from PIL import ImageCms

    rng = np.random.default_rng(3)
    source = tmp_path / "in" / "scene.dng"
    source.parent.mkdir()
    write_synthetic_dng(smooth_scene(64, 64, seed=1), source, rng, params=random_params(rng, noise=False))
    out = _convert(classical_develop, source, tmp_path, output_format="tiff")
    with tifffile.TiffFile(out) as tif:
        pixels = tif.pages[0].asarray().astype(np.float64) / 65535.0
        icc = tif.pages[0].tags["InterColorProfile"].value
    import io

    assert "linear" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
    # Linear sRGB: LibRaw's linear rendering of the source, not a display-encoded image.
    assert _median_delta_e(pixels, _libraw_linear_srgb(source), block=4) <= MAX_MEDIAN_DELTA_E


def test_cli_format_dng_refuses_to_replace_a_dng_input_and_never_clobbers(tmp_path, classical_develop):
    rng = np.random.default_rng(6)
    source = tmp_path / "shot.dng"
    write_synthetic_dng(smooth_scene(64, 64, seed=6), source, rng, params=random_params(rng, noise=False))
    before = source.read_bytes()
    runner = CliRunner()
    beside = runner.invoke(app, ["convert", str(source), "--format", "dng", "-p", str(classical_develop), "--json"])
    assert beside.exit_code == 1 and "would replace an input" in beside.output
    assert source.read_bytes() == before
    out_dir = tmp_path / "out"
    first = runner.invoke(app, ["convert", str(source), "--format", "dng", "-p", str(classical_develop), "-o", str(out_dir),
                                "--json", "-q"])
    assert first.exit_code == 0, first.output
    written = out_dir / "shot.dng"
    assert json.loads(first.stdout)["files"][0]["output"] == str(written)
    stamp = written.stat().st_mtime_ns
    again = runner.invoke(app, ["convert", str(source), "--format", "dng", "-p", str(classical_develop), "-o", str(out_dir),
                                "--json", "-q"])
    assert again.exit_code == 0 and json.loads(again.stdout)["files"][0]["status"] == "skipped"
    assert written.stat().st_mtime_ns == stamp and sorted(p.name for p in out_dir.iterdir()) == ["shot.dng"]
    assert source.read_bytes() == before


def test_cli_format_dng_refuses_a_display_profile_in_one_line(tmp_path, tiny_profile):
    rng = np.random.default_rng(6)
    source = tmp_path / "shot.dng"
    write_synthetic_dng(smooth_scene(64, 64, seed=6), source, rng, params=random_params(rng, noise=False))
    result = CliRunner().invoke(app, ["convert", str(source), "--format", "dng", "-p", str(tiny_profile), "-o",
                                      str(tmp_path / "out")])
    assert result.exit_code != 0 and "scene-linear" in result.output
    assert not (tmp_path / "out" / "shot.dng").exists()
