"""Bayer DNG output, read back by rawpy/LibRaw (as the engine will), tifffile and exifread."""

from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import exifread
import numpy as np
import pytest
import rawpy
import tifffile

from raw2rgb_plugin.errors import OutputError
from raw2rgb_plugin.io.dng_write import CFA_ORDERS, write_bayer_dng
from raw2rgb_plugin.io.exif_read import GpsInfo, PhotoMetadata, read_photo_metadata

from helpers import TEST_XYZ_TO_CAMERA, dng_opcode_list, warp_rectilinear

F = Fraction

# LibRaw's raw_pattern per order (0=R, 1=G, 2=B, 3=second G), measured in shared/data/README.md.
RAW_PATTERN = {"RGGB": [[0, 1], [3, 2]], "BGGR": [[2, 3], [1, 0]],
               "GRBG": [[1, 0], [2, 3]], "GBRG": [[3, 2], [0, 1]]}
# EXIF orientation → LibRaw sizes.flip.
LIBRAW_FLIP = {1: 0, 2: 1, 3: 3, 4: 2, 5: 4, 6: 6, 7: 7, 8: 5}

# The XYZ→linear-sRGB(D65) inverse LibRaw uses (its xyz_rgb table).
SRGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423],
                        [0.212671, 0.715160, 0.072169],
                        [0.019334, 0.119193, 0.950227]])
NEUTRAL = (0.5, 1.0, 0.625)
BLACKS = (60, 61, 62, 63)  # per 2×2 site, row-major in CFA order

METADATA = PhotoMetadata(
    make="Ignored", model="Ignored", lens_model="RF50mm F1.8 STM", exposure_time=F(1, 60),
    f_number=F(18, 10), iso=800, focal_length=F(50), datetime_original="2024:03:01 10:20:30",
    artist="Ann Example", lens_info=(F(50), F(50), F(9, 5), F(9, 5)), subject_distance=F(12, 10),
    gps=GpsInfo((F(47), F(22), F(1234, 100)), "N", (F(8), F(32), F(5, 1)), "E"))


