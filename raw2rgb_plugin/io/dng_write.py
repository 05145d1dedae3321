"""CFA DNGs (Bayer and X-Trans): synthetic training pairs, examples and test inputs that LibRaw reads as RAW.

One uncompressed IFD0 holds the mosaic (NewSubfileType 0): the smallest layout LibRaw and
darktable's rawspeed accept. An optional JPEG preview goes in a SubIFD (NewSubfileType 1,
Compression 7), where cameras and Adobe's converter put theirs and LibRaw's `extract_thumb`
finds it. The colour metadata is written the way a camera
would (ColorMatrix1 = XYZ(D65) → camera, CalibrationIlluminant1 = D65, AsShotNeutral), so
synthetic data exercises the same metadata path as real RAWs.

The CFA is a 2×2 Bayer order or a 6×6 pattern (CFARepeatPatternDim 6 6 and 36 CFAPattern bytes,
as Adobe's DNG Converter writes Fujifilm X-Trans files; `pipeline.cfa.xtrans_pattern` gives the
layout at any phase). LibRaw decodes a 6×6 DNG as X-Trans and renders it with its Markesteijn
interpolation. The CFA and black-level patterns start at the ActiveArea's top-left corner (DNG
1.4, ActiveArea), which is where LibRaw's visible area starts too.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
import tifffile
from tifftools import Datatype, Tag

from raw2rgb_plugin import __version__
from raw2rgb_plugin.io.exif_read import PhotoMetadata
from raw2rgb_plugin.io.files import atomic_output
from raw2rgb_plugin.io.tiff_write import TagDict, copy_with_tags, lens_info_value, photo_tags, rational_values
from raw2rgb_plugin.pipeline.cfa import period

CFA_ORDERS = ("RGGB", "BGGR", "GRBG", "GBRG")

_CFA_COLOR_CODES = {"R": 0, "G": 1, "B": 2}  # TIFF/EP CFAPattern codes
_DNG_VERSION = (1, 4, 0, 0)
_DNG_BACKWARD_VERSION = (1, 1, 0, 0)  # nothing here needs a reader newer than DNG 1.1
_ILLUMINANT_D65 = 21

# DNG tag numbers (DNG 1.4 specification, chapter 4).
_CFA_REPEAT_PATTERN_DIM = 33421
_CFA_PATTERN = 33422
_DNG_VERSION_TAG = 50706
_DNG_BACKWARD_VERSION_TAG = 50707
_UNIQUE_CAMERA_MODEL = 50708
_CFA_PLANE_COLOR = 50710
_CFA_LAYOUT = 50711
_BLACK_LEVEL_REPEAT_DIM = 50713
_BLACK_LEVEL = 50714
_WHITE_LEVEL = 50717
_DEFAULT_SCALE = 50718
_COLOR_MATRIX_1 = 50721
_AS_SHOT_NEUTRAL = 50728
_BASELINE_EXPOSURE = 50730
_CALIBRATION_ILLUMINANT_1 = 50778
_LENS_INFO = 50736
_ACTIVE_AREA = 50829
_OPCODE_LIST_3 = 51022

_LIBRAW_MIN_SIDE = 22  # LibRaw 0.22 refuses smaller images as "not a RAW file"
_RATIONAL, _UNDEFINED, _SRATIONAL = 5, 7, 10  # TIFF datatypes, as tifffile's extratags take them


def write_cfa_dng(path: Path, mosaic: np.ndarray, cfa: str, *,
                  black_level: float | Sequence[float], white_level: int,
                  color_matrix1: np.ndarray | None, as_shot_neutral: Sequence[float] | None,
                  orientation: int = 1, make: str = "raw2rgb", model: str = "Synthetic",
                  metadata: PhotoMetadata | None = None,
                  baseline_exposure: float | None = None, default_scale: tuple[float, float] | None = None,
                  overwrite: bool = True, preview_jpeg: bytes | None = None,
                  opcode_list3: bytes | None = None,
                  active_area: tuple[int, int, int, int] | None = None) -> None:
    """Write `mosaic` (uint16 H×W in sensor orientation) with the CFA `cfa` as a DNG.

    `cfa` is a 2×2 Bayer order ("RGGB") or a 6×6 pattern as 36 letters read row by row (X-Trans:
    `pipeline.cfa.xtrans_pattern()`), seen from the active area's top-left site.
    `black_level` is one value or one per site of the pattern (4 or 36, row-major).
    `color_matrix1` maps XYZ (D65) to camera RGB; `as_shot_neutral` is the camera RGB of a
    neutral grey (the inverse of the white-balance gains). `orientation` is the EXIF value
    a viewer applies to show the mosaic upright. `make`/`model` name the camera; the rest
    of `metadata` (exposure, lens, date, GPS…) goes into the EXIF IFD. `default_scale`
    (horizontal, vertical) declares non-square pixels: LibRaw reads their width ÷ height as
    horizontal ÷ vertical (a Nikon D1X-like sensor is (1, 2)). `preview_jpeg`, a baseline
    JPEG in the mosaic's orientation, becomes the embedded preview. `opcode_list3`, an encoded
    DNG opcode list (lens corrections a reader applies after demosaicking), is written as
    given. `active_area` (top, left, bottom, right) marks the pixels outside it as masked
    margins. An existing `path` is replaced atomically unless `overwrite` is False.

    Beware: LibRaw 0.22 moves a Fujifilm X-Trans file's margins to multiples of 6 and then takes
    the pattern from a RAF's own table, which a DNG lacks, so a 6×6 DNG whose make is Fujifilm
    and whose active area starts off the period decodes as all red (measured; such X-Trans DNGs
    exist, darktable issue 11973).
    """
    cfa = cfa.upper()
    _check_mosaic(mosaic, cfa)
    blacks = _black_levels(black_level, len(cfa))
    if not (isinstance(white_level, (int, np.integer)) and max(blacks) < white_level <= 65535):
        raise ValueError(f"white level {white_level!r} must be an integer above the black level "
                         "and at most 65535")
    if orientation not in range(1, 9):
        raise ValueError(f"orientation {orientation!r} is not an EXIF orientation (1..8)")

    extratags = _dng_tags(cfa, blacks, int(white_level), color_matrix1, as_shot_neutral,
                          orientation, baseline_exposure)
    extratags += _layout_tags(mosaic.shape, default_scale, opcode_list3, active_area)
    ifd0 = dng_photo_tags(metadata)
    text = {Tag.Make: make, Tag.Model: model, _UNIQUE_CAMERA_MODEL: f"{make} {model}",
            Tag.Software: f"raw2rgb {__version__}"}
    ifd0.update({int(tag): {"datatype": Datatype.ASCII, "data": value}
                 for tag, value in text.items()})
    if preview_jpeg is not None:
        ifd0[int(Tag.SubIFD)] = {"datatype": Datatype.IFD, "ifds": [[_preview_ifd(preview_jpeg)]]}
    with atomic_output(Path(path), overwrite=overwrite) as out:
        encoded = io.BytesIO()
        # One strip: the plainest layout a DNG reader can meet.
        tifffile.imwrite(encoded, mosaic, photometric="cfa", subfiletype=0,
                         rowsperstrip=mosaic.shape[0], software=False, metadata=None,
                         extratags=extratags)
        copy_with_tags(encoded, out, ifd0)


#: The Bayer name of the same writer, which every Bayer caller knows it by.
write_bayer_dng = write_cfa_dng


def _positive_rationals_tag(tag: int, name: str, values, count: int) -> tuple:
    """A RATIONAL tag of exactly `count` finite, positive values; ValueError naming `name` otherwise."""
    numbers = [float(v) for v in values]
    if len(numbers) != count or any(not (v > 0 and np.isfinite(v)) for v in numbers):
        raise ValueError(f"{name} needs {count} positive values, got {numbers}")
    return (tag, _RATIONAL, count, tuple(rational_values(numbers)), True)


def _layout_tags(shape: tuple[int, ...], default_scale: tuple[float, float] | None,
                 opcode_list3: bytes | None, active_area: tuple[int, int, int, int] | None) -> list[tuple]:
    """The optional tags about the image's geometry: pixel shape, lens opcodes, active area."""
    tags: list[tuple] = []
    if default_scale is not None:
        tags.append(_positive_rationals_tag(_DEFAULT_SCALE, "DefaultScale", default_scale, 2))
    if opcode_list3 is not None:
        # Big-endian opcodes acting on the demosaiced image (DNG 1.3, chapter 6), kept as given.
        tags.append((_OPCODE_LIST_3, _UNDEFINED, len(opcode_list3), opcode_list3, True))
    if active_area is not None:
        top, left, bottom, right = (int(v) for v in active_area)
        if not (0 <= top < bottom <= shape[0] and 0 <= left < right <= shape[1]
                and min(bottom - top, right - left) >= _LIBRAW_MIN_SIDE):
            raise ValueError(f"active area {tuple(active_area)} does not fit a {shape[0]}×{shape[1]} mosaic "
                             f"with {_LIBRAW_MIN_SIDE} pixels or more on a side")
        tags.append((_ACTIVE_AREA, "I", 4, (top, left, bottom, right), True))
    return tags


