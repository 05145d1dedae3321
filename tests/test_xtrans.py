"""Fujifilm X-Trans: synthetic 6×6 DNGs read by LibRaw as X-Trans, decoded into an `XTransFrame`,
described by `info`, refused by a Bayer profile in one line (tests/test_xtrans_engine.py renders
them with X-Trans profiles, tests/test_xtrans_choice.py picks those).

Every file is checked with the real readers (rawpy/LibRaw, tifffile), never a mock of them.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import rawpy
import tifffile
from typer.testing import CliRunner

from raw2rgb_cli.main import app
from raw2rgb_plugin.engine.converter import Converter
from raw2rgb_plugin.errors import RawDecodeError, UnsupportedRawError
from raw2rgb_plugin.io.dng_write import write_cfa_dng
from raw2rgb_plugin.io.exif_read import PhotoMetadata
from raw2rgb_plugin.io.noise_profile import noise_model_for
from raw2rgb_plugin.io.raw_file import BayerFrame, RawFile, XTransFrame, decode_raw
from raw2rgb_plugin.pipeline.cfa import XTRANS, cfa_indices, is_xtrans, xtrans_pattern, xtrans_phase
from raw2rgb_plugin.pipeline.colour import camera_to_srgb_from_xyz_to_camera
from raw2rgb_plugin.pipeline.metrics import image_psnr
from raw2rgb_plugin.profiles.store import load_profile
from raw2rgb_plugin.training.data.unprocess import random_params, write_synthetic_dng

from helpers import TEST_XYZ_TO_CAMERA
from scene_images import textured_scene

NEUTRAL = (0.5, 1.0, 0.625)
WHITE = 4095
#: black per colour, plus a per-site step so that a site-for-site decode is told from a per-colour one
COLOUR_BLACK = {"R": 60, "G": 64, "B": 62}


def site_blacks(pattern: str) -> np.ndarray:
    """(6, 6) black levels of a pattern's sites: the colour's level + 0, 1 or 2 by column."""
    levels = [COLOUR_BLACK[c] + (k % 6) % 3 for k, c in enumerate(pattern)]
    return np.array(levels, dtype=np.float64).reshape(6, 6)


def write_xtrans(path: Path, *, pattern: str = XTRANS, height: int = 96, width: int = 120,
                 area: tuple[int, int] | None = None, seed: int = 0, **options) -> tuple[Path, np.ndarray]:
    """An X-Trans DNG of random values (the visible area `height`×`width`, at `area`'s (top, left)
    inside masked margins when given); returns the path and the visible mosaic."""
    top, left = area or (0, 0)
    full = np.random.default_rng(seed).integers(100, WHITE, (height + 2 * top, width + 2 * left), dtype=np.uint16)
    kwargs = dict(black_level=site_blacks(pattern).ravel().tolist(), white_level=WHITE,
                  color_matrix1=TEST_XYZ_TO_CAMERA, as_shot_neutral=NEUTRAL)
    if area is not None:
        kwargs["active_area"] = (top, left, top + height, left + width)
    write_cfa_dng(path, full, pattern, **{**kwargs, **options})
    return path, full[top:top + height, left:left + width]


# --- the layout ----------------------------------------------------------------------------------


def test_the_layout_is_x_trans_at_every_phase():
    grid = cfa_indices(XTRANS)
    assert [int((grid == c).sum()) for c in range(3)] == [8, 20, 8]
    for rows in (grid, grid.T):  # every row and every column holds all three colours
        assert all(set(row.tolist()) == {0, 1, 2} for row in rows)
    assert all(int((grid[i:i + 3, j:j + 3] == 1).sum()) == 5 for i in (0, 3) for j in (0, 3))
    # rawspeed's cameras.xml: an uncompressed X-T2 RAF starts at row 5; the X20 compacts at (1, 1)
    assert xtrans_pattern(5, 0)[:6] == "RBGBRG" and xtrans_pattern(1, 1)[:6] == "GBGGRG"
    for top in range(6):
        for left in range(6):
            found = xtrans_phase(xtrans_pattern(top, left))
            assert found is not None and xtrans_pattern(*found) == xtrans_pattern(top, left)
    assert not is_xtrans("G" * 36) and not is_xtrans("RGGB")


# --- LibRaw reads the DNG as X-Trans ---------------------------------------------------------------


@pytest.mark.parametrize("top,left", [(0, 0), (5, 0), (1, 4)])
def test_libraw_decodes_a_6x6_dng_as_x_trans(tmp_path, top, left):
    pattern = xtrans_pattern(top, left)
    path, mosaic = write_xtrans(tmp_path / "x.dng", pattern=pattern, orientation=6)
    with rawpy.imread(str(path)) as raw:
        assert raw.raw_type == rawpy.RawType.Flat and raw.raw_pattern.shape == (6, 6)
        assert raw.raw_pattern.tolist() == cfa_indices(pattern).tolist()  # no margins: raw_pattern is right
        np.testing.assert_array_equal(raw.raw_image_visible, mosaic)
        assert raw.white_level == WHITE and raw.sizes.flip == 6
        wb = np.asarray(raw.camera_whitebalance[:3], dtype=np.float64)
        np.testing.assert_allclose(wb / wb[1], 1 / np.asarray(NEUTRAL), rtol=1e-5)
        # LibRaw keeps a 6×6 black pattern apart from its per-colour levels: rawpy shows the smallest
        # value only, which is why the decoder reads the DNG's BlackLevel itself.
        assert raw.black_level_per_channel == [int(site_blacks(pattern).min())] * 4
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages.first.tags
        assert tags[33421].value == (6, 6) and bytes(tags[33422].value) == bytes(cfa_indices(pattern).ravel().tolist())
        assert tags[50713].value == (6, 6) and tags[50714].value == tuple(int(v) for v in site_blacks(pattern).ravel())


def _libraw_srgb(path: Path, algorithm: rawpy.DemosaicAlgorithm) -> np.ndarray:
    with rawpy.imread(str(path)) as raw:
        rgb = raw.postprocess(demosaic_algorithm=algorithm, use_camera_wb=True, output_color=rawpy.ColorSpace.sRGB,
                              output_bps=16, gamma=(2.4, 12.92), no_auto_bright=True, user_flip=0,
                              # else LibRaw takes a data maximum above 75 % of white as white
                              adjust_maximum_thr=0.0)
    return rgb.astype(np.float64) / 65535.0


def test_libraw_renders_it_with_its_x_trans_interpolation(tmp_path):
    """An sRGB scene unprocessed into an X-Trans DNG comes back from LibRaw close to itself.

    LibRaw renders a 6×6 CFA with Markesteijn's X-Trans interpolation: 3 passes at AHD quality
    (dcraw_process.cpp), 1 at PPG's. Measured on textured_scene(600, 660) seeds 0–5: 35.2–35.7 dB
    (seed 0: 35.4), against 33.0–34.4 dB for LibRaw's linear interpolation and 34.0–34.2 dB for
    AHD on the same scenes as an RGGB DNG. Frames need ~516 px a side or Markesteijn fails.
    """
    scene = textured_scene(600, 660, 0)
    rng = np.random.default_rng(0)
    params = random_params(rng, cfa_pattern=xtrans_pattern(), noise=False, inverse_tone_curve=False)
    path = tmp_path / "scene.dng"
    write_synthetic_dng(scene, path, rng, params=params)
    inner = (slice(8, -8), slice(8, -8))  # the interpolations' borders differ
    markesteijn = image_psnr(_libraw_srgb(path, rawpy.DemosaicAlgorithm.AHD)[inner], scene[inner])
    linear = image_psnr(_libraw_srgb(path, rawpy.DemosaicAlgorithm.LINEAR)[inner], scene[inner])
    assert markesteijn > 34.0, markesteijn
    assert markesteijn > linear + 0.5, (markesteijn, linear)  # measured +1.0 dB at seed 0

    # The same mosaic labelled one column off renders as garbage (8.7 dB): the pattern is read as written.
    params_bad = random_params(np.random.default_rng(0), cfa_pattern=xtrans_pattern(0, 1), noise=False,
                               inverse_tone_curve=False)
    with rawpy.imread(str(path)) as raw:
        mosaic = raw.raw_image_visible.copy()
    write_cfa_dng(tmp_path / "wrong.dng", mosaic, params_bad.cfa_pattern, black_level=params.black_level,
                  white_level=params.white_level, color_matrix1=np.asarray(params.xyz_to_camera),
                  as_shot_neutral=params.as_shot_neutral)
    assert image_psnr(_libraw_srgb(tmp_path / "wrong.dng", rawpy.DemosaicAlgorithm.AHD)[inner], scene[inner]) < 20


# --- the decoded frame ---------------------------------------------------------------------------


def _bayer_twin(path: Path, **options) -> BayerFrame:
    """The frame of a Bayer DNG with the same colour metadata: the X-Trans frame's colour fields
    must be the Bayer path's."""
    mosaic = np.random.default_rng(1).integers(100, WHITE, (32, 32), dtype=np.uint16)
    write_cfa_dng(path, mosaic, "RGGB", black_level=64, white_level=WHITE, color_matrix1=TEST_XYZ_TO_CAMERA,
                  as_shot_neutral=NEUTRAL, **options)
    return decode_raw(path)


