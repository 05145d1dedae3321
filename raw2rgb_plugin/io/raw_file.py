"""RAW decoding with rawpy (LibRaw): a camera file → a frame the engine can pack.

A frame holds the visible mosaic in sensor orientation plus everything needed to normalise it
(levels, white balance, colour matrix) and to orient the result, each with the source it came
from, because real files lie: invalid white balance, zero matrices, odd margins. A Bayer sensor
gives a `BayerFrame`, a Fujifilm X-Trans sensor an `XTransFrame`: the same fields (both are
`SensorFrame`s and satisfy the pipeline's `MosaicFrame`), a 2×2 or a 6×6 pattern. The steps that
render only Bayer frames take `RawFile.frame` / `decode_raw`, which refuse X-Trans in one line;
`RawFile.mosaic_frame` is either. Files the method cannot use (Foveon, linear DNG, sRAW,
monochrome) are rejected with one line that says what the file is and what to do instead.
"""

from __future__ import annotations

import errno
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, overload

import numpy as np
import rawpy

from raw2rgb_plugin.errors import RawDecodeError, UnsupportedRawError
from raw2rgb_plugin.io.exif_read import PhotoMetadata, read_photo_metadata
from raw2rgb_plugin.io.libraw import LibRawHandle
from raw2rgb_plugin.io.xtrans import black_per_site, visible_pattern
from raw2rgb_plugin.pipeline.cfa import cfa_indices, is_xtrans, pattern_from_indices
from raw2rgb_plugin.pipeline.colour import camera_to_srgb_from_xyz_to_camera, xyz_to_camera_from_camera_to_srgb
from raw2rgb_plugin.pipeline.geometry import stretched_size

BAYER_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")

#: below this a file cannot hold its mosaic (the Kodak DC50's lossy KDC is ~1.9 bits/pixel).
_MIN_BITS_PER_PIXEL = 0.25


@dataclass
class SensorFrame:
    """The fields every decoded mosaic has; `BayerFrame` and `XTransFrame` are its two kinds."""

    #: "bayer" or "xtrans": which kind of CFA, for code that has not narrowed the type
    cfa_kind: ClassVar[str] = ""

    path: Path
    mosaic: np.ndarray  # uint16 (H, W): the visible area, sensor orientation
    #: colours of the mosaic's first period read row by row: mosaic[0:2, 0:2] for Bayer ("GRBG"),
    #: mosaic[0:6, 0:6] for X-Trans (36 letters)
    cfa_pattern: str
    black_level_per_site: np.ndarray  # float32 (P, P): black level of each site of that period
    white_level: float
    wb_gains_rgb: np.ndarray  # float32 (3,): multipliers for R, G, B, normalised to G = 1
    wb_source: str  # "as-shot", "daylight" or "neutral"
    camera_to_srgb: np.ndarray  # float32 (3, 3): white-balanced camera RGB → linear sRGB
    matrix_source: str  # "rgb_xyz_matrix", "color_matrix", "dng ColorMatrix1" or "identity"
    flip: int  # LibRaw sizes.flip: bit 1 flips columns, bit 2 rows, bit 4 transposes (after)
    raw_size: tuple[int, int] = (0, 0)  # full sensor area incl. margins (H, W)
    notes: list[str] = field(default_factory=list)
    #: width ÷ height of one sensor pixel (LibRaw sizes.pixel_aspect, DNG DefaultScale): 1 for
    #: square pixels; the output is resampled to square pixels as LibRaw does (`stretched_size`).
    pixel_aspect: float = 1.0
    #: XYZ(D65) → camera-native RGB with the camera's own row scale (what a DNG's ColorMatrix1
    #: holds); None where unknown. `camera_to_srgb` alone loses the row scale, and darktable 5 and
    #: RawTherapee read a DNG's matrix rows as written (4.2 and LibRaw renormalise them).
    xyz_to_camera: np.ndarray | None = None

    @property
    def height(self) -> int:
        return int(self.mosaic.shape[0])

    @property
    def width(self) -> int:
        return int(self.mosaic.shape[1])

    @property
    def output_size(self) -> tuple[int, int]:
        """(height, width) of the full-resolution RGB after square-pixel resampling and orientation."""
        h, w = stretched_size(self.height, self.width, self.pixel_aspect)
        return (w, h) if self.flip & 4 else (h, w)

    @property
    def cfa(self) -> np.ndarray:
        """int64 (P, P) colour indices (R 0, G 1, B 2) of `cfa_pattern`, in the mosaic's phase."""
        return cfa_indices(self.cfa_pattern)

    @property
    def sensor(self) -> str:
        """What the sensor is, in words: "GRBG Bayer" or "X-Trans 6×6"."""
        return "X-Trans 6×6" if self.cfa_kind == "xtrans" else f"{self.cfa_pattern} Bayer"