def dng_photo_tags(metadata: PhotoMetadata | None) -> TagDict:
    """IFD0 tags of a DNG carrying `metadata`: `photo_tags` and DNG's own LensInfo.

    DNG keeps the lens range in IFD0 (LensInfo, 0xC630), EXIF in its own IFD (LensSpecification):
    both are written, for readers that know only one of them.
    """
    tags = photo_tags(metadata)
    if metadata is not None and metadata.lens_info is not None:
        tags[_LENS_INFO] = lens_info_value(metadata.lens_info)
    return tags


def _preview_ifd(jpeg: bytes) -> dict:
    """A tifftools IFD holding `jpeg` as a one-strip JPEG preview (DNG 1.4, "Preview IFDs")."""
    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as image:
        if image.format != "JPEG" or image.mode not in ("RGB", "L"):
            raise ValueError(f"the preview must be an RGB or grey JPEG, got {image.format} {image.mode}")
        (width, height), bands = image.size, len(image.getbands())
    # tifftools copies strips out of a source file and skips offsets below a TIFF header's 8
    # bytes, so the JPEG sits at offset 8 of its in-memory source.
    source = bytes(8) + jpeg

    def tag(datatype: Datatype, *values: int) -> dict:
        return {"datatype": datatype, "data": list(values)}

    return {"path_or_fobj": io.BytesIO(source), "size": len(source), "tags": {
        int(Tag.NewSubfileType): tag(Datatype.LONG, 1),  # a reduced-resolution image
        int(Tag.ImageWidth): tag(Datatype.LONG, width),
        int(Tag.ImageLength): tag(Datatype.LONG, height),
        int(Tag.BitsPerSample): tag(Datatype.SHORT, *[8] * bands),
        int(Tag.Compression): tag(Datatype.SHORT, 7),  # JPEG
        int(Tag.Photometric): tag(Datatype.SHORT, 6 if bands == 3 else 1),  # YCbCr, as JPEG stores it
        int(Tag.SamplesPerPixel): tag(Datatype.SHORT, bands),
        int(Tag.RowsPerStrip): tag(Datatype.LONG, height),
        int(Tag.StripOffsets): tag(Datatype.LONG, 8),
        int(Tag.StripByteCounts): tag(Datatype.LONG, len(jpeg)),
    }}


