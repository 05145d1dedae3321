"""Output writers behind one small protocol, so a new format is one class, not an engine edit.

A writer knows its file suffix and writes one rendered frame (uint16 H×W×3) with the source's
photo metadata, atomically (a temporary name, then a rename) and without replacing an existing
file unless asked. The TIFF writer takes a display-oriented, finished image; the DNG writer takes
camera-native linear RGB in sensor orientation and reads its colour metadata from the source frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from raw2rgb_plugin.io.dng_linear import write_linear_dng
from raw2rgb_plugin.io.dng_opcodes import read_stage3_opcodes
from raw2rgb_plugin.io.exif_read import PhotoMetadata
from raw2rgb_plugin.io.tiff_write import write_rgb16_tiff
from raw2rgb_plugin.pipeline.colour import camera_native_to_display, xyz_to_camera_from_camera_to_srgb
from raw2rgb_plugin.pipeline.orientation import EXIF_TO_FLIP

if TYPE_CHECKING:
    from raw2rgb_plugin.io.raw_file import SensorFrame

log = logging.getLogger(__name__)

#: long side of a DNG's preview: enough for a browser's full-screen view, small to encode.
PREVIEW_LONG_SIDE = 2048
_FLIP_TO_EXIF = {flip: exif for exif, flip in EXIF_TO_FLIP.items()}


class Writer(Protocol):
    @property
    def suffix(self) -> str:
        """The output file's suffix, e.g. ".tif"; `engine.plan` names outputs with it.

        Read-only, so that frozen dataclasses (TiffWriter) satisfy the protocol.
        """
        ...

    def write(self, path: Path, pixels: np.ndarray, metadata: PhotoMetadata | None, *, overwrite: bool,
              frame: SensorFrame | None = None) -> None:
        """Write `pixels` to `path`; raises `OutputError` (exists, cannot write) with a one-line reason.

        `frame` is the decoded source, for writers that need its colour metadata (DNG).
        """
        ...

    @property
    def sensor_oriented(self) -> bool:
        """True when the writer wants pixels in sensor orientation (it records the orientation)."""
        ...


@dataclass(frozen=True)
class TiffWriter:
    """16-bit RGB TIFF with the profile's ICC profile and the source's EXIF/GPS (`tiff_write`)."""

    icc: bytes
    software: str
    compress: bool = False
    suffix: str = ".tif"
    sensor_oriented: bool = False

    def write(self, path: Path, pixels: np.ndarray, metadata: PhotoMetadata | None, *, overwrite: bool,
              frame: SensorFrame | None = None) -> None:
        write_rgb16_tiff(path, pixels, icc=self.icc, metadata=metadata, software=self.software,
                         compress=self.compress, overwrite=overwrite)


@dataclass(frozen=True)
class DngWriter:
    """Editable LinearRaw DNG (`dng_linear`): camera-native linear RGB, sensor orientation.

    The source frame gives what a raw converter needs to treat the file as the camera's own:
    its colour matrix, its as-shot white balance (still editable) and its orientation.
    """

    software: str
    suffix: str = ".dng"
    sensor_oriented: bool = True

    def write(self, path: Path, pixels: np.ndarray, metadata: PhotoMetadata | None, *, overwrite: bool,
              frame: SensorFrame | None = None) -> None:
        if frame is None:
            raise ValueError("a DNG needs the source frame (its colour matrix and white balance)")
        gains = np.asarray(frame.wb_gains_rgb, dtype=np.float64)
        neutral = (1.0 / gains) / np.max(1.0 / gains)
        preview = _downscaled(pixels, PREVIEW_LONG_SIDE) / 65535.0
        display = camera_native_to_display(preview, gains, frame.camera_to_srgb)
        matrix = frame.xyz_to_camera
        if matrix is None:  # a frame built without it: dcraw's row scale (LibRaw renormalises)
            matrix = xyz_to_camera_from_camera_to_srgb(frame.camera_to_srgb)
        write_linear_dng(path, pixels, xyz_to_camera=matrix,
                         as_shot_neutral=[float(v) for v in neutral], orientation=_FLIP_TO_EXIF.get(frame.flip, 1),
                         preview_srgb=np.rint(display * 255).astype(np.uint8), metadata=metadata,
                         original_raw_file_name=frame.path.name, software=self.software,
                         opcode_list3=_opcodes_that_still_apply(frame, pixels), overwrite=overwrite)


def _opcodes_that_still_apply(frame: SensorFrame, pixels: np.ndarray) -> bytes | None:
    """The source DNG's OpcodeList3 where our image is the stage-3 image it was written for.

    Its lens corrections are the host's to apply: the DNG's pixels keep the lens as the sensor saw
    it, as the source's do, so a host applies them once, as it would to the source (a future
    lens correction of DNG pixels must drop them, and the EXIF lens tags that darktable's and
    RawTherapee's lensfun lookups find). The image must have the source's stage-3 grid: LibRaw's
    visible area is the DNG's ActiveArea (it leaves DefaultCrop to the reader, and our DNG has
    none), so a full-size output has that grid. A half-size output, or one resampled to square
    pixels, has not: the opcodes' pixel rectangles and optical centres would land elsewhere.
    """
    opcodes = read_stage3_opcodes(frame.path)
    if opcodes is None:
        return None
    if not (pixels.shape[:2] == (frame.height, frame.width) == opcodes.size):
        log.info("%s: its OpcodeList3 addresses a %d×%d image and this DNG is %d×%d: not copied",
                 frame.path.name, opcodes.size[1], opcodes.size[0], pixels.shape[1], pixels.shape[0])
        return None
    return opcodes.data


def _downscaled(pixels: np.ndarray, long_side: int) -> np.ndarray:
    """float32 box mean over k×k blocks so the long side is at most `long_side` (a preview's source,
    summed from k² strided views: no full-size float copy of a 24 MP frame)."""
    step = max(1, -(-max(pixels.shape[:2]) // long_side))
    h, w = pixels.shape[0] // step, pixels.shape[1] // step
    total = np.zeros((h, w, pixels.shape[2]), dtype=np.float32)
    for dy in range(step):
        for dx in range(step):
            total += pixels[dy : dy + h * step : step, dx : dx + w * step : step]
    return total / (step * step)
