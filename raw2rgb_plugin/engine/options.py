"""The settings of one conversion run, with their defaults in one place (the CLI reads them here)."""

from __future__ import annotations

from dataclasses import dataclass

from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.runtime.settings import DEFAULT_OVERLAP
from raw2rgb_plugin.vocabulary import DEFAULT_DENOISE, DENOISE_RANGE, LENS_MODES, OUTPUT_FORMATS

#: the profile `--format dng` uses when none is named: the shipped scene-linear one.
DEFAULT_DNG_PROFILE = "develop-lite"


def check_denoise(strength: float) -> float:
    low, high = DENOISE_RANGE
    if not low <= strength <= high:
        raise Raw2RgbError(f"--denoise {strength:g} is outside {low:g} … {high:g}",
                           "0 keeps all detail and grain, 1 is the default, 2 is strong")
    return float(strength)


def default_lens_mode(output_format: str) -> str:
    """A finished TIFF is lens-corrected; an editable DNG is not (its editor corrects the lens)."""
    return "off" if output_format == "dng" else "auto"


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
    #: lens corrections from lensfun: "auto" (a TIFF's default) or "off" (a DNG's: it keeps the lens
    #: data for the editor's own lens module, which would otherwise correct twice); None = default
    lens: str | None = None
    #: leave hot and dead pixels as the sensor read them (they are replaced by default, in every
    #: format: a stuck site is a defect in a finished TIFF and in an editable DNG alike)
    keep_hot_pixels: bool = False

    @property
    def corrects_lens(self) -> bool:
        return (self.lens or default_lens_mode(self.output_format)) == "auto"

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
        if self.lens is not None and self.lens not in LENS_MODES:
            raise Raw2RgbError(f"--lens {self.lens!r} is not one of {', '.join(LENS_MODES)}",
                               "use auto (correct the lens from lensfun's database) or off")
        if self.output_format == "dng" and self.lens == "auto":
            raise Raw2RgbError("--lens auto is for TIFF output: a DNG keeps the lens data for the editor's lens module",
                               "drop --lens with --format dng")
        if self.output_format == "dng" and self.compress:
            raise Raw2RgbError("--compress is for TIFF output", "drop --compress with --format dng")
        if self.decode_workers < 1:
            raise Raw2RgbError(f"--jobs {self.decode_workers} must be at least 1", "use e.g. 2")
