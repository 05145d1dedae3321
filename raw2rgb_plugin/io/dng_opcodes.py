"""A source DNG's OpcodeList3, read so that the LinearRaw DNG made from it keeps its lens corrections.

DNG 1.3 (chapter 6) names three opcode lists by the stage of processing they act on: OpcodeList1
on the raw values as stored, OpcodeList2 on the linearised mosaic, OpcodeList3 on the demosaiced
image. A raw2rgb LinearRaw DNG *is* a demosaiced image, so of the three only OpcodeList3 still has
an object: lists 1 and 2 acted on a mosaic that LibRaw's decode consumed. DNG-writing cameras
and phones put their lens corrections in OpcodeList3 (WarpRectilinear: distortion and lateral
colour; FixVignetteRadial: vignetting).

The opcodes address the stage-3 image by its pixel grid (GainMap and bad-pixel opcodes by pixel
rectangles; the radial ones around an optical centre given relative to it), so they apply only
to an image with that grid: `Stage3Opcodes.size` is it, for the caller to compare.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tifffile

log = logging.getLogger(__name__)

_DNG_VERSION = 50706
_ACTIVE_AREA = 50829
_OPCODE_LIST_3 = 51022
_MAIN_IMAGE = 0  # NewSubfileType of a DNG's raw image (previews are 1)
_RAW_PHOTOMETRICS = (32803, 34892)  # CFA, LinearRaw
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


@dataclass(frozen=True)
class Stage3Opcodes:
    """A DNG's OpcodeList3 and the image it was written for."""

    data: bytes  # the tag's bytes as stored: a big-endian opcode list, copied, never parsed
    size: tuple[int, int]  # (height, width) of the stage-3 image: the ActiveArea, else the raw IFD's image


def read_stage3_opcodes(path: Path) -> Stage3Opcodes | None:
    """The OpcodeList3 of the DNG at `path` with the size of the image it addresses, or None for a
    file that is not a DNG, a DNG without one, or one whose tags cannot be read."""
    try:
        with dng_raw_ifd(path) as page:
            if page is None or _OPCODE_LIST_3 not in page.tags:
                return None
            data = page.tags[_OPCODE_LIST_3].value
            size = _stage3_size(page)
    except Exception as exc:  # a third-party parser on untrusted bytes: the DNG just keeps no opcodes
        log.debug("cannot read OpcodeList3 of %s: %s", path, exc)
        return None
    if not isinstance(data, bytes) or not data or size is None:
        return None
    return Stage3Opcodes(data=data, size=size)


@contextmanager
def dng_raw_ifd(path: Path) -> Iterator[Any]:
    """The tifffile page of the raw image of the DNG at `path`, valid inside the block; None for a
    file that is not a DNG or has no raw image. Raises what tifffile raises on damaged bytes."""
    with open(path, "rb") as fh:
        is_tiff = fh.read(4) in _TIFF_MAGIC  # CR3, RAF, …: not TIFF, so not DNG; don't parse them
    if not is_tiff:
        yield None
        return
    with tifffile.TiffFile(path) as tif:
        # CR2, NEF, ARW are TIFF too, without DNGVersion (and without DNG tags)
        yield raw_ifd(tif) if tif.pages and _DNG_VERSION in tif.pages.first.tags else None


def raw_ifd(tif: tifffile.TiffFile) -> Any:
    """The IFD holding the raw image: IFD0 (Bayer DNGs of older writers) or a SubIFD (Adobe's layout)."""
    for page in tif.pages:
        for candidate in (page, *(getattr(page, "pages", None) or ())):
            if candidate.subfiletype == _MAIN_IMAGE and candidate.photometric in _RAW_PHOTOMETRICS:
                return candidate
    return None


def _stage3_size(page: Any) -> tuple[int, int] | None:
    height, width = int(page.imagelength), int(page.imagewidth)
    area = page.tags.get(_ACTIVE_AREA)
    if area is None:
        return (height, width)
    top, left, bottom, right = (int(v) for v in area.value)
    if not (0 <= top < bottom <= height and 0 <= left < right <= width):
        return None  # an ActiveArea outside the image: nothing to match the opcodes against
    return (bottom - top, right - left)
