"""16-bit TIFF output: pixels, ICC, EXIF/GPS IFDs read back by tifffile and exifread; atomicity."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import exifread
import numpy as np
import pytest
import tifffile
from PIL import ImageCms

from raw2rgb_plugin.errors import OutputError
from raw2rgb_plugin.io import icc, tiff_write
from raw2rgb_plugin.io.exif_read import SUBJECT_DISTANCE_INFINITY, GpsInfo, PhotoMetadata, read_photo_metadata
from raw2rgb_plugin.io.icc import icc_profile_bytes
from raw2rgb_plugin.io.tiff_write import rational_values, write_rgb16_tiff

F = Fraction

METADATA = PhotoMetadata(
    make="Canon", model="Canon EOS R6", lens_make="Canon", lens_model="RF70-200mm F2.8 L IS USM",
    exposure_time=F(1, 250), f_number=F(14, 5), iso=6400, focal_length=F(200),
    lens_info=(F(70), F(200), F(14, 5), F(14, 5)), subject_distance=F(53, 10),
    datetime_original="2021:05:12 12:21:21", artist="Jürgen Müller", copyright="CC0 1.0",
    orientation=6,
    gps=GpsInfo(latitude=(F(34), F(3), F(3459, 100)), latitude_ref="N",
                longitude=(F(84), F(40), F(5421, 100)), longitude_ref="W",
                altitude=F(584155, 2238), altitude_ref=0,
                timestamp=(F(19), F(24), F(45)), datestamp="2020:12:29"),
)


def _image(height: int = 48, width: int = 80, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65536, (height, width, 3), dtype=np.uint16)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name)


# --- ICC --------------------------------------------------------------------------------------

def test_icc_is_identical_in_separate_processes() -> None:
    script = ("import hashlib; from raw2rgb_plugin.io.icc import icc_profile_bytes; "
              "print(hashlib.sha256(icc_profile_bytes()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              check=True).stdout.strip() for _ in range(2)}
    assert digests == {hashlib.sha256(icc_profile_bytes("srgb")).hexdigest()}


def test_icc_parses_as_srgb_with_pinned_date() -> None:
    data = icc_profile_bytes()
    profile = ImageCms.ImageCmsProfile(io.BytesIO(data))
    assert "sRGB" in ImageCms.getProfileDescription(profile)
    assert data[36:40] == b"acsp" and data[24:36] == icc._PINNED_DATE
    assert icc_profile_bytes("sRGB") is data  # cached


def test_icc_unknown_colour_space() -> None:
    with pytest.raises(ValueError, match="prophoto"):
        icc_profile_bytes("prophoto")


def test_icc_profile_id_is_recomputed_after_pinning() -> None:
    # A profile that carries an ID must keep a valid one (ICC.1:2010 7.2.18) once re-dated.
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile[84:100] = b"\x01" * 16
    pinned = icc._pin_creation_date(bytes(profile))
    check = bytearray(pinned)
    check[44:48], check[64:68], check[84:100] = bytes(4), bytes(4), bytes(16)
    assert pinned[84:100] == hashlib.md5(check).digest()
    assert pinned[24:36] == icc._PINNED_DATE


# --- TIFF content -----------------------------------------------------------------------------

@pytest.mark.parametrize("compress", [False, True])
def test_pixels_icc_and_baseline_tags(tmp_path: Path, compress: bool) -> None:
    rgb = _image()
    path = tmp_path / "out.tif"
    write_rgb16_tiff(path, rgb, icc=icc_profile_bytes(), metadata=METADATA,
                     software="raw2rgb 0.1.0", compress=compress)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert len(tif.pages) == 1
        np.testing.assert_array_equal(page.asarray(), rgb)
        assert page.dtype == np.uint16 and page.shape == rgb.shape
        assert page.photometric == tifffile.PHOTOMETRIC.RGB
        assert page.planarconfig == tifffile.PLANARCONFIG.CONTIG
        tags = page.tags
        assert tags["InterColorProfile"].value == icc_profile_bytes()
        assert tags["Orientation"].value == 1  # pixels are written display-oriented
        assert tags["Software"].value == "raw2rgb 0.1.0"
        assert (tags["Make"].value, tags["Model"].value) == ("Canon", "Canon EOS R6")
        assert (tags["Artist"].value, tags["Copyright"].value) == ("Jürgen Müller", "CC0 1.0")
        assert tags["DateTime"].value == "2021:05:12 12:21:21"
        if compress:
            assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
            assert page.predictor == tifffile.PREDICTOR.HORIZONTAL
        else:
            assert page.compression == tifffile.COMPRESSION.NONE


def test_exif_and_gps_read_back_with_exifread(tmp_path: Path) -> None:
    path = tmp_path / "out.tif"
    write_rgb16_tiff(path, _image(), icc=icc_profile_bytes(), metadata=METADATA, software="t")
    with open(path, "rb") as fh:
        tags = exifread.process_file(fh, details=False)
    assert tags["EXIF ExposureTime"].values == [F(1, 250)]
    assert tags["EXIF FNumber"].values == [F(14, 5)]
    assert tags["EXIF ISOSpeedRatings"].values == [6400]
    assert tags["EXIF FocalLength"].values == [F(200)]
    assert tags["EXIF DateTimeOriginal"].values == "2021:05:12 12:21:21"
    assert tags["EXIF LensMake"].values == "Canon"
    assert tags["EXIF LensModel"].values == "RF70-200mm F2.8 L IS USM"
    assert tags["EXIF LensSpecification"].values == [F(70), F(200), F(14, 5), F(14, 5)]
    assert tags["EXIF SubjectDistance"].values == [F(53, 10)]
    assert tags["GPS GPSLatitudeRef"].values == "N"
    assert tags["GPS GPSLatitude"].values == [F(34), F(3), F(3459, 100)]
    assert tags["GPS GPSLongitudeRef"].values == "W"
    assert tags["GPS GPSLongitude"].values == [F(84), F(40), F(5421, 100)]
    assert tags["GPS GPSAltitude"].values == [F(584155, 2238)]
    assert tags["GPS GPSAltitudeRef"].values == [0]
    assert tags["GPS GPSTimeStamp"].values == [F(19), F(24), F(45)]
    assert tags["GPS GPSDate"].values == "2020:12:29"
    # And the engine's own reader gives back what went in (orientation is now 1).
    assert read_photo_metadata(path) == PhotoMetadata(**{**METADATA.__dict__, "orientation": 1})


def test_lens_range_lives_in_the_exif_ifd_with_unknowns_as_0_over_0(tmp_path: Path) -> None:
    path = tmp_path / "out.tif"
    metadata = PhotoMetadata(lens_model="EF-S18-55mm f/3.5-5.6 IS", lens_info=(F(18), F(55), None, None),
                             subject_distance=SUBJECT_DISTANCE_INFINITY)
    write_rgb16_tiff(path, _image(8, 8), icc=icc_profile_bytes(), metadata=metadata, software="t")
    with tifffile.TiffFile(path) as tif:
        ifd0 = tif.pages[0].tags
        exif = ifd0["ExifTag"].value
    # EXIF's LensSpecification; DNG's LensInfo (0xC630) is a DNG tag, not a TIFF's
    assert 0xC630 not in ifd0 and 0xA432 not in ifd0
    assert tuple(exif["LensSpecification"]) == (18, 1, 55, 1, 0, 0, 0, 0)
    assert tuple(exif["SubjectDistance"]) == (0xFFFFFFFF, 1)  # EXIF's infinity
    back = read_photo_metadata(path)
    assert (back.lens_info, back.subject_distance) == (metadata.lens_info, SUBJECT_DISTANCE_INFINITY)


def test_iso_above_short_range_goes_to_iso_speed(tmp_path: Path) -> None:
    path = tmp_path / "out.tif"
    metadata = PhotoMetadata(iso=204800)
    write_rgb16_tiff(path, _image(8, 8), icc=icc_profile_bytes(), metadata=metadata, software="t")
    with open(path, "rb") as fh:
        tags = exifread.process_file(fh, details=False)
    assert tags["EXIF ISOSpeedRatings"].values == [65535]
    assert tags["EXIF SensitivityType"].values == [3]
    assert tags["EXIF ISOSpeed"].values == [204800]
    assert read_photo_metadata(path).iso == 204800


def test_without_metadata_there_is_no_exif_ifd(tmp_path: Path) -> None:
    path = tmp_path / "out.tif"
    write_rgb16_tiff(path, _image(), icc=icc_profile_bytes(), metadata=None, software="t")
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        assert "ExifTag" not in tags and "GPSTag" not in tags and "Make" not in tags
        assert tags["Orientation"].value == 1
    assert read_photo_metadata(path) == PhotoMetadata(orientation=1)


def test_rejects_wrong_arrays(tmp_path: Path) -> None:
    for bad in (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint16),
                np.zeros((4, 4, 4), np.uint16), np.zeros((0, 4, 3), np.uint16)):
        with pytest.raises(ValueError):
            write_rgb16_tiff(tmp_path / "x.tif", bad, icc=icc_profile_bytes(), metadata=None,
                             software="t")
    assert list(tmp_path.iterdir()) == []


def test_rational_values() -> None:
    assert rational_values([F(1, 250), 2.5, 3]) == [1, 250, 5, 2, 3, 1]
    assert rational_values([-0.25], signed=True) == [-1, 4]
    approx = rational_values([F(1, 3 * 2**40)])
    assert approx[1] <= 2**32 - 1 and approx[0] / approx[1] == pytest.approx(1 / (3 * 2**40))
    with pytest.raises(ValueError):
        rational_values([-1])
    with pytest.raises(ValueError):
        rational_values([2**33])


# --- no clobbering, no partial files ----------------------------------------------------------

def test_existing_file_is_kept_without_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "out.tif"
    path.write_bytes(b"precious")
    with pytest.raises(OutputError, match="already exists"):
        write_rgb16_tiff(path, _image(), icc=icc_profile_bytes(), metadata=None, software="t")
    assert path.read_bytes() == b"precious"
    assert _leftovers(tmp_path) == []


def test_overwrite_replaces(tmp_path: Path) -> None:
    path = tmp_path / "out.tif"
    path.write_bytes(b"old")
    rgb = _image()
    write_rgb16_tiff(path, rgb, icc=icc_profile_bytes(), metadata=None, software="t",
                     overwrite=True)
    np.testing.assert_array_equal(tifffile.imread(path), rgb)
    assert _leftovers(tmp_path) == []


def test_file_created_during_the_write_is_not_clobbered(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "out.tif"
    real_imwrite = tifffile.imwrite

    def racing_imwrite(*args, **kwargs):
        path.write_bytes(b"written by someone else meanwhile")
        return real_imwrite(*args, **kwargs)

    monkeypatch.setattr(tiff_write.tifffile, "imwrite", racing_imwrite)
    with pytest.raises(OutputError, match="appeared"):
        write_rgb16_tiff(path, _image(), icc=icc_profile_bytes(), metadata=None, software="t")
    assert path.read_bytes() == b"written by someone else meanwhile"
    assert _leftovers(tmp_path) == []


def test_failure_leaves_no_files(tmp_path: Path, monkeypatch) -> None:
    def broken_write(*args, **kwargs):
        raise RuntimeError("encoder crashed")

    monkeypatch.setattr(tiff_write.tifftools, "write_tiff", broken_write)
    with pytest.raises(RuntimeError, match="encoder crashed"):
        write_rgb16_tiff(tmp_path / "out.tif", _image(), icc=icc_profile_bytes(),
                         metadata=METADATA, software="t")
    assert list(tmp_path.iterdir()) == []


def test_disk_full_is_an_output_error(tmp_path: Path, monkeypatch) -> None:
    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tiff_write.tifftools, "write_tiff", full_disk)
    with pytest.raises(OutputError, match="No space left"):
        write_rgb16_tiff(tmp_path / "out.tif", _image(), icc=icc_profile_bytes(),
                         metadata=None, software="t")
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_is_an_output_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="cannot write"):
        write_rgb16_tiff(tmp_path / "absent" / "out.tif", _image(), icc=icc_profile_bytes(),
                         metadata=None, software="t")


def test_success_leaves_only_the_output(tmp_path: Path) -> None:
    write_rgb16_tiff(tmp_path / "out.tif", _image(), icc=icc_profile_bytes(), metadata=METADATA,
                     software="t", compress=True)
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]