@dataclass
class BayerFrame(SensorFrame):
    """A 2×2 Bayer mosaic: `cfa_pattern` is one of RGGB, BGGR, GRBG, GBRG; black is (2, 2)."""

    cfa_kind: ClassVar[str] = "bayer"


@dataclass
class XTransFrame(SensorFrame):
    """A Fujifilm X-Trans mosaic: `cfa_pattern` is the 6×6 layout at the visible area's phase
    (`pipeline.cfa.xtrans_phase` finds it); black is (6, 6). No profile renders it yet."""

    cfa_kind: ClassVar[str] = "xtrans"


@dataclass(frozen=True)
class EmbeddedPreview:
    """The camera's own rendering embedded in the RAW: JPEG bytes, or an RGB bitmap."""

    format: str  # "jpeg" or "bitmap"
    data: bytes | np.ndarray


class RawFile:
    """One RAW file opened once: its frame, its photo metadata and its embedded preview.

        with RawFile(path) as raw:
            frame, metadata = raw.frame, raw.metadata

    Opening decodes the mosaic (raising `RawDecodeError`/`UnsupportedRawError` with one line);
    metadata and preview are read on first use from the same open LibRaw handle.
    `mosaic_frame` is the frame of any sensor raw2rgb decodes (Bayer or X-Trans); `frame` is the
    Bayer frame the rendering steps take, and raises `UnsupportedRawError` for an X-Trans file.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        # LibRaw's own messages about this file become notes of its frame while it is open.
        self._handle = _open(self.path)
        try:
            self.mosaic_frame = _decode(self.path, self._handle)
        except BaseException:
            self._handle.close()
            raise
        self._raw = self._handle.raw
        self._metadata: PhotoMetadata | None = None

    @property
    def frame(self) -> BayerFrame:
        """The Bayer frame; `UnsupportedRawError` (one line) for an X-Trans file."""
        return bayer_only(self.mosaic_frame)

    def __enter__(self) -> RawFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._handle.close()

    @property
    def libraw(self) -> rawpy.RawPy:
        """The open rawpy handle, for readers that need more than the frame (noise, margins)."""
        return self._raw

    @property
    def metadata(self) -> PhotoMetadata:
        if self._metadata is None:
            self._metadata = read_photo_metadata(self.path, self._raw)
        return self._metadata

    def preview(self) -> EmbeddedPreview | None:
        """The largest embedded preview LibRaw finds, or None when the file has none it can read."""
        try:
            thumb = self._raw.extract_thumb()
        except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
            return None
        except (rawpy.LibRawError, OSError):
            return None  # a damaged preview does not make the RAW unusable
        if thumb.format == rawpy.ThumbFormat.JPEG:
            return EmbeddedPreview("jpeg", bytes(thumb.data))
        return EmbeddedPreview("bitmap", np.asarray(thumb.data))


@overload
def decode_raw(path: str | Path, *, keep_open: Literal[False] = False) -> BayerFrame: ...
@overload
def decode_raw(path: str | Path, *, keep_open: Literal[True]) -> tuple[BayerFrame, rawpy.RawPy]: ...
@overload
def decode_raw(path: str | Path, *, keep_open: bool) -> BayerFrame | tuple[BayerFrame, rawpy.RawPy]: ...


def decode_raw(path: str | Path, *, keep_open: bool = False) -> BayerFrame | tuple[BayerFrame, rawpy.RawPy]:
    """Decode `path` into a `BayerFrame` (an X-Trans file raises `UnsupportedRawError`).

    With `keep_open`, the still-open `rawpy.RawPy` is returned too (metadata readers use its
    `other`/`lens`); the caller closes it.
    """
    path = Path(path)
    handle = _open(path)
    try:
        frame = bayer_only(_decode(path, handle))
    except BaseException:
        handle.close()
        raise
    if keep_open:
        return frame, handle.detach()
    handle.close()
    return frame


def bayer_only(frame: SensorFrame) -> BayerFrame:
    """`frame`, for a step that takes Bayer frames only; an X-Trans frame is refused in one line."""
    if isinstance(frame, BayerFrame):
        return frame
    raise UnsupportedRawError(
        "is an X-Trans RAW (Fujifilm's 6×6 colour filter array), and this step takes Bayer RAWs only",
        "`raw2rgb info` describes it; render it with a classical converter (darktable, RawTherapee) for now",
    )


def _open(path: Path) -> LibRawHandle:
    """`path` opened by LibRaw, or RawDecodeError with the real reason."""
    notes: list[str] = []
    try:
        size = os.stat(path).st_size
    except OSError:
        size = -1  # LibRawHandle says why
    if size == 0 and os.path.isfile(path):
        raise RawDecodeError("is empty (0 bytes)", "the copy is incomplete; copy it from the card again")
    try:
        return LibRawHandle(path, notes)
    except OSError as exc:
        raise _unreadable(path, exc) from None
    except rawpy.LibRawFileUnsupportedError:
        raise _unrecognised(path, notes) from None
    except rawpy.LibRawError as exc:
        kind, is_raw = file_kind(path)
        if kind is None or not is_raw:
            raise _unrecognised(path, [f"LibRaw: {_libraw_message(exc)}", *notes]) from None
        raise RawDecodeError(f"cannot be opened: the {kind} file is damaged or truncated ({_libraw_says(exc, notes)})",
                             "copy it from the card again") from None


def _decode(path: Path, handle: LibRawHandle) -> SensorFrame:
    try:
        return _frame_from_raw(path, handle.raw, handle.size, handle.notes)
    except RawDecodeError as exc:
        handle.sync()  # what LibRaw printed about the file belongs in the reason
        if not handle.notes:
            raise
        said = "; ".join(n.removeprefix("LibRaw: ") for n in handle.notes)
        if exc.problem.endswith(")") and "(LibRaw: " in exc.problem:
            problem = f"{exc.problem[:-1]}; {said})"
        else:
            problem = f"{exc.problem} (LibRaw: {said})"
        raise RawDecodeError(problem, exc.hint) from None


def _unreadable(path: Path, exc: OSError) -> RawDecodeError:
    """The one line for a file that cannot even be opened for reading."""
    if exc.errno == errno.ELOOP:
        return RawDecodeError("is a symbolic link loop", "point the link at a real file")
    if isinstance(exc, FileNotFoundError):
        if os.path.islink(path):
            return RawDecodeError(f"is a broken symbolic link (to {os.readlink(path)})", "point the link at a real file")
        return RawDecodeError("does not exist", "check the path")
    if isinstance(exc, PermissionError):
        return RawDecodeError("cannot be read: permission denied", "check the file's permissions (ls -l) and owner")
    if isinstance(exc, IsADirectoryError):
        return RawDecodeError("is a folder, not a RAW file", "pass the RAW files in it, or the folder itself to convert")
    if exc.errno == errno.EINVAL:
        return RawDecodeError("is not a regular file (a device, pipe or socket)", "pass a camera RAW file")
    return RawDecodeError(f"cannot be read ({exc.strerror or exc})", "check the file and the disk")


#: what a file's first bytes say it is: (offset, signature, kind, is_raw)
_SIGNATURES: tuple[tuple[int, bytes, str, bool], ...] = (
    (0, b"\xff\xd8\xff", "JPEG image", False),
    (0, b"\x89PNG\r\n\x1a\n", "PNG image", False),
    (0, b"GIF8", "GIF image", False),
    (8, b"WEBP", "WebP image", False),
    (0, b"%PDF", "PDF document", False),
    (4, b"ftypheic", "HEIF image", False),
    (4, b"ftypmif1", "HEIF image", False),
    (4, b"ftypavif", "AVIF image", False),
    (0, b"PK\x03\x04", "ZIP archive", False),
    (0, b"safetensors", "safetensors file", False),
    (6, b"HEAPCCDR", "Canon CRW", True),
    (4, b"ftypcrx ", "Canon CR3", True),
    (8, b"CR\x02", "Canon CR2", True),
    (0, b"FUJIFILMCCD-RAW", "Fujifilm RAF", True),
    (0, b"IIRO", "Olympus ORF", True),
    (0, b"IIRS", "Olympus ORF", True),
    (0, b"MMOR", "Olympus ORF", True),
    (0, b"IIU\x00", "Panasonic RW2", True),
    (0, b"\x00MRM", "Minolta MRW", True),
    (0, b"FOVb", "Sigma X3F", True),
    (0, b"IIII", "Phase One IIQ", True),
    (0, b"II*\x00", "TIFF", True),
    (0, b"MM\x00*", "TIFF", True),
)


def file_kind(path: Path) -> tuple[str | None, bool]:
    """(what the first bytes say the file is, whether that is a RAW container), or (None, False)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(32)
    except OSError:
        return None, False
    for offset, signature, kind, is_raw in _SIGNATURES:
        if head[offset:offset + len(signature)] == signature:
            if kind == "TIFF":
                suffix = path.suffix.lower()
                if suffix in (".tif", ".tiff"):
                    return "TIFF image", False
                return (suffix[1:].upper() if suffix else "TIFF-based RAW"), True  # DNG, NEF, ARW, CR2…
            return kind, is_raw
    return None, False