@pytest.mark.parametrize("pattern,area", [(XTRANS, None), (xtrans_pattern(5, 0), None),
                                          # masked margins of 13 and 9 rows/columns: an odd origin,
                                          # and past rawpy's 6-pixel limit for raw_pattern
                                          (xtrans_pattern(2, 3), (13, 9)), (xtrans_pattern(1, 1), (3, 1))])
def test_the_decoded_frame_is_what_was_written(tmp_path, pattern, area):
    metadata = PhotoMetadata(make="raw2rgb", model="X-Trans test", iso=400, f_number=Fraction(28, 10))
    options = dict(orientation=8, default_scale=(1.0, 1.5), metadata=metadata, model="X-Trans test")
    path, mosaic = write_xtrans(tmp_path / "x.dng", pattern=pattern, area=area, **options)
    with RawFile(path) as raw:
        frame, exif = raw.mosaic_frame, raw.metadata
    assert isinstance(frame, XTransFrame) and frame.cfa_kind == "xtrans" and frame.sensor == "X-Trans 6×6"
    assert frame.cfa_pattern == pattern and frame.cfa.tolist() == cfa_indices(pattern).tolist()
    np.testing.assert_array_equal(frame.mosaic, mosaic)
    np.testing.assert_array_equal(frame.black_level_per_site, site_blacks(pattern))
    assert frame.white_level == WHITE and frame.flip == 5 and frame.wb_source == "as-shot"
    np.testing.assert_allclose(frame.wb_gains_rgb, [2.0, 1.0, 1.6], rtol=1e-5)
    assert frame.pixel_aspect == pytest.approx(1 / 1.5, rel=1e-3)  # DefaultScale horizontal ÷ vertical
    margins = (2 * area[0], 2 * area[1]) if area else (0, 0)
    assert frame.raw_size == (96 + margins[0], 120 + margins[1])
    assert frame.output_size == (120, 144)  # 96 rows stretched to 144 as LibRaw does, then transposed
    assert exif.iso == 400 and exif.f_number == Fraction(28, 10) and exif.model == "X-Trans test"

    twin = _bayer_twin(tmp_path / "twin.dng", **options)
    assert frame.matrix_source == twin.matrix_source == "color_matrix"
    np.testing.assert_allclose(frame.camera_to_srgb, camera_to_srgb_from_xyz_to_camera(TEST_XYZ_TO_CAMERA), atol=2e-3)
    np.testing.assert_array_equal(frame.camera_to_srgb, twin.camera_to_srgb)
    np.testing.assert_array_equal(frame.xyz_to_camera, twin.xyz_to_camera)


