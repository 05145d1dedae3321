"""Output writers behind one small protocol, so a new format is one class, not an engine edit.

A writer knows its file suffix and writes one rendered frame (uint16 H×W×3, display-oriented)
with the source's photo metadata, atomically (a temporary name, then a rename) and without
replacing an existing file unless asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from raw2rgb_plugin.io.exif_read import PhotoMetadata
from raw2rgb_plugin.io.tiff_write import write_rgb16_tiff


class Writer(Protocol):
    @property
    def suffix(self) -> str:
        """The output file's suffix, e.g. ".tif"; `engine.plan` names outputs with it.

        Read-only, so that frozen dataclasses (TiffWriter) satisfy the protocol.
        """
        ...

    def write(self, path: Path, pixels: np.ndarray, metadata: PhotoMetadata | None, *, overwrite: bool) -> None:
        """Write `pixels` to `path`; raises `OutputError` (exists, cannot write) with a one-line reason."""
        ...


@dataclass(frozen=True)
class TiffWriter:
    """16-bit RGB TIFF with the profile's ICC profile and the source's EXIF/GPS (`tiff_write`)."""

    icc: bytes
    software: str
    compress: bool = False
    suffix: str = ".tif"

    def write(self, path: Path, pixels: np.ndarray, metadata: PhotoMetadata | None, *, overwrite: bool) -> None:
        write_rgb16_tiff(path, pixels, icc=self.icc, metadata=metadata, software=self.software,
                         compress=self.compress, overwrite=overwrite)