def _unrecognised(path: Path, notes: list[str]) -> RawDecodeError:
    """LibRaw did not recognise the file: say what it is instead, when its first bytes tell."""
    kind, is_raw = file_kind(path)
    said = f" (LibRaw: {'; '.join(n.removeprefix('LibRaw: ') for n in notes)})" if notes else ""
    if kind is not None and not is_raw:
        article = "an" if kind[0] in "AEIOU" else "a"
        return RawDecodeError(f"is {article} {kind}, not a camera RAW{said}", "pass a camera RAW file (CR2, NEF, ARW, DNG, …)")
    if kind is not None:
        return RawDecodeError(f"{kind} file that LibRaw cannot read: damaged or truncated, or from a camera "
                              f"this LibRaw does not know{said}",
                              "copy it from the card again, or update rawpy (pip install -U rawpy)")
    return RawDecodeError(f"not a RAW format LibRaw knows{said}", "pass a camera RAW file (CR2, NEF, ARW, DNG, …)")


def _frame_from_raw(path: Path, raw: rawpy.RawPy, file_size: int, notes: list[str]) -> SensorFrame:
    side = _cfa_side(raw)
    _check_holds_data(raw, file_size)
    try:
        mosaic = np.array(raw.raw_image_visible, dtype=np.uint16, copy=True)
        # rawpy's raw_colors_visible is wrong for X-Trans past a 6-pixel margin (io/xtrans.py)
        colours = np.array(raw.raw_colors_visible[:2, :2], dtype=np.int64) if side == 2 else visible_pattern(raw)
    except (rawpy.LibRawError, OSError) as exc:
        raise RawDecodeError(f"cannot decode the image data: the file is damaged or truncated (LibRaw: {_libraw_message(exc)})",
                             "copy it from the card again") from None

    kind, cfa = _frame_kind(colours)
    if mosaic.shape[0] < 16 or mosaic.shape[1] < 16:
        raise RawDecodeError(f"image is only {mosaic.shape[1]}×{mosaic.shape[0]} pixels", "the file holds no usable image")
    if int(mosaic.max()) == int(mosaic.min()):
        raise RawDecodeError("holds no image data (every pixel has the same value)", "the file was stripped or damaged")

    if kind is BayerFrame:
        black = np.asarray(raw.black_level_per_channel, dtype=np.float32)[colours]
    else:
        black = black_per_site(raw, path, colours, notes)
    white = float(raw.white_level)
    if not white > float(black.max()):
        raise RawDecodeError(f"white level {white:g} is not above the black level", "the file's metadata is damaged")

    aspect = float(raw.sizes.pixel_aspect)
    if not (math.isfinite(aspect) and 0.1 <= aspect <= 10):
        notes.append(f"pixel aspect {aspect:g} is implausible: pixels are taken as square")
        aspect = 1.0
    wb, wb_source = _white_balance(raw, notes)
    matrix, matrix_source = _camera_to_srgb(raw, path, notes)
    return kind(
        path=path,
        mosaic=mosaic,
        cfa_pattern=cfa,
        black_level_per_site=black,
        white_level=white,
        wb_gains_rgb=wb,
        wb_source=wb_source,
        camera_to_srgb=matrix,
        matrix_source=matrix_source,
        flip=int(raw.sizes.flip),
        raw_size=(int(raw.sizes.raw_height), int(raw.sizes.raw_width)),
        notes=notes,
        pixel_aspect=aspect,
        xyz_to_camera=_xyz_to_camera(raw, matrix, matrix_source),
    )


