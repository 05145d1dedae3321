"""Photo metadata (camera, lens, exposure, date, GPS) read from a RAW file.

exifread parses TIFF-based RAWs (CR2, NEF, ARW, DNG, RW2, ORF, PEF, KDC, IIQ…). Several common
RAW containers are not TIFF: for those we locate the TIFF or JPEG blocks that hold the EXIF and
hand *those* to exifread (CR3: the CMT boxes; RAF: the embedded JPEG; MRW: the TTW block), or
read just the camera name (CRW/CIFF). Whatever is still missing is filled from LibRaw
(`raw.other`, `raw.lens`). A file with no readable metadata gives Nones, never an exception.

Longer than the ~450 lines a module should have: the four non-TIFF container walkers are each
small and only meaningful beside the tag mapping they feed; split them out when a fifth comes.
"""

from __future__ import annotations

import io
import logging
import mmap
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import exifread
from exifread.tags.exif import GPS_TAGS

if TYPE_CHECKING:
    import rawpy

log = logging.getLogger(__name__)

Triple = tuple[Fraction, Fraction, Fraction]
#: EXIF LensSpecification / DNG LensInfo: minimum and maximum focal length (mm), then the smallest
#: f-number at the minimum and at the maximum focal length; None where the file says "unknown".
LensInfo = tuple[Fraction | None, Fraction | None, Fraction | None, Fraction | None]
#: EXIF's SubjectDistance for "infinity" (0xFFFFFFFF/1); 0 means unknown and is read as None.
SUBJECT_DISTANCE_INFINITY = Fraction(0xFFFFFFFF)


@dataclass(frozen=True)
class GpsInfo:
    """GPS position as EXIF stores it: unsigned degrees/minutes/seconds plus hemisphere refs."""

    latitude: Triple
    latitude_ref: str  # "N" or "S"
    longitude: Triple
    longitude_ref: str  # "E" or "W"
    altitude: Fraction | None = None  # metres, unsigned
    altitude_ref: int | None = None  # 0 above sea level, 1 below
    timestamp: Triple | None = None  # UTC hours, minutes, seconds
    datestamp: str | None = None  # "YYYY:MM:DD", UTC

    @property
    def latitude_degrees(self) -> float:
        return _signed_degrees(self.latitude, self.latitude_ref == "S")

    @property
    def longitude_degrees(self) -> float:
        return _signed_degrees(self.longitude, self.longitude_ref == "W")

    @property
    def altitude_metres(self) -> float | None:
        if self.altitude is None:
            return None
        return -float(self.altitude) if self.altitude_ref == 1 else float(self.altitude)


@dataclass(frozen=True)
class PhotoMetadata:
    """What the output TIFF carries over from the RAW. Every field may be None."""

    make: str | None = None
    model: str | None = None
    lens_make: str | None = None
    lens_model: str | None = None
    exposure_time: Fraction | None = None  # seconds
    f_number: Fraction | None = None
    iso: int | None = None
    focal_length: Fraction | None = None  # millimetres
    lens_info: LensInfo | None = None  # None when all four are unknown
    subject_distance: Fraction | None = None  # metres, or SUBJECT_DISTANCE_INFINITY
    datetime_original: str | None = None  # "YYYY:MM:DD HH:MM:SS" as EXIF writes it
    artist: str | None = None
    copyright: str | None = None
    orientation: int | None = None  # EXIF 1..8, of the RAW as the camera wrote it
    gps: GpsInfo | None = None

    def summary(self) -> dict[str, Any]:
        """A JSON-able dict: strings stay strings, exposure time as "1/250", numbers as floats."""
        out: dict[str, Any] = asdict(self)
        out["exposure_time"] = _fraction_text(self.exposure_time)
        out["f_number"] = _float_or_none(self.f_number)
        out["focal_length"] = _float_or_none(self.focal_length)
        out["lens_info"] = None if self.lens_info is None else [_float_or_none(v) for v in self.lens_info]
        out["subject_distance"] = ("infinity" if self.subject_distance == SUBJECT_DISTANCE_INFINITY
                                   else _float_or_none(self.subject_distance))
        gps = self.gps
        out["gps"] = None if gps is None else {
            "latitude": gps.latitude_degrees,
            "longitude": gps.longitude_degrees,
            "altitude": gps.altitude_metres,
            "timestamp": None if gps.timestamp is None else _gps_time_text(gps.timestamp),
            "datestamp": gps.datestamp,
        }
        return out