def _mosaic(height: int = 64, width: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(64, 4095, (height, width), dtype=np.uint16)


def _write(path: Path, mosaic: np.ndarray, cfa: str, **overrides) -> Path:
    options = dict(black_level=BLACKS, white_level=4095, color_matrix1=TEST_XYZ_TO_CAMERA,
                   as_shot_neutral=NEUTRAL)
    options.update(overrides)
    write_bayer_dng(path, mosaic, cfa, **options)
    return path


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
@pytest.mark.parametrize("cfa", CFA_ORDERS)
def test_libraw_reads_what_was_written(tmp_path: Path, cfa: str, orientation: int) -> None:
    mosaic = _mosaic()
    path = _write(tmp_path / "x.dng", mosaic, cfa, orientation=orientation)
    with rawpy.imread(str(path)) as raw:
        assert raw.raw_type == rawpy.RawType.Flat
        assert raw.raw_pattern.tolist() == RAW_PATTERN[cfa]
        assert raw.raw_colors_visible[:2, :2].tolist() == RAW_PATTERN[cfa]
        np.testing.assert_array_equal(raw.raw_image_visible, mosaic)
        assert raw.white_level == 4095
        assert raw.sizes.flip == LIBRAW_FLIP[orientation]
        # black_level_per_channel is indexed by colour: site k of the 2×2 block has colour
        # raw_pattern.flat[k].
        expected_black = [0] * 4
        for site, colour in enumerate(np.asarray(RAW_PATTERN[cfa]).ravel()):
            expected_black[colour] = BLACKS[site]
        assert list(raw.black_level_per_channel) == expected_black
        wb = np.asarray(raw.camera_whitebalance[:3], dtype=np.float64)
        inverse_neutral = 1 / np.asarray(NEUTRAL)
        np.testing.assert_allclose(wb / wb[1], inverse_neutral / inverse_neutral[1], rtol=1e-5)
        # LibRaw turns ColorMatrix1 into camera→sRGB: inverse of row-normalised CM1·sRGB→XYZ.
        camera_from_srgb = TEST_XYZ_TO_CAMERA @ SRGB_TO_XYZ
        camera_from_srgb /= camera_from_srgb.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(raw.color_matrix[:, :3], np.linalg.inv(camera_from_srgb),
                                   atol=2e-4)
        # For DNGs LibRaw leaves the XYZ→camera table empty (raw-io.md).
        assert not np.any(raw.rgb_xyz_matrix)


@pytest.mark.parametrize("orientation", [2, 4, 5, 7])
def test_mirrored_orientations_map_to_libraw_flips(tmp_path: Path, orientation: int) -> None:
    path = _write(tmp_path / "x.dng", _mosaic(24, 32), "RGGB", orientation=orientation)
    with rawpy.imread(str(path)) as raw:
        assert raw.sizes.flip == LIBRAW_FLIP[orientation]


def test_dng_tags(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.dng", _mosaic(), "GRBG", baseline_exposure=-0.75,
                  make="raw2rgb", model="Unprocessed")
    with tifffile.TiffFile(path) as tif:
        tags = {tag.code: tag.value for tag in tif.pages[0].tags}
    assert tags[254] == 0 and tags[262] == 32803  # NewSubfileType, PhotometricInterpretation CFA
    assert tuple(tags[50706]) == (1, 4, 0, 0)
    assert tuple(tags[33421]) == (2, 2) and bytes(tags[33422]) == bytes([1, 0, 2, 1])
    assert tags[50708] == "raw2rgb Unprocessed"
    assert (tags[271], tags[272]) == ("raw2rgb", "Unprocessed")
    assert tuple(tags[50713]) == (2, 2) and tuple(tags[50714]) == BLACKS
    assert tags[50778] == 21  # D65
    cm = np.array(tags[50721], dtype=np.float64).reshape(9, 2)
    np.testing.assert_allclose(cm[:, 0] / cm[:, 1], TEST_XYZ_TO_CAMERA.ravel(), atol=1e-9)
    neutral = np.array(tags[50728], dtype=np.float64).reshape(3, 2)
    np.testing.assert_allclose(neutral[:, 0] / neutral[:, 1], NEUTRAL)
    assert tags[50730][0] / tags[50730][1] == -0.75


def test_odd_sizes_survive(tmp_path: Path) -> None:
    mosaic = _mosaic(33, 47)
    path = _write(tmp_path / "x.dng", mosaic, "GBRG")
    with rawpy.imread(str(path)) as raw:
        np.testing.assert_array_equal(raw.raw_image_visible, mosaic)
        assert raw.raw_colors_visible[:2, :2].tolist() == RAW_PATTERN["GBRG"]


def test_single_and_fractional_black_levels(tmp_path: Path) -> None:
    path = _write(tmp_path / "one.dng", _mosaic(), "RGGB", black_level=512)
    with rawpy.imread(str(path)) as raw:
        assert list(raw.black_level_per_channel) == [512] * 4
    path = _write(tmp_path / "frac.dng", _mosaic(), "RGGB", black_level=63.5)
    with tifffile.TiffFile(path) as tif:
        assert tuple(tif.pages[0].tags[50714].value) == (127, 2)
        assert 50713 not in tif.pages[0].tags  # one value: the default 1×1 repeat


def test_exif_from_metadata(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.dng", _mosaic(), "BGGR", metadata=METADATA, make="Canon",
                  model="EOS R8")
    with open(path, "rb") as fh:
        tags = exifread.process_file(fh, details=False)
    assert (tags["Image Make"].values, tags["Image Model"].values) == ("Canon", "EOS R8")
    assert tags["Image Artist"].values == "Ann Example"
    assert tags["EXIF ExposureTime"].values == [F(1, 60)]
    assert tags["EXIF FNumber"].values == [F(9, 5)]
    assert tags["EXIF ISOSpeedRatings"].values == [800]
    assert tags["EXIF FocalLength"].values == [F(50)]
    assert tags["EXIF DateTimeOriginal"].values == "2024:03:01 10:20:30"
    assert tags["EXIF LensModel"].values == "RF50mm F1.8 STM"
    assert tags["Image Tag 0xC630"].values == tags["EXIF LensSpecification"].values == [F(50), F(50), F(9, 5), F(9, 5)]
    assert tags["EXIF SubjectDistance"].values == [F(6, 5)]
    assert tags["GPS GPSLatitude"].values == [F(47), F(22), F(1234, 100)]
    back = read_photo_metadata(path)
    assert back == PhotoMetadata(**{**METADATA.__dict__, "make": "Canon", "model": "EOS R8",
                                    "orientation": 1})


def test_opcode_list_3_in_the_raw_ifd(tmp_path: Path) -> None:
    opcodes = dng_opcode_list(warp_rectilinear((1.0, -0.01, 0.0, 0.0)))
    path = _write(tmp_path / "x.dng", _mosaic(), "RGGB", opcode_list3=opcodes)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].tags[51022].value == opcodes  # IFD0 holds the mosaic here
    with rawpy.imread(str(path)) as raw:
        np.testing.assert_array_equal(raw.raw_image_visible, _mosaic())


