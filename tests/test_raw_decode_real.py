"""The decoder on real camera files from ../shared/data (skipped when absent)."""

import numpy as np
import pytest

from raw2rgb_plugin.errors import RawDecodeError, UnsupportedRawError
from raw2rgb_plugin.io.raw_file import decode_raw
from raw2rgb_plugin.pipeline.normalization import network_input


def test_canon_d30_invalid_as_shot_wb_falls_back_to_daylight(shared_data):
    frame = decode_raw(shared_data / "raw" / "RAW_CANON_D30_SRGB.CRW")
    assert frame.cfa_pattern == "RGGB"
    assert (frame.height, frame.width) == (1448, 2176)
    assert np.all(frame.black_level_per_site == 126) and frame.white_level == 4095
    assert frame.wb_source == "daylight"
    assert frame.wb_gains_rgb[1] == 1.0 and frame.wb_gains_rgb[0] > 1.5
    assert frame.matrix_source == "rgb_xyz_matrix"
    assert np.allclose(frame.camera_to_srgb.sum(axis=1), 1.0, atol=1e-4)
    assert any("invalid" in note for note in frame.notes)


def test_kodak_dc50_grbg_with_no_matrix(shared_data):
    frame = decode_raw(shared_data / "raw" / "RAW_KODAK_DC50.KDC")
    assert frame.cfa_pattern == "GRBG"
    assert frame.white_level == 16383 and np.all(frame.black_level_per_site == 0)
    assert frame.wb_source == "as-shot" and np.allclose(frame.wb_gains_rgb, 1.0)
    assert frame.matrix_source == "identity"
    net = network_input(frame, "wb+ccm")
    assert net.packed.shape == (1, 4, 256, 385)  # 768 + 2 padded columns for the GRBG phase
    assert 0.0 <= float(net.packed.min()) and float(net.packed.max()) <= 1.0


@pytest.mark.parametrize(
    "name,error,words",
    [
        # stripped or cut short: damaged, not "not a RAW format" (their first bytes say what they are)
        ("exiftool/CanonRaw.cr2", RawDecodeError, "Canon CR2 file that LibRaw cannot read: damaged or truncated"),
        ("exiftool/Nikon.nef", RawDecodeError, "damaged"),
        ("exiftool/FujiFilm.raf", RawDecodeError, "damaged"),
        ("exiftool/Sigma.x3f", RawDecodeError, "damaged"),
        ("exiftool/DNG.dng", RawDecodeError, "no image data"),
        ("exiftool/Panasonic.rw2", RawDecodeError, "no image data"),
        ("exiv2/IMG_1361.dng", UnsupportedRawError, "not a Bayer mosaic"),
        ("file-type/fixture-sony-zv-e10.arw", RawDecodeError, "ARW file that LibRaw cannot read: damaged or truncated"),
        ("file-type/fixture.cr3", RawDecodeError, "damaged"),
    ],
)
def test_bad_files_fail_with_one_line_that_says_why(shared_data, name, error, words):
    with pytest.raises(error) as info:
        decode_raw(shared_data / "bad" / name)
    message = str(info.value)
    assert words in message and "\n" not in message and " — " in message


def test_missing_file(tmp_path):
    with pytest.raises(RawDecodeError, match="does not exist"):
        decode_raw(tmp_path / "nope.nef")
