"""The settings of one conversion run, with their defaults in one place (the CLI reads them here)."""

from __future__ import annotations

from dataclasses import dataclass

from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.runtime.settings import DEFAULT_OVERLAP
from raw2rgb_plugin.vocabulary import DEFAULT_DENOISE, DENOISE_RANGE, OUTPUT_FORMATS

#: the profile `--format dng` uses when none is named: the shipped scene-linear one.
DEFAULT_DNG_PROFILE = "develop-lite"


def check_denoise(strength: float) -> float:
    low, high = DENOISE_RANGE
    if not low <= strength <= high:
        raise Raw2RgbError(f"--denoise {strength:g} is outside {low:g} … {high:g}",
                           "0 keeps all detail and grain, 1 is the default, 2 is strong")
    return float(strength)


@dataclass(frozen=True)
class ConvertOptions:
    tile: int | None = None  # packed pixels; None = whole frame when memory allows; 0 = whole frame
    overlap: int = DEFAULT_OVERLAP  # packed pixels between neighbouring tiles
    half_size: bool = False
    compress: bool = False
    overwrite: bool = False
    decode_workers: int = 2
    #: how strongly a noise-aware profile denoises: the noise level it is told, ×this (0 … 2).
    denoise: float = DEFAULT_DENOISE
    output_format: str = "tiff"

    def check(self) -> None:
        """One-line errors for settings that cannot work (before any model is loaded)."""
        if self.tile is not None and self.tile < 0:
            raise Raw2RgbError(f"--tile {self.tile} is negative", "use 0 for the whole frame or a size such as 512")
        if self.overlap < 0:
            raise Raw2RgbError(f"--overlap {self.overlap} is negative", f"use e.g. {DEFAULT_OVERLAP}")
        if self.tile and self.overlap >= self.tile:
            raise Raw2RgbError(f"--overlap {self.overlap} must be smaller than --tile {self.tile}",
                               f"use e.g. --tile {max(512, 4 * self.overlap)}")
        check_denoise(self.denoise)
        if self.output_format not in OUTPUT_FORMATS:
            raise Raw2RgbError(f"--format {self.output_format!r} is not one of {', '.join(OUTPUT_FORMATS)}",
                               "use tiff (a finished image) or dng (an editable linear DNG)")
        if self.output_format == "dng" and self.compress:
            raise Raw2RgbError("--compress is for TIFF output", "drop --compress with --format dng")
        if self.decode_workers < 1:
            raise Raw2RgbError(f"--jobs {self.decode_workers} must be at least 1", "use e.g. 2")