def test_the_noise_model_is_estimated_as_for_bayer(tmp_path):
    """The image estimate of a noisy X-Trans DNG finds the shot noise it was written with.

    Measured on textured_scene(600, 612) seeds 0–2: 0.98–1.09× the truth (RGGB: 1.03×); from
    X-Trans's green sites at stride 3, as the 36 stride-6 phases gave 1.5×.
    """
    rng = np.random.default_rng(1)
    params = random_params(rng, cfa_pattern=xtrans_pattern(), noise=True)
    path = tmp_path / "noisy.dng"
    write_synthetic_dng(textured_scene(600, 612, 1), path, rng, params=params)
    with RawFile(path) as raw:
        model = noise_model_for(raw.mosaic_frame, raw.metadata, raw.libraw)
    assert model.source == "image estimate"
    assert 0.8 < model.shot / params.shot_noise < 1.25, (model.shot, params.shot_noise)


def test_a_fujifilm_dng_libraw_misreads_is_one_clear_line(tmp_path):
    # LibRaw moves a Fujifilm X-Trans file's margins to multiples of 6 and takes the pattern from
    # a RAF-only table: this DNG decodes as all red, which is no X-Trans layout.
    path, _ = write_xtrans(tmp_path / "adobe.dng", area=(13, 9), make="FUJIFILM", model="X-T3")
    with pytest.raises(UnsupportedRawError) as caught:
        RawFile(path)
    line = str(caught.value)
    assert "\n" not in line and "not the X-Trans layout" in line and "RAF" in line