def _cfa_side(raw: rawpy.RawPy) -> int:
    """2 (Bayer) or 6 (X-Trans): the period of the file's colour filter array; anything raw2rgb
    cannot decode (demosaiced, monochrome, another CFA, non-RGB filters) is refused in one line."""
    try:
        raw_type = raw.raw_type
        pattern = raw.raw_pattern
        colour_desc = raw.color_desc
    except (rawpy.LibRawError, OSError) as exc:
        raise RawDecodeError(f"cannot read the image data: the file is damaged or truncated (LibRaw: {_libraw_message(exc)})",
                             "copy it from the card again") from None

    if raw_type == rawpy.RawType.Stack:
        raise UnsupportedRawError(
            "holds demosaiced or multi-layer data (linear DNG, sRAW or Foveon), not a Bayer mosaic",
            "raw2rgb needs a Bayer RAW; open this file in a classical converter",
        )
    if raw.num_colors == 1 or pattern is None:
        raise UnsupportedRawError("is a monochrome or pattern-less RAW", "raw2rgb needs a colour Bayer RAW")
    if pattern.shape not in ((2, 2), (6, 6)):
        raise UnsupportedRawError(
            f"has a {pattern.shape[0]}×{pattern.shape[1]} colour filter array, not a 2×2 Bayer or 6×6 X-Trans pattern",
            "raw2rgb profiles are trained on Bayer sensors; use a classical converter for this file",
        )
    if colour_desc[:3] != b"RGB":
        raise UnsupportedRawError(
            f"has a {colour_desc.decode(errors='replace')} colour filter, not RGB",
            "raw2rgb needs an RGB Bayer sensor",
        )
    return int(pattern.shape[0])