def test_without_optional_colour_tags(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.dng", _mosaic(), "RGGB", color_matrix1=None,
                  as_shot_neutral=None)
    with tifffile.TiffFile(path) as tif:
        codes = {tag.code for tag in tif.pages[0].tags}
    assert not codes & {50721, 50778, 50728, 50730}
    with rawpy.imread(str(path)) as raw:
        np.testing.assert_array_equal(raw.raw_image_visible, _mosaic())


@pytest.mark.parametrize("bad", [
    dict(cfa="RGBG"), dict(mosaic=np.zeros((32, 32), np.uint8)),
    dict(mosaic=np.zeros((32, 32, 3), np.uint16)), dict(mosaic=np.zeros((21, 64), np.uint16)),
    dict(white_level=60), dict(white_level=70000), dict(orientation=9),
    dict(black_level=(1, 2, 3)), dict(color_matrix1=np.eye(4)),
    dict(color_matrix1=np.full((3, 3), np.nan)), dict(as_shot_neutral=(1.0, 0.0, 1.0)),
])
def test_rejects_bad_arguments(tmp_path: Path, bad: dict) -> None:
    mosaic = bad.pop("mosaic", _mosaic(32, 32))
    cfa = bad.pop("cfa", "RGGB")
    with pytest.raises(ValueError):
        _write(tmp_path / "x.dng", mosaic, cfa, **bad)
    assert list(tmp_path.iterdir()) == []


def test_replaces_unless_told_not_to(tmp_path: Path) -> None:
    path = tmp_path / "x.dng"
    path.write_bytes(b"old")
    _write(path, _mosaic(), "RGGB")
    with rawpy.imread(str(path)) as raw:
        np.testing.assert_array_equal(raw.raw_image_visible, _mosaic())
    with pytest.raises(OutputError):
        _write(path, _mosaic(), "RGGB", overwrite=False)
    assert [p.name for p in tmp_path.iterdir()] == ["x.dng"]


@pytest.mark.hosts
@pytest.mark.skipif(shutil.which("darktable-cli") is None, reason="darktable is not installed")
def test_darktable_develops_the_dng(tmp_path: Path) -> None:
    mosaic = _mosaic(64, 96)
    path = _write(tmp_path / "in.dng", mosaic, "GRBG", orientation=6)
    out = tmp_path / "out.png"
    config = tmp_path / "config"
    config.mkdir()
    result = subprocess.run(
        ["darktable-cli", str(path), str(out), "--core", "--configdir", str(config),
         "--cachedir", str(config / "cache"), "--library", ":memory:",
         "--conf", "write_sidecar_files=never"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    from PIL import Image

    with Image.open(out) as developed:
        assert developed.size == (64, 96)  # orientation 6 applied: portrait
