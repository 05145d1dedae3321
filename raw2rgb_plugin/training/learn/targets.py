"""The camera's own rendering of each RAW: a sidecar JPEG of the same stem, or the embedded preview.

`find_raws` lists the RAWs of files and folders; `target_for` says which rendering a RAW gets
(`auto`: the sidecar when there is one — full size, the camera's final JPEG — else the preview
LibRaw finds, as rawpy's `extract_thumb`); `read_target` decodes it as stored, with the EXIF
Orientation its own header carries. A JPEG far larger than the pair needs is decoded reduced
in the DCT domain (`_draft_factor`).

Orientation is decided by looking, not by trusting tags: a sidecar JPEG stores pixels in sensor
orientation with an Orientation tag, most embedded previews store them in sensor orientation with
none, some store them already rotated. `to_sensor_orientation` tries each reading and keeps the
one whose structure matches the RAW (gradient correlation at thumbnail size).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from raw2rgb_plugin.engine.plan import expand_inputs, is_raw_path
from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.io.raw_file import RawFile
from raw2rgb_plugin.pipeline.orientation import exif_orient_hwc, unorient_hwc
from raw2rgb_plugin.training.data.align import gradient_ncc
from raw2rgb_plugin.training.learn.options import SOURCES

SIDECAR_SUFFIXES = (".jpg", ".jpeg")
#: a rendering smaller than this (short side, px) carries too little to learn a look from
MIN_TARGET_SIDE = 32
#: long side at which orientation candidates are compared: enough structure, negligible cost
_ORIENTATION_SIZE = 160
_ORIENTATION_TAG = 274
#: a reduced JPEG decode keeps at least this many times the pair's long side: at 2× the capped
#: target is the full decode's within 62.7 dB PSNR (mean 0.12/255; 24 MP card frame, capped to
#: 1024), at 1× only 49.3 dB (max 12/255), and 1/2-scale decoding took 0.18 s against 1.9 s
_DRAFT_MARGIN = 2


class TargetMissing(Raw2RgbError):
    """A RAW without a usable rendering of the kind asked for (reported and skipped)."""


@dataclass(frozen=True)
class Target:
    """A decoded rendering as stored: (H, W, 3) float32 in [0, 1], and its own Orientation tag."""

    kind: str  # "sidecar" or "embedded"
    image: np.ndarray
    orientation: int
    path: Path | None  # the sidecar's path; None for an embedded preview
    size: tuple[int, int]  # (H, W) as stored: `image` may be a reduced decode of it


def find_raws(inputs: list[Path]) -> list[Path]:
    """RAW files named directly or found in the given folders (not recursive), sorted, unique.

    `convert`'s own expansion (`engine.plan.expand_inputs`); learn is stricter where it names a
    file: every one must be a RAW, since each becomes a training pair.
    """
    found, problems = expand_inputs([os.fspath(item) for item in inputs])
    for problem in problems:
        if not problem.empty_folder:  # learn says "no RAW files" once, for all inputs together
            raise Raw2RgbError(f"{problem.argument}: {problem.problem}", "pass camera RAWs or folders of them")
    for path in found:
        if not is_raw_path(path):
            raise Raw2RgbError(f"{path} is not a RAW file this tool knows",
                               "pass camera RAWs (CR2, NEF, ARW, DNG, …) or folders")
    return sorted({path.resolve() for path in found})


def sidecar_for(raw: Path) -> Path | None:
    """The JPEG beside `raw` with the same stem (any case of .jpg/.jpeg), if there is exactly one."""
    stem = raw.stem.lower()
    matches = [p for p in raw.parent.iterdir()
               if p.is_file() and p.stem.lower() == stem and p.suffix.lower() in SIDECAR_SUFFIXES]
    return sorted(matches)[0] if matches else None


def read_target(raw: RawFile, source: str, max_side: int | None = None) -> Target:
    """The rendering `source` asks for; raises TargetMissing when there is none to use.

    With `max_side` (the long side the pair will be reduced to), a large JPEG may be decoded at
    1/2, 1/4 or 1/8 of its size, never below `_DRAFT_MARGIN` × `max_side`.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown target source {source!r}")
    sidecar = sidecar_for(raw.path) if source in ("auto", "sidecar") else None
    if sidecar is not None:
        image, orientation, size = _decode_jpeg(sidecar.read_bytes(), sidecar.name, max_side)
        return _checked(Target("sidecar", image, orientation, sidecar, size))
    if source == "sidecar":
        raise TargetMissing("has no sidecar JPEG of the same name", "shoot RAW+JPEG, or use --source embedded")
    preview = raw.preview()
    if preview is None:
        raise TargetMissing("has no embedded preview LibRaw can read", "give it a sidecar JPEG of the same name")
    if preview.format == "jpeg":
        assert isinstance(preview.data, bytes)
        image, orientation, size = _decode_jpeg(preview.data, "embedded preview", max_side)
    else:
        bitmap = np.asarray(preview.data)
        if bitmap.ndim != 3 or bitmap.shape[-1] != 3:
            raise TargetMissing(f"has an embedded preview of shape {bitmap.shape}, not RGB", "give it a sidecar JPEG")
        scale = 65535.0 if bitmap.dtype == np.uint16 else 255.0
        image, orientation, size = bitmap.astype(np.float32) / scale, 1, bitmap.shape[:2]
    return _checked(Target("embedded", image, orientation, None, (int(size[0]), int(size[1]))))