def camera_name(make: str | None, model: str | None) -> str | None:
    """"Canon EOS D30", not "Canon Canon EOS D30": the make only when the model does not say it."""
    if not model:
        return make or None
    if not make:
        return model
    model_first = model.split()[0].casefold() if model.split() else ""
    if any(word.casefold() == model_first for word in make.split()):
        return model
    return f"{make} {model}"


def read_photo_metadata(path: Path, raw: rawpy.RawPy | None = None) -> PhotoMetadata:
    """Metadata of the RAW at `path`; `raw`, if given, is that file already opened by rawpy.

    Without `raw`, LibRaw is opened here only when EXIF left a gap that it could fill.
    """
    path = Path(path)
    tags = _read_tags(path)
    from_exif = _metadata_from_tags(tags)
    if not _has_gaps_rawpy_fills(from_exif):
        return from_exif
    return _fill_from_libraw(from_exif, path, raw)


# --- locating the EXIF inside RAW containers -------------------------------------------------

Tags = dict[str, Any]  # exifread names ("EXIF FNumber") → exifread IfdTag


def _read_tags(path: Path) -> Tags:
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
            fh.seek(0)
            container = _container_reader(head)
            if container is None:
                return _exifread(fh)
            # The container parsers slice the file; mapping it avoids reading tens of MB.
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return container(data)
    except (OSError, ValueError, struct.error) as exc:  # ValueError: mmap of an empty file
        log.debug("cannot read metadata from %s: %s", path, exc)
        return {}


def _container_reader(head: bytes) -> Callable[[Any], Tags] | None:
    if head[4:12] == b"ftypcrx ":
        return _cr3_tags
    if head.startswith(b"FUJIFILM"):
        return _raf_tags
    if head.startswith(b"\x00MRM"):
        return _mrw_tags
    if head[6:14] == b"HEAPCCDR":
        return _ciff_tags
    if head.startswith(b"FOVb"):
        return lambda data: {}  # Sigma X3F: no EXIF block; LibRaw fills what it knows
    return None


def _exifread(fh: Any) -> Tags:
    try:
        tags = exifread.process_file(fh, details=False, extract_thumbnail=False)
    except Exception as exc:  # a third-party parser on untrusted bytes
        log.debug("exifread failed: %s", exc)
        return {}
    return {name: tag for name, tag in tags.items() if hasattr(tag, "values")}


def _exifread_bytes(data: bytes) -> Tags:
    return _exifread(io.BytesIO(data)) if data else {}


def _cr3_tags(data: Any) -> Tags:
    # Canon CR3 (ISO BMFF): moov/uuid(Canon) holds CMT1 = IFD0, CMT2 = EXIF IFD, CMT4 = GPS IFD,
    # each a complete little TIFF whose only IFD exifread labels "Image".
    canon_uuid = bytes.fromhex("85c0b687820f11e08111f4ce462b6a48")
    tags: Tags = {}
    for box, start, end in _bmff_boxes(data, 0, len(data)):
        if box != b"moov":
            continue
        for inner, istart, iend in _bmff_boxes(data, start, end):
            if inner != b"uuid" or data[istart:istart + 16] != canon_uuid:
                continue
            for cmt, cstart, cend in _bmff_boxes(data, istart + 16, iend):
                if cmt == b"CMT1":
                    tags.update(_exifread_bytes(data[cstart:cend]))
                elif cmt == b"CMT2":
                    tags.update(_relabel(_exifread_bytes(data[cstart:cend]), "EXIF"))
                elif cmt == b"CMT4":
                    tags.update(_as_gps(_exifread_bytes(data[cstart:cend])))
    return tags