def _check_holds_data(raw: rawpy.RawPy, file_size: int) -> None:
    # Stripped files (real headers, pixel data cut away) can "decode" into whatever memory
    # LibRaw had: no lossless codec gets a RAW below ~2 bits per pixel, so a file that small
    # cannot hold its image.
    pixels = int(raw.sizes.raw_height) * int(raw.sizes.raw_width)
    if pixels and file_size * 8 < pixels * _MIN_BITS_PER_PIXEL:
        raise RawDecodeError(
            f"holds no image data: {file_size} bytes cannot hold a {raw.sizes.raw_width}×{raw.sizes.raw_height} image",
            "the file was stripped or truncated; copy it from the card again",
        )


def _frame_kind(colours: np.ndarray) -> tuple[type[SensorFrame], str]:
    """(the frame class, the pattern's letters) of the visible area's first period of colours."""
    cfa = pattern_from_indices(colours)
    if colours.shape == (2, 2):
        if cfa not in BAYER_PATTERNS:
            raise UnsupportedRawError(f"has an unusual CFA phase {cfa}", "raw2rgb needs a 2×2 RGGB-family Bayer pattern")
        return BayerFrame, cfa
    if not is_xtrans(cfa):
        rows = " ".join(cfa[k:k + 6] for k in range(0, 36, 6))
        # Measured: LibRaw 0.22 reads a Fujifilm-made 6×6 DNG whose active area starts off the
        # period as all red (it moves the margins and takes the pattern from a RAF-only table).
        raise UnsupportedRawError(
            f"has a 6×6 colour filter array that LibRaw reads as {rows}, not the X-Trans layout",
            "if it is a DNG converted from a Fujifilm RAF, use the RAF itself",
        )
    return XTransFrame, cfa


def _normalised_wb(values) -> np.ndarray | None:
    """[R, G, B, G2] multipliers → [R, G, B] with G = 1, or None when unusable."""
    v = np.asarray(values, dtype=np.float64)
    if v.shape[0] < 3 or not np.all(np.isfinite(v[:3])) or np.any(v[:3] <= 0):
        return None
    gains = v[:3] / v[1]
    # Real multipliers stay within a couple of stops of green; outside that it is garbage.
    if np.any(gains < 1 / 8) or np.any(gains > 16):
        return None
    return gains.astype(np.float32)