def _checked(target: Target) -> Target:
    h, w = target.size
    if min(h, w) < MIN_TARGET_SIDE:
        raise TargetMissing(f"has a {target.kind} rendering of only {w}×{h} px", "give it a larger sidecar JPEG")
    return target


def _decode_jpeg(data: bytes, what: str, max_side: int | None = None) -> tuple[np.ndarray, int, tuple[int, int]]:
    """Pixels as stored (no rotation applied; reduced for `max_side`, see `read_target`), the
    Orientation tag of the JPEG's own EXIF, and the stored (H, W)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            orientation = int(im.getexif().get(_ORIENTATION_TAG, 1) or 1)
            w, h = im.size
            factor = _draft_factor(max(w, h), max_side)
            if factor > 1 and im.format == "JPEG":
                im.draft("RGB", (w // factor, h // factor))
            pixels = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise TargetMissing(f"has an unreadable {what} ({exc})", "give it a sidecar JPEG of the same name") from None
    return pixels.astype(np.float32) / 255.0, orientation if orientation in range(1, 9) else 1, (h, w)


def _draft_factor(long_side: int, max_side: int | None) -> int:
    """The largest of 8, 4, 2 (else 1) a JPEG's decode may be reduced by for `max_side`."""
    if max_side is None:
        return 1
    return next((f for f in (8, 4, 2) if long_side // f >= _DRAFT_MARGIN * max_side), 1)


def to_sensor_orientation(target: Target, flip: int, reference: np.ndarray) -> tuple[np.ndarray, str]:
    """The target turned to the RAW's sensor orientation, and which reading of its tags that took.

    `reference` is the RAW's gray image in sensor orientation (any scale). Readings: as the tag
    says then the RAW's flip undone (a sidecar), as stored (a preview in sensor orientation), and
    as stored then the flip undone (a preview stored upright without a tag).
    """
    stored = target.image
    readings = {
        "tagged": unorient_hwc(exif_orient_hwc(stored, target.orientation), flip),
        "as stored": stored,
        "stored upright": unorient_hwc(stored, flip),
    }
    ref_aspect = reference.shape[1] / reference.shape[0]
    scored = []
    for name, image in readings.items():
        aspect = image.shape[1] / image.shape[0]
        if abs(np.log(aspect / ref_aspect)) > 0.08:  # a 90° turn, not a crop
            continue
        scored.append((_structure_match(image, reference), name))
    if not scored:
        h, w = stored.shape[:2]
        raise TargetMissing(f"has a {target.kind} rendering of {w}×{h} px whose shape matches no orientation of the RAW",
                            "check that the JPEG belongs to this RAW")
    score, name = max(scored)
    return readings[name], name


def _structure_match(image: np.ndarray, reference: np.ndarray) -> float:
    h, w = reference.shape[:2]
    scale = _ORIENTATION_SIZE / max(h, w)
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    ref = cv2.resize(reference.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    gray = cv2.resize(np.ascontiguousarray(image[..., 1], dtype=np.float32), size, interpolation=cv2.INTER_AREA)
    return gradient_ncc(ref, gray)
