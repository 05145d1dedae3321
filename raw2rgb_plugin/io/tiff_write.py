"""16-bit RGB TIFF output with an ICC profile and a real EXIF (and GPS) IFD, written atomically.

tifffile writes the pixels but cannot write an EXIF sub-IFD, so the file is assembled in two
passes: tifffile encodes the image into memory, then tifftools copies it into the output
adding the text tags (UTF-8, which tifffile refuses) and the EXIF/GPS IFDs. The output
appears under its final name only when complete: a crash or a full disk never leaves a
half-written TIFF that a photo manager would import.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import tifffile
import tifftools
from tifftools import Datatype, Tag
from tifftools.constants import EXIFTag, GPSTag

from raw2rgb_plugin.io.exif_read import GpsInfo, LensInfo, PhotoMetadata
from raw2rgb_plugin.io.files import atomic_output

# Deflate level 1 is several times faster than the default 6 and, after the horizontal
# predictor, within a few percent of its size on 16-bit photographs.
_DEFLATE_LEVEL = 1

_UINT32_MAX = 2**32 - 1
_INT32_MAX = 2**31 - 1

TagDict = dict[int, dict[str, Any]]  # tifftools' IFD "tags" layout


def write_rgb16_tiff(path: Path, rgb: np.ndarray, *, icc: bytes, metadata: PhotoMetadata | None,
                     software: str, compress: bool = False, overwrite: bool = False) -> None:
    """Write `rgb` (uint16, H×W×3, display-oriented) as an RGB TIFF with Orientation = 1.

    Raises OutputError if `path` exists and not `overwrite`, or if it cannot be written.
    """
    if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint16 and rgb.ndim == 3
            and rgb.shape[2] == 3 and rgb.shape[0] > 0 and rgb.shape[1] > 0):
        raise ValueError(f"expected a uint16 H×W×3 array, got {getattr(rgb, 'dtype', type(rgb))}"
                         f" {getattr(rgb, 'shape', '')}")
    if not icc:
        raise ValueError("an ICC profile is required (see raw2rgb_plugin.io.icc)")
    ifd0 = photo_tags(metadata)
    ifd0[int(Tag.Software)] = _ascii(software)
    compression: dict[str, Any] = (dict(compression="zlib", predictor=True, compressionargs={"level": _DEFLATE_LEVEL})
                                   if compress else {})
    with atomic_output(Path(path), overwrite=overwrite) as out:
        encoded = io.BytesIO()
        tifffile.imwrite(
            encoded, rgb, photometric="rgb", planarconfig="contig", iccprofile=icc,
            software=False, metadata=None,
            extratags=[(int(Tag.Orientation), "H", 1, 1, True)],
            **compression,
        )
        copy_with_tags(encoded, out, ifd0)


# --- helpers shared with dng_write ------------------------------------------------------------


def photo_tags(metadata: PhotoMetadata | None) -> TagDict:
    """IFD0 tags carrying `metadata`: Make, Model, Artist, Copyright, DateTime, EXIF and GPS."""
    if metadata is None:
        return {}
    tags: TagDict = {}
    for tag, value in ((Tag.Make, metadata.make), (Tag.Model, metadata.model),
                       (Tag.Artist, metadata.artist), (Tag.Copyright, metadata.copyright),
                       # The capture time, not the conversion time: the same RAW gives the
                       # same bytes, and photo managers sort by it.
                       (Tag.DateTime, metadata.datetime_original)):
        if value:
            tags[int(tag)] = _ascii(value)
    exif = _exif_tags(metadata)
    if exif:
        tags[int(Tag.EXIFIFD)] = {"datatype": Datatype.IFD, "ifds": [[{"tags": exif}]]}
    if metadata.gps is not None:
        tags[int(Tag.GPSIFD)] = {"datatype": Datatype.IFD,
                                 "ifds": [[{"tags": _gps_tags(metadata.gps)}]]}
    return tags


def copy_with_tags(tiff: io.BytesIO, out: BinaryIO, ifd0_tags: TagDict) -> None:
    """Copy the single-image TIFF in `tiff` to `out`, adding or replacing `ifd0_tags`."""
    tiff.seek(0)
    info = tifftools.read_tiff(tiff)
    info["ifds"][0]["tags"].update(ifd0_tags)
    tifftools.write_tiff(info, out)


def lens_info_value(lens_info: LensInfo) -> dict[str, Any]:
    """EXIF LensSpecification and DNG LensInfo (the same four RATIONALs), 0/0 where unknown as
    EXIF 2.3 says (exiftool and Adobe write it so)."""
    flat: list[int] = []
    for value in lens_info:
        flat += [0, 0] if value is None else rational_values([value])
    return {"datatype": Datatype.RATIONAL, "data": flat}


def rational_values(values: Sequence[float | Fraction], *, signed: bool = False) -> list[int]:
    """Flat [num, den, num, den, …] for TIFF (S)RATIONAL tags, exact where 32 bits allow."""
    limit = _INT32_MAX if signed else _UINT32_MAX
    flat: list[int] = []
    for value in values:
        exact = Fraction(value)
        if (exact < 0 and not signed) or abs(exact) > limit:
            raise ValueError(f"{float(exact)} does not fit a TIFF {'S' if signed else ''}RATIONAL")
        if abs(exact.numerator) > limit or exact.denominator > limit:
            exact = exact.limit_denominator(max(1, int((limit - 1) // max(Fraction(1), abs(exact)))))
        flat += [exact.numerator, exact.denominator]
    return flat


# --- internals --------------------------------------------------------------------------------

_EXIF_VERSION = b"0232"
_GPS_VERSION = [2, 3, 0, 0]
_ISO_OVERFLOW = 65535  # PhotographicSensitivity is a SHORT: larger values go to ISOSpeed
_SENSITIVITY_TYPE_ISO_SPEED = 3


def _ascii(text: str) -> dict[str, Any]:
    return {"datatype": Datatype.ASCII, "data": text}


def _rational(*values: Fraction) -> dict[str, Any]:
    return {"datatype": Datatype.RATIONAL, "data": rational_values(values)}


def _exif_tags(metadata: PhotoMetadata) -> TagDict:
    tags: TagDict = {}
    for tag, value in ((EXIFTag.ExposureTime, metadata.exposure_time),
                       (EXIFTag.FNumber, metadata.f_number),
                       (EXIFTag.FocalLength, metadata.focal_length),
                       (EXIFTag.SubjectDistance, metadata.subject_distance)):
        if value is not None:
            tags[int(tag)] = _rational(value)
    if metadata.lens_info is not None:
        # The lens's own focal and f-number range, as the camera recorded it: what tells a zoom
        # from a prime of one name where LensModel is short (exiftool's LensID reads it).
        tags[int(EXIFTag.LensSpecification)] = lens_info_value(metadata.lens_info)
    if metadata.iso is not None:
        tags[int(EXIFTag.ISOSpeedRatings)] = {"datatype": Datatype.SHORT,
                                              "data": [min(metadata.iso, _ISO_OVERFLOW)]}
        if metadata.iso >= _ISO_OVERFLOW:
            tags[int(EXIFTag.SensitivityType)] = {"datatype": Datatype.SHORT,
                                                  "data": [_SENSITIVITY_TYPE_ISO_SPEED]}
            tags[int(EXIFTag.ISOSpeed)] = {"datatype": Datatype.LONG, "data": [metadata.iso]}
    for tag, text in ((EXIFTag.DateTimeOriginal, metadata.datetime_original),
                      (EXIFTag.LensMake, metadata.lens_make),
                      (EXIFTag.LensModel, metadata.lens_model)):
        if text:
            tags[int(tag)] = _ascii(text)
    if tags:
        tags[int(EXIFTag.ExifVersion)] = {"datatype": Datatype.UNDEFINED, "data": _EXIF_VERSION}
    return tags


def _gps_tags(gps: GpsInfo) -> TagDict:
    tags: TagDict = {
        int(GPSTag.GPSVersionID): {"datatype": Datatype.BYTE, "data": _GPS_VERSION},
        int(GPSTag.GPSLatitudeRef): _ascii(gps.latitude_ref),
        int(GPSTag.GPSLatitude): _rational(*gps.latitude),
        int(GPSTag.GPSLongitudeRef): _ascii(gps.longitude_ref),
        int(GPSTag.GPSLongitude): _rational(*gps.longitude),
    }
    if gps.altitude is not None:
        tags[int(GPSTag.GPSAltitudeRef)] = {"datatype": Datatype.BYTE,
                                            "data": [gps.altitude_ref or 0]}
        tags[int(GPSTag.GPSAltitude)] = _rational(gps.altitude)
    if gps.timestamp is not None:
        tags[int(GPSTag.GPSTimeStamp)] = _rational(*gps.timestamp)
    if gps.datestamp:
        tags[int(GPSTag.GPSDateStamp)] = _ascii(gps.datestamp)
    return tags