def _bmff_boxes(data: Any, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        header = 8
        if size == 1 and pos + 16 <= end:
            size, header = struct.unpack(">Q", data[pos + 8:pos + 16])[0], 16
        elif size == 0:
            size = end - pos
        if size < header:
            return
        yield kind, pos + header, min(pos + size, end)
        pos += size


def _relabel(tags: Tags, ifd: str) -> Tags:
    return {f"{ifd} {name.split(' ', 1)[1]}": tag for name, tag in tags.items()
            if name.startswith("Image ")}


def _as_gps(tags: Tags) -> Tags:
    # exifread names GPS tag numbers found in a lone IFD by the IFD0 table; rename by number.
    out: Tags = {}
    for tag in tags.values():
        known = GPS_TAGS.get(getattr(tag, "tag", -1))  # -1: no tag number, like none known
        if known:
            out[f"GPS {known[0]}"] = tag
    return out


def _raf_tags(data: Any) -> Tags:
    # Fujifilm RAF: big-endian offset and length of an embedded JPEG (with APP1 Exif) at byte 84.
    if len(data) < 92:
        return {}
    offset, length = struct.unpack(">II", data[84:92])
    return _exifread_bytes(data[offset:offset + length])


def _mrw_tags(data: Any) -> Tags:
    # Minolta MRW: "\0MRM" + length, then named blocks; "\0TTW" is a TIFF with IFD0 and EXIF.
    pos = 8
    end = min(len(data), 8 + struct.unpack(">I", data[4:8])[0]) if len(data) >= 8 else 0
    while pos + 8 <= end:
        name, length = data[pos:pos + 4], struct.unpack(">I", data[pos + 4:pos + 8])[0]
        if name == b"\x00TTW":
            return _exifread_bytes(data[pos + 8:pos + 8 + length])
        pos += 8 + length
    return {}


class _Text:
    """Stands in for an exifread tag for values read outside exifread (or one part of a tag)."""

    def __init__(self, values: Any):
        self.values = values


def _ciff_tags(data: Any) -> Tags:
    # Canon CRW (CIFF heap): only the camera name is needed from here; LibRaw gives the rest.
    make_model = _ciff_find(data, 0x080A, int.from_bytes(data[2:6], "little"), len(data), 0)
    if make_model is None:
        return {}
    parts = make_model.split(b"\x00")
    if len(parts) < 2:
        return {}
    make, model = (p.decode("latin-1") for p in parts[:2])
    return {"Image Make": _Text(make), "Image Model": _Text(model)}


def _ciff_find(data: Any, wanted: int, start: int, end: int, depth: int) -> bytes | None:
    if depth > 4 or end - start < 6 or end > len(data):
        return None
    table = start + int.from_bytes(data[end - 4:end], "little")
    if table + 2 > end:
        return None
    count = int.from_bytes(data[table:table + 2], "little")
    for entry in range(table + 2, min(table + 2 + 10 * count, end - 9), 10):
        tag, size, offset = struct.unpack("<HII", data[entry:entry + 10])
        if tag & 0xC000:  # value stored inside the entry itself: never a heap or a string
            continue
        if tag & 0x3FFF == wanted:
            return data[start + offset:start + offset + size]
        if tag & 0x3800 in (0x2800, 0x3000):  # a sub-heap
            found = _ciff_find(data, wanted, start + offset, start + offset + size, depth + 1)
            if found is not None:
                return found
    return None


# --- EXIF tags → PhotoMetadata ----------------------------------------------------------------

_DATETIME = re.compile(r"(\d{4})[:\-/](\d\d)[:\-/](\d\d)[ T](\d\d):(\d\d):(\d\d)")
_ISO_UNKNOWN = (0, 65535)  # 65535 means "65535 or more": the real value sits in other tags


def _metadata_from_tags(tags: Tags) -> PhotoMetadata:
    def find(name: str) -> Any:
        # Some cameras (Kodak, TIFF/EP) put EXIF tags in IFD0; CR3 blocks were relabelled.
        tag = tags.get(f"EXIF {name}")
        return tag if tag is not None else tags.get(f"Image {name}")

    return PhotoMetadata(
        make=_text(tags.get("Image Make")),
        model=_text(tags.get("Image Model")),
        lens_make=_text(find("LensMake")),
        lens_model=_text(find("LensModel")),
        exposure_time=_positive_ratio(find("ExposureTime")),
        f_number=_positive_ratio(find("FNumber")),
        iso=_iso(find("ISOSpeedRatings"), find("ISOSpeed"), find("RecommendedExposureIndex")),
        focal_length=_positive_ratio(find("FocalLength")),
        # exifread has no name for DNG's LensInfo (0xC630, IFD0); EXIF 2.3 calls it LensSpecification.
        lens_info=_lens_info(find("LensSpecification") or tags.get("Image Tag 0xC630")),
        subject_distance=_subject_distance(find("SubjectDistance")),
        datetime_original=_exif_datetime(find("DateTimeOriginal"))
        or _exif_datetime(find("DateTimeDigitized")),
        artist=_text(tags.get("Image Artist")),
        copyright=_text(tags.get("Image Copyright")),
        orientation=_orientation(tags.get("Image Orientation")),
        gps=_gps(tags),
    )


def _values(tag: Any) -> Any:
    return None if tag is None else tag.values


def _text(tag: Any) -> str | None:
    value = _values(tag)
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return _clean_text(value) if isinstance(value, str) else None


def _clean_text(value: str) -> str | None:
    # Fixed-size string fields come padded with NULs or spaces; empty means unknown.
    return value.replace("\x00", " ").strip() or None


def _first_number(tag: Any) -> Any:
    value = _values(tag)
    if isinstance(value, list) and value:
        return value[0]
    return None


def _positive_ratio(tag: Any) -> Fraction | None:
    value = _first_number(tag)
    if isinstance(value, Fraction):
        if value.denominator == 0 or value <= 0:  # exifread keeps 0/0 as "unknown"
            return None
        return Fraction(value.numerator, value.denominator)
    if isinstance(value, int) and value > 0:
        return Fraction(value)
    return None


def _positive_int(tag: Any) -> int | None:
    value = _first_number(tag)
    return value if isinstance(value, int) and value > 0 else None


def _lens_info(tag: Any) -> LensInfo | None:
    value = _values(tag)
    if not isinstance(value, list) or len(value) != 4:
        return None
    # Unknown parts are 0/0 (EXIF 2.3) or 0 (Canon writes 0 for the f-numbers of its CR3s).
    parts = [_positive_ratio(_Text([part])) for part in value]
    if all(part is None for part in parts):
        return None
    return (parts[0], parts[1], parts[2], parts[3])


def _subject_distance(tag: Any) -> Fraction | None:
    value = _first_number(tag)
    if isinstance(value, Fraction) and value.denominator != 0 and value.numerator == 0xFFFFFFFF:
        return SUBJECT_DISTANCE_INFINITY  # EXIF's infinity, whatever its denominator
    return _positive_ratio(tag)


def _iso(*tags: Any) -> int | None:
    for tag in tags:
        value = _positive_int(tag)
        if value is not None and value not in _ISO_UNKNOWN:
            return value
    return None


def _exif_datetime(tag: Any) -> str | None:
    text = _text(tag)
    match = _DATETIME.match(text or "")
    if not match:
        return None
    year, month, day, hour, minute, second = match.groups()
    if year == "0000" or month == "00" or day == "00":
        return None
    return f"{year}:{month}:{day} {hour}:{minute}:{second}"


def _orientation(tag: Any) -> int | None:
    value = _first_number(tag)
    return value if isinstance(value, int) and 1 <= value <= 8 else None


def _triple(tag: Any) -> Triple | None:
    value = _values(tag)
    if not isinstance(value, list) or len(value) != 3:
        return None
    parts = []
    for part in value:
        if isinstance(part, Fraction) and part.denominator != 0 and part >= 0:
            parts.append(Fraction(part.numerator, part.denominator))
        elif isinstance(part, int) and part >= 0:
            parts.append(Fraction(part))
        else:
            return None
    return (parts[0], parts[1], parts[2])


def _gps(tags: Tags) -> GpsInfo | None:
    latitude = _triple(tags.get("GPS GPSLatitude"))
    longitude = _triple(tags.get("GPS GPSLongitude"))
    latitude_ref = _text(tags.get("GPS GPSLatitudeRef"))
    longitude_ref = _text(tags.get("GPS GPSLongitudeRef"))
    if latitude is None or longitude is None:
        return None
    if latitude_ref not in ("N", "S") or longitude_ref not in ("E", "W"):
        return None
    altitude = _first_number(tags.get("GPS GPSAltitude"))
    if not isinstance(altitude, Fraction) or altitude.denominator == 0 or altitude < 0:
        altitude = None
    altitude_ref = _first_number(tags.get("GPS GPSAltitudeRef"))
    datestamp = _text(tags.get("GPS GPSDate"))
    return GpsInfo(
        latitude=latitude,
        latitude_ref=latitude_ref,
        longitude=longitude,
        longitude_ref=longitude_ref,
        altitude=None if altitude is None else Fraction(altitude.numerator, altitude.denominator),
        altitude_ref=altitude_ref if altitude is not None and altitude_ref in (0, 1) else None,
        timestamp=_triple(tags.get("GPS GPSTimeStamp")),
        datestamp=datestamp if datestamp and re.fullmatch(r"\d{4}:\d\d:\d\d", datestamp) else None,
    )


# --- gaps filled from LibRaw ------------------------------------------------------------------

# rawpy 0.28 exposes no focus distance (its `Lens` holds make, model and the focal range, `Other`
# no distance), so subject_distance comes from EXIF alone.
_LIBRAW_FIELDS = ("lens_make", "lens_model", "exposure_time", "f_number", "iso", "focal_length",
                  "lens_info", "datetime_original", "artist")


def _has_gaps_rawpy_fills(metadata: PhotoMetadata) -> bool:
    return any(getattr(metadata, name) is None for name in _LIBRAW_FIELDS)


def _fill_from_libraw(metadata: PhotoMetadata, path: Path,
                      raw: rawpy.RawPy | None) -> PhotoMetadata:
    import rawpy

    try:
        if raw is not None:
            return _merge(metadata, _libraw_metadata(raw))
        from raw2rgb_plugin.io.libraw import LibRawHandle

        with LibRawHandle(path) as opened:
            return _merge(metadata, _libraw_metadata(opened.raw))
    except (rawpy.LibRawError, OSError, ValueError) as exc:
        # `other` and `lens` unpack the raw data: a truncated file fails here.
        log.debug("LibRaw cannot add metadata for %s: %s", path, exc)
        return metadata


def _libraw_metadata(raw: rawpy.RawPy) -> PhotoMetadata:
    other = getattr(raw, "other", None)  # rawpy >= 0.28
    lens = getattr(raw, "lens", None)
    if other is None:
        return PhotoMetadata()
    return PhotoMetadata(
        lens_make=_clean_text(lens.make) if lens is not None else None,
        lens_model=_clean_text(lens.model) if lens is not None else None,
        exposure_time=_exposure_from_seconds(other.shutter_speed),
        f_number=_fraction_from_float(other.aperture),
        iso=round(other.iso_speed) if other.iso_speed and other.iso_speed > 0 else None,
        focal_length=_fraction_from_float(other.focal_length),
        lens_info=_libraw_focal_range(lens),
        datetime_original=_libraw_datetime(other.timestamp),
        artist=_clean_text(other.artist),
    )


def _libraw_focal_range(lens: Any) -> LensInfo | None:
    # LibRaw knows the lens's focal range (from maker notes too), not its f-number range.
    shortest = _fraction_from_float(getattr(lens, "min_focal", 0.0))
    longest = _fraction_from_float(getattr(lens, "max_focal", 0.0))
    if shortest is None or longest is None:
        return None
    return (shortest, longest, None, None)


def _merge(first: PhotoMetadata, fallback: PhotoMetadata) -> PhotoMetadata:
    gaps = {f.name: getattr(fallback, f.name) for f in fields(first)
            if getattr(first, f.name) is None}
    return replace(first, **gaps)


def _exposure_from_seconds(seconds: float) -> Fraction | None:
    if not seconds or seconds <= 0:
        return None
    if seconds < 1:
        # LibRaw keeps a float; cameras state short exposures as 1/N.
        return Fraction(1, max(1, round(1 / seconds)))
    return _fraction_from_float(seconds)


def _fraction_from_float(value: float) -> Fraction | None:
    if not value or value <= 0:
        return None
    # LibRaw stores float32: a tenth is as precise as f-numbers and focal lengths are stated.
    return Fraction(value).limit_denominator(10)


def _libraw_datetime(stamp: datetime | None) -> str | None:
    if stamp is None or stamp == datetime.fromtimestamp(0):  # LibRaw's 0 means "unknown"
        return None
    return stamp.strftime("%Y:%m:%d %H:%M:%S")


# --- summary helpers --------------------------------------------------------------------------

def _signed_degrees(dms: Triple, negative: bool) -> float:
    degrees = float(dms[0] + dms[1] / 60 + dms[2] / 3600)
    return -degrees if negative else degrees


def _fraction_text(value: Fraction | None) -> str | None:
    return None if value is None else str(value)


def _float_or_none(value: Fraction | None) -> float | None:
    return None if value is None else float(value)


def _gps_time_text(time: Triple) -> str:
    hours, minutes, seconds = (float(part) for part in time)
    return f"{int(hours):02d}:{int(minutes):02d}:{seconds:06.3f}"