def _white_balance(raw: rawpy.RawPy, notes: list[str]) -> tuple[np.ndarray, str]:
    as_shot = _normalised_wb(raw.camera_whitebalance)
    if as_shot is not None and not np.allclose(as_shot, 1.0):
        return as_shot, "as-shot"
    if as_shot is None:
        values = ", ".join(f"{float(v):g}" for v in np.round(np.asarray(raw.camera_whitebalance, dtype=np.float64), 3))
        notes.append(f"the camera's as-shot white balance ({values}) is invalid")
    daylight = _normalised_wb(raw.daylight_whitebalance)
    if daylight is not None and not np.allclose(daylight, 1.0):
        return daylight, "daylight"
    if as_shot is not None:
        # All-ones as shot is what some cameras really record (Kodak DC50): keep it.
        return as_shot, "as-shot"
    return np.ones(3, dtype=np.float32), "neutral"


def _camera_to_srgb(raw: rawpy.RawPy, path: Path, notes: list[str]) -> tuple[np.ndarray, str]:
    xyz_to_cam = np.asarray(raw.rgb_xyz_matrix, dtype=np.float64)[:3, :3]
    if np.abs(xyz_to_cam).sum() > 0:
        try:
            return camera_to_srgb_from_xyz_to_camera(xyz_to_cam).astype(np.float32), "rgb_xyz_matrix"
        except (ValueError, np.linalg.LinAlgError):
            notes.append("rgb_xyz_matrix is degenerate")
    rgb_cam = np.asarray(raw.color_matrix, dtype=np.float64)[:3, :3]
    if np.abs(rgb_cam).sum() > 0 and np.all(np.abs(rgb_cam.sum(axis=1) - 1) < 0.05):
        return rgb_cam.astype(np.float32), "color_matrix"
    dng_matrix = _dng_color_matrix1(path)
    if dng_matrix is not None:
        try:
            return camera_to_srgb_from_xyz_to_camera(dng_matrix).astype(np.float32), "dng ColorMatrix1"
        except (ValueError, np.linalg.LinAlgError):
            notes.append("DNG ColorMatrix1 is degenerate")
    notes.append("no colour matrix in the file: camera RGB is taken as sRGB")
    return np.eye(3, dtype=np.float32), "identity"


def _xyz_to_camera(raw: rawpy.RawPy, camera_to_srgb: np.ndarray, matrix_source: str) -> np.ndarray:
    """The XYZ(D65) → camera-native matrix of the frame, rows at the camera's own scale.

    LibRaw's table gives it directly. Otherwise it is rebuilt from `camera_to_srgb`: dcraw's
    construction divided each row by the camera's response to D65 white, which is 1 / the
    daylight white-balance gain, so multiplying back by it restores the scale (exact on the D30,
    whose table matrix is known).
    """
    if matrix_source == "rgb_xyz_matrix":
        return np.asarray(raw.rgb_xyz_matrix, dtype=np.float64)[:3, :3].copy()
    derived = xyz_to_camera_from_camera_to_srgb(camera_to_srgb)
    daylight = _normalised_wb(raw.daylight_whitebalance)
    return derived / daylight.astype(np.float64)[:, None] if daylight is not None else derived


def _dng_color_matrix1(path: Path) -> np.ndarray | None:
    import exifread

    try:
        with open(path, "rb") as f:
            tags = exifread.process_file(f, details=False, stop_tag="ColorMatrix1")
    except Exception:  # exifread raises many types on non-TIFF files; a missing matrix is fine
        return None
    for key, tag in tags.items():
        if key.endswith("ColorMatrix1"):
            values = [float(v.num) / float(v.den) if hasattr(v, "num") else float(v) for v in tag.values]
            if len(values) >= 9:
                return np.array(values[:9], dtype=np.float64).reshape(3, 3)
    return None


def _libraw_says(exc: BaseException, notes: list[str]) -> str:
    """LibRaw's error and the lines it printed about the file, as one parenthesis' content."""
    return "; ".join([f"LibRaw: {_libraw_message(exc)}", *(n.removeprefix("LibRaw: ") for n in notes)])


def _libraw_message(exc: BaseException) -> str:
    text = exc.args[0] if exc.args else str(exc)
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return str(text).strip() or type(exc).__name__