def test_bayer_only_steps_refuse_it_in_one_line(tmp_path, tiny_profile, without_shipped_xtrans):
    path, _ = write_xtrans(tmp_path / "x.dng")
    with pytest.raises(UnsupportedRawError, match="X-Trans"):
        decode_raw(path)
    with RawFile(path) as raw:
        with pytest.raises(UnsupportedRawError, match="takes Bayer RAWs only"):
            _ = raw.frame
        converter = Converter(load_profile(tiny_profile), device="cpu")
        with pytest.raises(UnsupportedRawError, match="renders Bayer sensors only — no X-Trans profile is installed"):
            converter.render(raw.mosaic_frame)


# --- the command line ----------------------------------------------------------------------------


def run_cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_info_describes_an_x_trans_file(tmp_path, without_shipped_xtrans):
    metadata = PhotoMetadata(make="FUJIFILM", model="X-T3", iso=800)
    path, _ = write_xtrans(tmp_path / "xt3.dng", make="FUJIFILM", model="X-T3", metadata=metadata)
    result = run_cli("info", path)
    assert result.exit_code == 0, result.output
    assert "FUJIFILM X-T3" in result.stdout and "X-Trans 6×6 pattern" in result.stdout
    assert "no X-Trans profile is installed" in result.stdout
    assert "R 60–62 · G 64–66 · B 62–64 / 4095" in result.stdout  # 36 site levels, shown per colour
    [doc] = json.loads(run_cli("info", path, "--json").stdout)
    assert doc["sensor"] == "X-Trans 6×6" and doc["cfa"] == "xtrans" and doc["cfa_pattern"] == XTRANS
    assert np.array(doc["black_level_per_site"]).shape == (6, 6) and doc["noise"]["a"] > 0


@pytest.mark.slow
def test_a_bayer_profile_refuses_it_in_one_line_and_the_batch_goes_on(tmp_path, tiny_profile, without_shipped_xtrans):
    from test_convert import write_scene_dng

    xtrans, _ = write_xtrans(tmp_path / "fuji.dng")
    bayer = write_scene_dng(tmp_path / "canon.dng")
    out = tmp_path / "out"
    result = run_cli("convert", xtrans, bayer, "-o", out, "--profile", tiny_profile, "--quiet", "--json")
    assert result.exit_code == 1 and "Traceback" not in result.output
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {xtrans}: is an X-Trans RAW") and " — " in line
    assert f"profile '{Path(tiny_profile).stem}' renders Bayer sensors only — no X-Trans profile is installed" in line
    summary = json.loads(result.stdout)
    assert summary["converted"] == 1 and summary["failed"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["canon.tif"]  # nothing of the X-Trans file left behind


def test_the_stripped_raf_keeps_its_clear_line(shared_data):
    raf = shared_data / "bad" / "exiftool" / "FujiFilm.raf"
    with pytest.raises(RawDecodeError) as caught:
        RawFile(raf)
    line = str(caught.value)
    assert "\n" not in line and "damaged or truncated" in line and " — copy it from the card again" in line
    result = run_cli("info", raf)
    assert result.exit_code == 1 and result.stderr.splitlines() == [f"error: {raf}: {line}"]