def _check_mosaic(mosaic: np.ndarray, cfa: str) -> None:
    if len(cfa) == 4 and cfa not in CFA_ORDERS:
        raise ValueError(f"CFA order {cfa!r} is not one of {', '.join(CFA_ORDERS)}")
    try:
        period(cfa)
    except ValueError:
        raise ValueError(f"CFA {cfa!r} is neither a Bayer order ({', '.join(CFA_ORDERS)}) nor a 6×6 "
                         "pattern of 36 letters R, G, B") from None
    if not (isinstance(mosaic, np.ndarray) and mosaic.dtype == np.uint16 and mosaic.ndim == 2):
        raise ValueError(f"expected a uint16 H×W mosaic, got {getattr(mosaic, 'dtype', '?')} "
                         f"{getattr(mosaic, 'shape', '')}")
    if min(mosaic.shape) < _LIBRAW_MIN_SIDE:
        raise ValueError(f"a {mosaic.shape[0]}×{mosaic.shape[1]} mosaic is too small: LibRaw "
                         f"rejects RAWs under {_LIBRAW_MIN_SIDE} pixels on a side")


def _black_levels(black_level: float | Sequence[float], sites: int) -> list[float]:
    # np.isscalar is no type guard: say what each branch holds.
    values = ([float(cast(float, black_level))] if np.isscalar(black_level)
              else [float(v) for v in cast(Sequence[float], black_level)])
    if len(values) not in (1, sites):
        raise ValueError(f"black level needs 1 value or {sites} (one per site of the CFA pattern), got {len(values)}")
    if any(not 0 <= v < 65535 for v in values):
        raise ValueError(f"black levels {values} are outside 0..65535")
    return values


