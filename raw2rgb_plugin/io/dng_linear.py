"""LinearRaw DNGs: demosaiced, still camera-native and not white balanced, so a raw converter
(Lightroom, darktable, RawTherapee) can edit white balance and colour as for the camera's RAW.

Layout (Adobe's, and darktable's `dt_imageio_dng_write_linear` for the colour tags):

    IFD0     NewSubFileType 1: ≤ 256 px 8-bit RGB thumbnail, uncompressed; DNG, camera and colour tags
             (ColorMatrix1 + CalibrationIlluminant1 = D65, AsShotNeutral, BaselineExposure),
             Orientation, EXIF and GPS IFDs, SubIFDs → [raw, preview]
    SubIFD0  NewSubFileType 0: the image, PhotometricInterpretation 34892 (LinearRaw), 3 × 16 bit,
             contiguous, uncompressed strips, BlackLevel 0, WhiteLevel 65535; no CFA or crop tags;
             the source's OpcodeList3 when the caller passes it (its lens corrections)
    SubIFD1  NewSubFileType 1: sRGB JPEG preview (YCbCr), long side 1024..2048 px

Pixels stay in sensor orientation, as in a camera RAW; Orientation tells readers how to show them.
tifftools writes the IFD tree: it copies each IFD's strips from a file-like source, here a
read-only view over the arrays and JPEG bytes, so the 16-bit image is not copied in memory.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifftools
from PIL import Image
from tifftools import Datatype, Tag

from raw2rgb_plugin.io.dng_write import (
    _AS_SHOT_NEUTRAL,
    _BASELINE_EXPOSURE,
    _BLACK_LEVEL,
    _CALIBRATION_ILLUMINANT_1,
    _COLOR_MATRIX_1,
    _DNG_BACKWARD_VERSION_TAG,
    _DNG_VERSION,
    _DNG_VERSION_TAG,
    _ILLUMINANT_D65,
    _LIBRAW_MIN_SIDE,
    _OPCODE_LIST_3,
    _UNIQUE_CAMERA_MODEL,
    _WHITE_LEVEL,
    dng_photo_tags,
)
from raw2rgb_plugin.io.exif_read import PhotoMetadata
from raw2rgb_plugin.io.files import atomic_output
from raw2rgb_plugin.io.tiff_write import TagDict, rational_values

# PreviewColorSpace (below) is a DNG 1.2 tag.
_DNG_BACKWARD_VERSION = (1, 2, 0, 0)
_ORIGINAL_RAW_FILE_NAME = 50827
_PREVIEW_COLOR_SPACE = 50970
_PREVIEW_SRGB = 2
_LINEAR_RAW = 34892
_PHOTOMETRIC_RGB, _PHOTOMETRIC_YCBCR = 2, 6
_COMPRESSION_NONE, _COMPRESSION_JPEG = 1, 7

_THUMBNAIL_LONG_SIDE = 256
_PREVIEW_MIN_LONG_SIDE = 1024  # Adobe's smallest "medium" preview: what file browsers show
_PREVIEW_MAX_LONG_SIDE = 2048
_JPEG_QUALITY = 90
# Pillow's default, stated so that YCbCrSubSampling cannot disagree with the JPEG.
_JPEG_SUBSAMPLING = "4:2:0"
_YCBCR_SUBSAMPLING = (2, 2)
# ~1 MiB strips: one 144 MB strip (24 MP) would make readers allocate and read it in one piece.
_STRIP_BYTES = 1 << 20
_ASPECT_TOLERANCE = 0.02


def write_linear_dng(path: Path, camera_rgb: np.ndarray, *, xyz_to_camera: np.ndarray, as_shot_neutral: Sequence[float],
                     orientation: int, preview_srgb: np.ndarray, metadata: PhotoMetadata | None,
                     original_raw_file_name: str, software: str, make: str | None = None, model: str | None = None,
                     baseline_exposure: float = 0.0, opcode_list3: bytes | None = None,
                     overwrite: bool = False) -> None:
    """Write `camera_rgb` (uint16 H×W×3, sensor orientation, camera RGB not white balanced, 0 = black,
    65535 = sensor white) as a LinearRaw DNG.

    `xyz_to_camera` is the XYZ(D65) → camera matrix (LibRaw's `rgb_xyz_matrix[:3]`); `as_shot_neutral` the
    camera RGB of grey (1 / WB gains, max 1); `orientation` the source's EXIF orientation. `preview_srgb`
    (uint8 h×w×3, display-rendered, same sensor orientation and aspect) feeds the thumbnail and the JPEG
    preview. Make/Model come from the arguments, else `metadata`, else "raw2rgb"/"unknown".
    `opcode_list3` (the source DNG's OpcodeList3 bytes) goes into the image's IFD verbatim: the caller
    passes it only where this image has the geometry of the source's stage-3 image it addresses.
    Raises OutputExistsError if `path` exists and not `overwrite`; the file appears complete or not at all.
    """
    _check_inputs(camera_rgb, preview_srgb, orientation)
    height, width = camera_rgb.shape[:2]
    # Little-endian as the file; a no-op (no copy) for a C-contiguous uint16 array on x86/ARM.
    pixels = np.ascontiguousarray(camera_rgb, dtype="<u2")
    thumbnail = np.asarray(_resized(preview_srgb, _THUMBNAIL_LONG_SIDE, upscale=False))
    jpeg = _preview_jpeg(preview_srgb, _preview_long_side(max(height, width), max(preview_srgb.shape[:2])))
    source = _Segments([thumbnail.tobytes(), jpeg.getvalue(), pixels.data.cast("B")])
    raw_ifd = _raw_ifd(pixels.shape, source.offsets[2], opcode_list3)
    preview_ifd = _preview_ifd(jpeg, source.offsets[1], len(jpeg.getvalue()))
    ifd0: TagDict = {**_image_tags(thumbnail.shape, 8, source.offsets[0], _PHOTOMETRIC_RGB, subfile=1),
                     **dng_photo_tags(metadata),
                     **_dng_tags(xyz_to_camera, as_shot_neutral, baseline_exposure, original_raw_file_name),
                     **_camera_tags(make, model, metadata, software, orientation)}
    ifd0[int(Tag.SubIFD)] = {"datatype": Datatype.IFD, "ifds": [[raw_ifd], [preview_ifd]]}
    info = {"ifds": [{"tags": ifd0, "path_or_fobj": source, "size": source.size}]}
    for ifd in (raw_ifd, preview_ifd):
        ifd.update(path_or_fobj=source, size=source.size)
    with atomic_output(Path(path), overwrite=overwrite) as out:
        tifftools.write_tiff(info, out)


def _check_inputs(camera_rgb: np.ndarray, preview_srgb: np.ndarray, orientation: int) -> None:
    _check_image(camera_rgb, np.uint16, "camera_rgb")
    _check_image(preview_srgb, np.uint8, "preview_srgb")
    height, width = camera_rgb.shape[:2]
    if min(height, width) < _LIBRAW_MIN_SIDE:
        raise ValueError(f"a {height}×{width} image is too small: LibRaw rejects DNGs under {_LIBRAW_MIN_SIDE} "
                         "pixels on a side")
    if orientation not in range(1, 9):
        raise ValueError(f"orientation {orientation!r} is not an EXIF orientation (1..8)")
    ph, pw = preview_srgb.shape[:2]
    # A rescaled preview's width is off by rounding; a preview rotated for display by far more.
    if abs(pw - ph * width / height) > max(1.0, _ASPECT_TOLERANCE * pw):
        raise ValueError(f"preview {pw}×{ph} does not have the aspect of the {width}×{height} image "
                         "(it must be in sensor orientation, not rotated for display)")


def _check_image(image: Any, dtype: type, name: str) -> None:
    if not (isinstance(image, np.ndarray) and image.dtype == dtype and image.ndim == 3 and image.shape[2] == 3
            and image.shape[0] > 0 and image.shape[1] > 0):
        raise ValueError(f"{name}: expected a {np.dtype(dtype).name} H×W×3 array, got "
                         f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}")


def _preview_long_side(full: int, given: int) -> int:
    """The preview's long side: what was given, but at least 1024 and at most 2048 or the image's own size."""
    return min(max(given, _PREVIEW_MIN_LONG_SIDE), full, _PREVIEW_MAX_LONG_SIDE)


def _resized(rgb: np.ndarray, long_side: int, *, upscale: bool) -> Image.Image:
    image = Image.fromarray(np.ascontiguousarray(rgb))
    scale = long_side / max(image.size)
    if scale == 1 or (scale > 1 and not upscale):
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    # reducing_gap: a box pre-shrink, then Lanczos: near-Lanczos quality at a fraction of the time.
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _preview_jpeg(rgb: np.ndarray, long_side: int) -> io.BytesIO:
    encoded = io.BytesIO()
    _resized(rgb, long_side, upscale=True).save(encoded, format="JPEG", quality=_JPEG_QUALITY,
                                                subsampling=_JPEG_SUBSAMPLING)
    return encoded


def _image_tags(shape: tuple[int, ...], bits: int, offset: int, photometric: int, *, subfile: int,
                compression: int = _COMPRESSION_NONE, byte_count: int | None = None) -> TagDict:
    """Tags of one image of `shape` (H, W, 3) whose contiguous data start at `offset` in the source."""
    height, width = shape[0], shape[1]
    row_bytes = width * 3 * bits // 8
    if byte_count is not None:  # a JPEG: one strip holding the whole stream
        rows, offsets, counts = height, [offset], [byte_count]
    else:
        rows = max(1, min(height, _STRIP_BYTES // row_bytes))
        starts = range(0, height, rows)
        offsets = [offset + row * row_bytes for row in starts]
        counts = [(min(rows, height - row)) * row_bytes for row in starts]
    return {
        int(Tag.NewSubfileType): {"datatype": Datatype.LONG, "data": [subfile]},
        int(Tag.ImageWidth): {"datatype": Datatype.LONG, "data": [width]},
        int(Tag.ImageLength): {"datatype": Datatype.LONG, "data": [height]},
        int(Tag.BitsPerSample): {"datatype": Datatype.SHORT, "data": [bits] * 3},
        int(Tag.Compression): {"datatype": Datatype.SHORT, "data": [compression]},
        int(Tag.Photometric): {"datatype": Datatype.SHORT, "data": [photometric]},
        int(Tag.SamplesPerPixel): {"datatype": Datatype.SHORT, "data": [3]},
        int(Tag.RowsPerStrip): {"datatype": Datatype.LONG, "data": [rows]},
        int(Tag.StripOffsets): {"datatype": Datatype.LONG, "data": offsets},
        int(Tag.StripByteCounts): {"datatype": Datatype.LONG, "data": counts},
        int(Tag.PlanarConfig): {"datatype": Datatype.SHORT, "data": [1]},
    }


def _raw_ifd(shape: tuple[int, ...], offset: int, opcode_list3: bytes | None) -> dict[str, Any]:
    tags = _image_tags(shape, 16, offset, _LINEAR_RAW, subfile=0)
    # One value per sample (BlackLevelRepeatDim defaults to 1×1): 0 = black, 65535 = sensor white.
    tags[_BLACK_LEVEL] = {"datatype": Datatype.LONG, "data": [0, 0, 0]}
    tags[_WHITE_LEVEL] = {"datatype": Datatype.LONG, "data": [65535] * 3}
    if opcode_list3:
        # The opcode lists belong to the IFD of the image they act on (DNG 1.3, chapter 6).
        tags[_OPCODE_LIST_3] = {"datatype": Datatype.UNDEFINED, "data": bytes(opcode_list3)}
    return {"tags": tags}


def _preview_ifd(jpeg: io.BytesIO, offset: int, length: int) -> dict[str, Any]:
    jpeg.seek(0)
    with Image.open(jpeg) as decoded:
        shape = (decoded.height, decoded.width, 3)
    tags = _image_tags(shape, 8, offset, _PHOTOMETRIC_YCBCR, subfile=1, compression=_COMPRESSION_JPEG,
                       byte_count=length)
    tags[int(Tag.YCbCrSubsampling)] = {"datatype": Datatype.SHORT, "data": list(_YCBCR_SUBSAMPLING)}
    # JFIF's full-range YCbCr; TIFF's default ReferenceBlackWhite would be wrong for it.
    tags[int(Tag.ReferenceBlackWhite)] = {"datatype": Datatype.RATIONAL,
                                          "data": rational_values([0, 255, 128, 255, 128, 255])}
    tags[_PREVIEW_COLOR_SPACE] = {"datatype": Datatype.LONG, "data": [_PREVIEW_SRGB]}
    return {"tags": tags}


def _dng_tags(xyz_to_camera: np.ndarray, as_shot_neutral: Sequence[float], baseline_exposure: float,
              original_raw_file_name: str) -> TagDict:
    matrix = np.asarray(xyz_to_camera, dtype=np.float64)
    if matrix.shape != (3, 3) or not np.all(np.isfinite(matrix)) or not np.any(matrix):
        raise ValueError(f"xyz_to_camera must be a finite non-zero 3×3 matrix, got {matrix.shape}")
    neutral = [float(v) for v in as_shot_neutral]
    if len(neutral) != 3 or any(not (0 < v <= 1) for v in neutral):
        raise ValueError(f"AsShotNeutral needs 3 values in (0, 1], got {neutral}")
    if not math.isfinite(baseline_exposure):
        raise ValueError(f"baseline exposure {baseline_exposure} is not finite")
    return {
        _DNG_VERSION_TAG: {"datatype": Datatype.BYTE, "data": list(_DNG_VERSION)},
        _DNG_BACKWARD_VERSION_TAG: {"datatype": Datatype.BYTE, "data": list(_DNG_BACKWARD_VERSION)},
        _COLOR_MATRIX_1: {"datatype": Datatype.SRATIONAL, "data": rational_values(matrix.ravel().tolist(), signed=True)},
        # Strict readers (darktable) drop a colour matrix without its illuminant.
        _CALIBRATION_ILLUMINANT_1: {"datatype": Datatype.SHORT, "data": [_ILLUMINANT_D65]},
        _AS_SHOT_NEUTRAL: {"datatype": Datatype.RATIONAL, "data": rational_values(neutral)},
        _BASELINE_EXPOSURE: {"datatype": Datatype.SRATIONAL,
                             "data": rational_values([baseline_exposure], signed=True)},
        _ORIGINAL_RAW_FILE_NAME: {"datatype": Datatype.ASCII, "data": original_raw_file_name},
        _PREVIEW_COLOR_SPACE: {"datatype": Datatype.LONG, "data": [_PREVIEW_SRGB]},  # of the thumbnail
    }


def _camera_tags(make: str | None, model: str | None, metadata: PhotoMetadata | None, software: str,
                 orientation: int) -> TagDict:
    make = make or (metadata.make if metadata else None) or "raw2rgb"
    model = model or (metadata.model if metadata else None) or "unknown"
    # Adobe names cameras without repeating the make ("Canon EOS R6", not "Canon Canon EOS R6");
    # profiles (DCP) are matched on this name.
    unique = model if model.lower().startswith(make.lower()) else f"{make} {model}"
    return {
        int(Tag.Make): {"datatype": Datatype.ASCII, "data": make},
        int(Tag.Model): {"datatype": Datatype.ASCII, "data": model},
        _UNIQUE_CAMERA_MODEL: {"datatype": Datatype.ASCII, "data": unique},
        int(Tag.Software): {"datatype": Datatype.ASCII, "data": software},
        int(Tag.Orientation): {"datatype": Datatype.SHORT, "data": [orientation]},
    }


class _Segments(io.RawIOBase):
    """A read-only file over byte buffers laid end to end after an 8-byte gap (tifftools ignores
    strips at offsets below 8, where a TIFF header would be). No buffer is copied."""

    def __init__(self, parts: Sequence[bytes | memoryview]) -> None:
        super().__init__()
        self._parts = [memoryview(part).cast("B") for part in parts]
        self.offsets: list[int] = []
        position = 8
        for part in self._parts:
            position += position % 2  # word-aligned strips, as TIFF recommends
            self.offsets.append(position)
            position += part.nbytes
        self.size = position
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._position = base + offset
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        # Overridden: io.RawIOBase.read would fill a bytearray, then copy it into bytes.
        end = self.size if size is None or size < 0 else min(self.size, self._position + size)
        chunks = []
        while self._position < end:
            chunks.append(self._chunk(end))
            self._position += len(chunks[-1])
        return b"".join(chunks)  # no copy for one chunk, the usual case

    def _chunk(self, end: int) -> bytes:
        for start, part in zip(self.offsets, self._parts):
            if start <= self._position < start + part.nbytes:
                return bytes(part[self._position - start:min(end - start, part.nbytes)])
        # In the header gap or an alignment byte (tifftools reads only strips, never these): zeros.
        next_part = min((s for s in self.offsets if s > self._position), default=self.size)
        return bytes(min(next_part, end) - self._position)

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        data = self.read(target.nbytes)
        target[:len(data)] = data
        return len(data)
