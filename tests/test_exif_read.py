"""Metadata reading on the real camera files in ../shared/data (raw/ and the EXIF-only bad/)."""

from __future__ import annotations

import json
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import pytest

from raw2rgb_plugin.io.exif_read import SUBJECT_DISTANCE_INFINITY, PhotoMetadata, read_photo_metadata

F = Fraction

# What each file holds, checked against exiftool's reading of the same files.
EXPECTED = {
    # TIFF-based RAWs read by exifread directly.
    "bad/exiftool/CanonRaw.cr2": dict(
        make="Canon", model="Canon EOS 350D DIGITAL", exposure_time=F(1, 15), f_number=F(8),
        iso=400, focal_length=F(55), datetime_original="2005:08:03 18:59:18", orientation=1),
    "bad/exiftool/Nikon.nef": dict(
        make="NIKON CORPORATION", model="NIKON D70", exposure_time=F(1, 20), f_number=F(7, 2),
        iso=200, focal_length=F(18), datetime_original="2004:06:09 16:02:35"),
    "bad/file-type/fixture-sony-zv-e10.arw": dict(
        make="SONY", model="ZV-E10", lens_model="E PZ 16-50mm F3.5-5.6 OSS", iso=100,
        exposure_time=F(1, 160), f_number=F(18), focal_length=F(29), orientation=6,
        lens_info=(F(16), F(50), F(7, 2), F(28, 5))),
    "bad/exiftool/PhaseOne.iiq": dict(make="Leaf", model="Credo 40", exposure_time=F(1, 1250),
                                      f_number=F(28, 5), iso=100, focal_length=F(80)),
    # Panasonic RW2 has no ISO tag in EXIF (it is in the RW2 IFD): LibRaw supplies it.
    "bad/exiftool/Panasonic.rw2": dict(make="Panasonic", model="DMC-LX3", exposure_time=F(1, 250),
                                       f_number=F(4), iso=80, focal_length=F(51, 10)),
    "bad/exiv2/IMG_1361.dng": dict(
        make="Apple", model="iPhone 12 Pro", lens_make="Apple",
        lens_model="iPhone 12 Pro back triple camera 4.2mm f/1.6", exposure_time=F(1, 5556),
        f_number=F(8, 5), iso=32, focal_length=F(21, 5), datetime_original="2020:12:29 14:24:45",
        orientation=6, lens_info=(F(807365, 524263), F(6), F(8, 5), F(12, 5))),
    # DNG's own LensInfo in IFD0, its f-numbers unknown (0/0).
    "bad/exiftool/DNG.dng": dict(make="Canon", artist="unknown", iso=400,
                                 lens_info=(F(18), F(55), None, None)),
    # Truncated before its EXIF IFD: DateTimeOriginal still sits in IFD0 (TIFF/EP).
    "bad/file-type/fixture-Leica-M10.dng": dict(
        make="Leica Camera AG", model="LEICA M10", datetime_original="2017:01:05 17:54:40",
        orientation=6, exposure_time=None),
    # Kodak writes its EXIF tags into IFD0.
    "raw/RAW_KODAK_DC50.KDC": dict(
        make="Eastman Kodak Company", model="Kodak Digital Science DC50 Zoom Camera",
        exposure_time=F(87, 20000), f_number=F(31, 5), focal_length=F(37),
        copyright="Kodak Digital Camera 50", subject_distance=F(41, 5)),
    # Containers exifread does not parse.
    "bad/exiv2/Canon-R6-pruned.CR3": dict(
        make="Canon", model="Canon EOS R6", lens_model="RF70-200mm F2.8 L IS USM",
        exposure_time=F(1, 4), f_number=F(25), iso=100, focal_length=F(200),
        datetime_original="2021:05:12 12:21:21", artist="Johannes Kimmel", copyright="CCO",
        orientation=1, lens_info=(F(70), F(200), None, None), subject_distance=None),
    "bad/file-type/fixture.cr3": dict(make="Canon", model="Canon EOS R", orientation=6,
                                      lens_model="EF24-105mm f/4L IS USM", iso=100,
                                      exposure_time=F(1, 125), artist=None,
                                      # Canon writes 0, not 0/0, for the f-numbers it leaves out
                                      lens_info=(F(24), F(105), None, None)),
    "bad/exiftool/FujiFilm.raf": dict(make="FUJIFILM", model="FinePix S5Pro", iso=100,
                                      exposure_time=F(1, 250), f_number=F(8),
                                      focal_length=F(70), copyright=None),
    "bad/exiftool/Minolta.mrw": dict(make="Konica Minolta Camera, Inc.", model="DiMAGE A2",
                                     exposure_time=F(1, 5), f_number=F(14, 5), iso=64,
                                     focal_length=F(461, 64)),
    "bad/exiv2/exiv2-canon-powershot-s40.crw": dict(make="Canon", model="Canon PowerShot S40"),
    # CRW: camera name from the CIFF heap, the rest from LibRaw.
    "raw/RAW_CANON_D30_SRGB.CRW": dict(
        make="Canon", model="Canon EOS D30", iso=100, f_number=F(11), focal_length=F(100),
        artist="Marc-Andre Keune", datetime_original="2002:11:24 15:11:22"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reads_known_fields(shared_data: Path, name: str) -> None:
    metadata = read_photo_metadata(shared_data / name)
    for field, value in EXPECTED[name].items():
        assert getattr(metadata, field) == value, field


def test_every_shared_file_reads_without_raising(shared_data: Path) -> None:
    files = sorted(p for folder in ("raw", "bad") for p in (shared_data / folder).rglob("*")
                   if p.is_file() and not p.name.startswith("."))
    assert len(files) >= 18
    for path in files:
        metadata = read_photo_metadata(path)
        json.dumps(metadata.summary())
        if metadata.datetime_original is not None:
            datetime.strptime(metadata.datetime_original, "%Y:%m:%d %H:%M:%S")


def test_gps_from_dng(shared_data: Path) -> None:
    gps = read_photo_metadata(shared_data / "bad/exiv2/IMG_1361.dng").gps
    assert gps is not None
    assert (gps.latitude, gps.latitude_ref) == ((F(34), F(3), F(3459, 100)), "N")
    assert (gps.longitude, gps.longitude_ref) == ((F(84), F(40), F(5421, 100)), "W")
    assert (gps.altitude, gps.altitude_ref, gps.datestamp) == (F(584155, 2238), 0, "2020:12:29")
    summary = read_photo_metadata(shared_data / "bad/exiv2/IMG_1361.dng").summary()["gps"]
    assert summary["latitude"] == pytest.approx(34 + 3 / 60 + 34.59 / 3600)
    assert summary["longitude"] == pytest.approx(-(84 + 40 / 60 + 54.21 / 3600))
    assert summary["altitude"] == pytest.approx(261.0165, abs=1e-4)


def test_sigma_x3f_without_exif_gives_nones(shared_data: Path) -> None:
    assert read_photo_metadata(shared_data / "bad/exiftool/Sigma.x3f") == PhotoMetadata()


def test_passed_rawpy_handle_fills_gaps(shared_data: Path) -> None:
    rawpy = pytest.importorskip("rawpy")
    path = shared_data / "raw/RAW_CANON_D30_SRGB.CRW"
    with rawpy.imread(str(path)) as raw:
        assert read_photo_metadata(path, raw) == read_photo_metadata(path)


def test_libraw_values_become_exif_like_fractions(tmp_path: Path) -> None:
    blank = tmp_path / "blank.raw"
    blank.write_bytes(bytes(64))
    raw = SimpleNamespace(
        other=SimpleNamespace(iso_speed=3200.0, shutter_speed=0.004000000189989805,
                              aperture=1.600000023841858, focal_length=4.199999809265137,
                              timestamp=datetime(2020, 12, 29, 14, 24, 45), artist=" Ann \x00"),
        lens=SimpleNamespace(make="", model="RF50mm F1.8 STM"))
    metadata = read_photo_metadata(blank, raw)
    assert (metadata.iso, metadata.exposure_time, metadata.f_number, metadata.focal_length) == (
        3200, F(1, 250), F(8, 5), F(21, 5))
    assert (metadata.lens_make, metadata.lens_model) == (None, "RF50mm F1.8 STM")
    assert (metadata.datetime_original, metadata.artist) == ("2020:12:29 14:24:45", "Ann")


def test_libraw_gives_the_focal_range_of_a_lens_but_no_f_numbers(tmp_path: Path) -> None:
    blank = tmp_path / "blank.raw"
    blank.write_bytes(bytes(64))
    raw = SimpleNamespace(
        other=SimpleNamespace(iso_speed=0.0, shutter_speed=0.0, aperture=0.0, focal_length=0.0,
                              timestamp=datetime.fromtimestamp(0), artist=""),
        lens=SimpleNamespace(make="", model="EF-S18-55mm f/3.5-5.6 IS", min_focal=18.0, max_focal=55.0))
    assert read_photo_metadata(blank, raw).lens_info == (F(18), F(55), None, None)


def test_libraw_unknowns_stay_none(tmp_path: Path) -> None:
    blank = tmp_path / "blank.raw"
    blank.write_bytes(bytes(64))
    raw = SimpleNamespace(
        other=SimpleNamespace(iso_speed=0.0, shutter_speed=0.0, aperture=0.0, focal_length=0.0,
                              timestamp=datetime.fromtimestamp(0), artist=""),
        lens=SimpleNamespace(make="", model="", min_focal=0.0, max_focal=0.0))
    assert read_photo_metadata(blank, raw) == PhotoMetadata()


@pytest.mark.parametrize("content", [b"", b"not a raw file at all", b"II*\x00\xff\xff\xff\xff",
                                     b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01" + bytes(64),
                                     b"II\x1a\x00\x00\x00HEAPCCDR" + bytes(12) + b"\xff" * 4,
                                     b"FUJIFILMCCD-RAW " + bytes(68) + b"\xff" * 8])
def test_garbage_gives_nones(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.raw"
    path.write_bytes(content)
    assert read_photo_metadata(path) == PhotoMetadata()


def test_missing_file_gives_nones(tmp_path: Path) -> None:
    assert read_photo_metadata(tmp_path / "absent.cr2") == PhotoMetadata()


def test_summary_is_json_friendly() -> None:
    summary = PhotoMetadata(make="Canon", exposure_time=F(1, 250), f_number=F(28, 10),
                            focal_length=F(51, 10), iso=100).summary()
    assert json.loads(json.dumps(summary)) == summary
    assert (summary["exposure_time"], summary["f_number"], summary["focal_length"]) == (
        "1/250", 2.8, 5.1)
    assert summary["gps"] is None and summary["lens_model"] is None


def test_summary_of_the_lens_range_and_distance() -> None:
    summary = PhotoMetadata(lens_info=(F(18), F(55), F(7, 2), None), subject_distance=F(3, 2)).summary()
    assert json.loads(json.dumps(summary)) == summary
    assert (summary["lens_info"], summary["subject_distance"]) == ([18.0, 55.0, 3.5, None], 1.5)
    infinity = PhotoMetadata(subject_distance=SUBJECT_DISTANCE_INFINITY).summary()
    assert json.loads(json.dumps(infinity, allow_nan=False))["subject_distance"] == "infinity"
    assert PhotoMetadata().summary()["lens_info"] is None


def _tiff_with_tags(path: Path, ifd0: dict[int, list[int]], exif: dict[int, list[int]]) -> Path:
    """A small TIFF whose IFD0 and EXIF IFD hold the given RATIONAL tags (flat num, den lists),
    written here with tifftools, not with raw2rgb's own writer."""
    import numpy as np
    import tifffile
    import tifftools
    from tifftools import Datatype, Tag

    tifffile.imwrite(path, np.zeros((8, 8), np.uint8))
    info = tifftools.read_tiff(str(path))
    tags = info["ifds"][0]["tags"]
    tags.update({tag: {"datatype": Datatype.RATIONAL, "data": data} for tag, data in ifd0.items()})
    tags[int(Tag.EXIFIFD)] = {"datatype": Datatype.IFD, "ifds": [[{"tags": {
        tag: {"datatype": Datatype.RATIONAL, "data": data} for tag, data in exif.items()}}]]}
    tifftools.write_tiff(info, str(path), allowExisting=True)
    return path


LENS_SPECIFICATION, SUBJECT_DISTANCE, DNG_LENS_INFO = 0xA432, 0x9206, 0xC630


@pytest.mark.parametrize("ifd0,exif,lens_info,distance", [
    # EXIF 2.3: unknown parts of the range are 0/0; 0xFFFFFFFF metres is infinity
    ({}, {LENS_SPECIFICATION: [24, 1, 70, 1, 28, 10, 0, 0], SUBJECT_DISTANCE: [0xFFFFFFFF, 1]},
     (F(24), F(70), F(14, 5), None), SUBJECT_DISTANCE_INFINITY),
    # a distance of 0 means unknown; a range all 0/0 is no range
    ({}, {LENS_SPECIFICATION: [0, 0] * 4, SUBJECT_DISTANCE: [0, 1]}, None, None),
    # DNG's LensInfo in IFD0, read when EXIF has no LensSpecification
    ({DNG_LENS_INFO: [50, 1, 50, 1, 18, 10, 18, 10]}, {SUBJECT_DISTANCE: [375, 100]},
     (F(50), F(50), F(9, 5), F(9, 5)), F(15, 4)),
    # both: the EXIF one wins, as everywhere in the reader
    ({DNG_LENS_INFO: [1, 1] * 4}, {LENS_SPECIFICATION: [18, 1, 55, 1, 35, 10, 56, 10]},
     (F(18), F(55), F(7, 2), F(28, 5)), None),
])
def test_lens_range_and_subject_distance(tmp_path: Path, ifd0, exif, lens_info, distance) -> None:
    metadata = read_photo_metadata(_tiff_with_tags(tmp_path / "lens.tif", ifd0, exif))
    assert (metadata.lens_info, metadata.subject_distance) == (lens_info, distance)
