"""Which lens correction a photograph gets: its camera and lens found in lensfun's database.

lensfun (through the `lensfunpy` wheel) is what darktable, RawTherapee and digiKam correct lenses
with: a community database of measured distortion, lateral chromatic aberration (TCA) and
vignetting for ~1,300 lenses, interpolated across focal length, aperture and focus distance. We
use its lookup and its models rather than our own: the calibration conventions (normalised radii,
crop factors, the PTLens/poly models) are the library's to get right.

Databases, first match wins: `RAW2RGB_LENSFUN_DB` (a folder of lensfun XML files) when set, then
the user's and the system's lensfun *updates* (what `lensfun-update-data` downloads: newer than any
release), then the database bundled in the `lensfunpy` wheel, then the distribution's
/usr/share/lensfun (Debian 12's is from 2022, older than the wheel's). `LensCorrection.database`
says which one answered.

A file without a usable match gets a one-line reason (`LensLookup.reason`), never an error: the
photograph converts without lens correction.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from raw2rgb_plugin.io.exif_read import PhotoMetadata, camera_name

#: lensfun's convention for "focused at infinity" when the file gives no distance (as darktable)
INFINITY_METRES = 1000.0
#: lensfun folders holding updates (newest first); `version_1` is the database format they hold
_UPDATE_FOLDERS = ("~/.local/share/lensfun/updates/version_1", "/var/lib/lensfun-updates/version_1")
_DISTRIBUTION_FOLDER = "/usr/share/lensfun/version_1"


@dataclass(frozen=True)
class LensCorrection:
    """A lens found in lensfun's database, with the shooting parameters to correct it for."""

    camera: str  # lensfun's maker + model of the camera
    lens: str  # lensfun's model of the lens
    database: str  # which database answered (see the module doc)
    focal_length: float  # millimetres
    aperture: float | None  # f-number; None: vignetting is not corrected (it depends on it)
    distance: float  # focus distance in metres (INFINITY_METRES when the file does not say)
    crop_factor: float  # the camera's, which scales lensfun's normalised coordinates
    corrects: tuple[str, ...]  # of "distortion", "tca", "vignetting": what its calibration covers
    lensfun_lens: Any = field(repr=False, compare=False, default=None)

    def summary(self) -> dict[str, Any]:
        """JSON-able: what `--json` and `raw2rgb info` print."""
        return {"camera": self.camera, "lens": self.lens, "database": self.database,
                "focal_length": self.focal_length, "aperture": self.aperture, "distance": self.distance,
                "corrects": list(self.corrects)}

    def modifier(self, width: int, height: int, *, flags: int, scale: float = 0.0) -> Any:
        """A lensfun Modifier for an image of `width` × `height` in sensor orientation.

        `scale` 0 is lensfun's automatic scale: the corrected image is enlarged just enough that no
        undefined (black) border shows, as darktable's lens module does by default.
        """
        import lensfunpy
        import numpy as np

        modifier = lensfunpy.Modifier(self.lensfun_lens, self.crop_factor, int(width), int(height))
        modifier.initialize(self.focal_length, self.aperture or self.lensfun_lens.min_aperture or 8.0,
                            self.distance, scale=scale, pixel_format=np.float32, flags=flags)
        return modifier


@dataclass(frozen=True)
class LensLookup:
    """The correction for a file, or the one-line reason there is none."""

    correction: LensCorrection | None
    reason: str | None = None


def find_lens_correction(metadata: PhotoMetadata) -> LensLookup:
    """The lensfun correction for a photograph with `metadata`, or why there is none."""
    if not metadata.make or not metadata.model:
        return LensLookup(None, "the file names no camera make and model")
    if not metadata.lens_model:
        return LensLookup(None, "the file names no lens")
    if not metadata.focal_length or float(metadata.focal_length) <= 0:
        return LensLookup(None, "the file gives no focal length")
    focal = float(metadata.focal_length)
    for name, database in _databases():
        cameras = database.find_cameras(metadata.make, metadata.model)
        if not cameras:
            continue
        camera = cameras[0]
        lenses = database.find_lenses(camera, metadata.lens_make or None, metadata.lens_model)
        if not lenses:
            continue
        return _correction(name, camera, lenses[0], metadata, focal)
    return LensLookup(None, f"lensfun's database has no match for the {camera_name(metadata.make, metadata.model)} "
                            f"with {metadata.lens_model}")


def _correction(database: str, camera: Any, lens: Any, metadata: PhotoMetadata, focal: float) -> LensLookup:
    # A fuzzy match of the wrong lens would warp the picture: its focal range must hold the shot's.
    low, high = lens.min_focal or focal, lens.max_focal or lens.min_focal or focal
    if not low * 0.99 <= focal <= high * 1.01:
        return LensLookup(None, f"lensfun's closest lens, {lens.model}, covers {low:g}–{high:g} mm, "
                                f"not the file's {focal:g} mm")
    aperture = float(metadata.f_number) if metadata.f_number else None
    distance = metadata.subject_distance
    corrects = tuple(kind for kind, calibrations in (("distortion", lens.calib_distortion), ("tca", lens.calib_tca),
                                                     ("vignetting", lens.calib_vignetting))
                     if calibrations and (kind != "vignetting" or aperture))
    if not corrects:
        return LensLookup(None, f"lensfun knows {lens.model} but holds no calibration usable for this shot")
    return LensLookup(LensCorrection(
        camera=camera_name(camera.maker, camera.model) or "", lens=str(lens.model), database=database,
        focal_length=focal, aperture=aperture,
        # EXIF's "infinity" (0xFFFFFFFF m) and anything beyond lensfun's own convention read as it
        distance=min(float(distance), INFINITY_METRES) if distance and float(distance) > 0 else INFINITY_METRES,
        crop_factor=float(camera.crop_factor), corrects=corrects, lensfun_lens=lens))


def _databases() -> Iterator[tuple[str, Any]]:
    """(name, lensfunpy.Database) in the order they are asked; each loaded once per process."""
    chosen = os.environ.get("RAW2RGB_LENSFUN_DB")
    if chosen:
        yield from _folder_database(chosen)
        return
    for folder in _UPDATE_FOLDERS:
        yield from _folder_database(os.path.expanduser(folder))
    yield "lensfunpy (bundled)", _bundled_database()
    yield from _folder_database(_DISTRIBUTION_FOLDER)


def _folder_database(folder: str) -> Iterator[tuple[str, Any]]:
    database = _database_of(folder)
    if database is not None:
        yield folder, database


@cache
def _database_of(folder: str) -> Any:
    import lensfunpy

    files = sorted(str(p) for p in Path(folder).glob("*.xml")) if Path(folder).is_dir() else []
    if not files:
        return None
    try:
        return lensfunpy.Database(paths=files, load_common=False, load_bundled=False)
    except Exception:
        return None


@cache
def _bundled_database() -> Any:
    import lensfunpy

    return lensfunpy.Database(load_common=False, load_bundled=True)  # 0.15 s to parse, once