def _dng_tags(cfa: str, blacks: list[float], white_level: int,
              color_matrix1: np.ndarray | None, as_shot_neutral: Sequence[float] | None,
              orientation: int, baseline_exposure: float | None) -> list[tuple]:
    side = period(cfa)
    tags: list[tuple] = [
        (int(Tag.Orientation), "H", 1, orientation, True),
        (_CFA_REPEAT_PATTERN_DIM, "H", 2, (side, side), True),
        (_CFA_PATTERN, "B", len(cfa), tuple(_CFA_COLOR_CODES[c] for c in cfa), True),
        (_DNG_VERSION_TAG, "B", 4, _DNG_VERSION, True),
        (_DNG_BACKWARD_VERSION_TAG, "B", 4, _DNG_BACKWARD_VERSION, True),
        (_CFA_PLANE_COLOR, "B", 3, (0, 1, 2), True),
        (_CFA_LAYOUT, "H", 1, 1, True),  # rectangular
        (_WHITE_LEVEL, "I", 1, white_level, True),
    ]
    if len(blacks) > 1:
        tags.append((_BLACK_LEVEL_REPEAT_DIM, "H", 2, (side, side), True))
    if all(v.is_integer() for v in blacks):
        tags.append((_BLACK_LEVEL, "I", len(blacks), tuple(int(v) for v in blacks), True))
    else:
        tags.append((_BLACK_LEVEL, _RATIONAL, len(blacks), tuple(rational_values(blacks)), True))
    if color_matrix1 is not None:
        matrix = np.asarray(color_matrix1, dtype=np.float64)
        if matrix.shape != (3, 3) or not np.all(np.isfinite(matrix)):
            raise ValueError(f"ColorMatrix1 must be a finite 3×3 matrix, got {matrix.shape}")
        tags.append((_COLOR_MATRIX_1, _SRATIONAL, 9,
                     tuple(rational_values(matrix.ravel().tolist(), signed=True)), True))
        tags.append((_CALIBRATION_ILLUMINANT_1, "H", 1, _ILLUMINANT_D65, True))
    if as_shot_neutral is not None:
        tags.append(_positive_rationals_tag(_AS_SHOT_NEUTRAL, "AsShotNeutral", as_shot_neutral, 3))
    if baseline_exposure is not None:
        tags.append((_BASELINE_EXPOSURE, _SRATIONAL, 1,
                     tuple(rational_values([baseline_exposure], signed=True)), True))
    return tags
