"""One RAW and its camera rendering → a training pair on the rendering's own pixel grid.

Embedded previews are often a fraction of the sensor's size, and a JPEG is the camera's look at
that size. So the pair lives at the target's scale (capped at `max_side`): the RAW is decoded by
the engine, levelled, demosaicked (Malvar–He–Cutler, white-balanced while it interpolates) or —
when the target is at most half the sensor's size — taken as its packed 2×2 cells, and resampled
with area averaging onto the target's grid through the alignment. The JPEG itself is never
resampled beyond the cap: its pixels are what the camera made. At training time the linear image
is mosaicked again (`patches`), a smaller, cleaner RAW of the same scene, which G1 takes like
any other; the look transfers because it is colour and tone.

Why not upsample the target to the sensor grid instead (`placement.place_target`): a 2/3-size
preview upsampled to the sensor is blurrier than what G1 renders, and the fine-tune would learn
that blur. The RAW, resampled down, loses nothing the target has.

Alignment (`align.estimate_alignment`, mode `crop`: SIFT similarity refined by ECC) absorbs the
few pixels cameras crop from JPEGs; where it fails (tiny previews) or scores worse than plainly
stretching the target over the frame, the stretch is kept. Pairs are stored in `RUN/pairs/`
(one atomic `.npz` each), so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.io.files import atomic_output
from raw2rgb_plugin.io.noise_profile import noise_model_for
from raw2rgb_plugin.io.raw_file import RawFile
from raw2rgb_plugin.pipeline.hot_pixels import StuckSites
from raw2rgb_plugin.pipeline.mhc import demosaic
from raw2rgb_plugin.pipeline.normalization import network_input
from raw2rgb_plugin.training.data.align import (
    PACKED_TO_FULL,
    AlignmentFailed,
    estimate_alignment,
    gradient_ncc,
    packed_gray,
    resampling,
    target_gray,
    warp_to_grid,
)
from raw2rgb_plugin.training.learn.options import DEFAULT_MAX_SIDE
from raw2rgb_plugin.training.learn.targets import MIN_TARGET_SIDE, TargetMissing, read_target, to_sensor_orientation

PAIRS_DIR = "pairs"
#: gradient correlation below which the target is not this RAW's rendering (or not alignable)
MIN_ALIGNMENT_SCORE = 0.3
#: long side at which the alignment looks for feature matches (ECC refines at the pair's size)
FEATURE_SIZE = 512
#: R, Gr, Gb, B sites' offsets from their packed pixel's centre, in packed pixels (x, y)
_SITE_OFFSETS = ((-0.25, -0.25), (0.25, -0.25), (-0.25, 0.25), (0.25, 0.25))


class PairSkipped(Raw2RgbError):
    """A RAW that gives no pair (no rendering, unreadable, not alignable): reported, not fatal."""


@dataclass
class LearnPair:
    """A RAW resampled onto its target's grid: what training, the LUT and the report read."""

    name: str
    linear: np.ndarray  # (H, W, 3) float32: levelled camera RGB, not white-balanced
    target: np.ndarray  # (H, W, 3) float32 sRGB in [0, 1], the camera's rendering
    info: dict  # wb_gains_rgb, camera_to_srgb, noise (shot, read at this scale), provenance

    @property
    def wb_gains_rgb(self) -> np.ndarray:
        return np.asarray(self.info["wb_gains_rgb"], dtype=np.float32)

    @property
    def camera_to_srgb(self) -> np.ndarray:
        return np.asarray(self.info["camera_to_srgb"], dtype=np.float32)


def pair_name(raw: Path) -> str:
    """Stable per RAW path (how a resumed run finds its pair), readable, unique."""
    digest = hashlib.sha1(str(Path(raw).resolve()).encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', Path(raw).stem)[:60]}-{digest}"


# ------------------------------------------------------------------------------------ building


def build_pair(raw_path: Path, source: str, max_side: int = DEFAULT_MAX_SIDE) -> LearnPair:
    """The pair of one RAW; raises PairSkipped with the reason when it gives none."""
    t0 = time.perf_counter()
    try:
        with RawFile(raw_path) as raw:
            frame, metadata = raw.frame, raw.metadata
            target = read_target(raw, source, max_side)
            noise = noise_model_for(frame, metadata, raw.libraw)
    except Raw2RgbError as exc:  # TargetMissing, RawDecodeError, UnsupportedRawError
        raise PairSkipped(exc.problem, exc.hint) from None
    # (4, h, w): levels, stuck sites replaced as convert replaces them, padded to RGGB phase
    levelled = network_input(frame, "raw", stuck_sites=StuckSites(noise)).packed[0]
    gray = packed_gray(levelled)
    try:
        image, orientation = to_sensor_orientation(target, frame.flip, gray)
    except TargetMissing as exc:
        raise PairSkipped(exc.problem, exc.hint) from None
    image = _capped(image, max_side)
    matrix, method, score = _align(gray, image, frame.camera_to_srgb)
    if score < MIN_ALIGNMENT_SCORE:
        raise PairSkipped(f"its {target.kind} rendering does not line up with the RAW (gradient correlation {score:.2f})",
                          "check that the JPEG belongs to this RAW")
    scale = 1.0 / float(np.sqrt(abs(np.linalg.det(matrix[:2, :2]))))  # target px per sensor px
    linear, valid = _resampled(levelled, frame.wb_gains_rgb, matrix, image.shape[:2], scale)
    box = _valid_box(valid)
    if box is None:
        raise PairSkipped("the RAW covers too little of its rendering", "check that the JPEG belongs to this RAW")
    y0, y1, x0, x1 = box
    # Noise averages down with the area: a colour site at scale s gathers about 1/(4 s²) samples.
    shrink = min(1.0, 4.0 * scale * scale)
    name = pair_name(raw_path)
    info: dict = {
        "name": name, "raw": str(Path(raw_path).resolve()), "kind": target.kind,
        "sidecar": str(target.path) if target.path else None,
        "camera": _camera(metadata.make, metadata.model),
        "make": metadata.make, "model": metadata.model,
        "sensor_size": [frame.height, frame.width], "target_size": list(target.size),
        "pair_size": [y1 - y0, x1 - x0], "scale": round(scale, 5), "orientation": orientation,
        "alignment": {"method": method, "score": round(score, 4)},
        "wb_gains_rgb": [float(v) for v in frame.wb_gains_rgb],
        "camera_to_srgb": [[float(v) for v in row] for row in frame.camera_to_srgb],
        "noise": {"shot": float(noise.shot) * shrink, "read": float(noise.read) * shrink, "source": noise.source},
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return LearnPair(name, linear[y0:y1, x0:x1], np.ascontiguousarray(image[y0:y1, x0:x1]), info)


def _camera(make: str | None, model: str | None) -> str | None:
    """"Canon EOS D30", not "Canon Canon EOS D30": many models repeat the make."""
    if make and model and model.lower().startswith(make.lower().split()[0]):
        return model
    return " ".join(v for v in (make, model) if v) or None


def _capped(image: np.ndarray, max_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return np.ascontiguousarray(image, dtype=np.float32)
    scale = max_side / max(h, w)
    return cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


def _align(gray: np.ndarray, image: np.ndarray, camera_to_srgb: np.ndarray) -> tuple[np.ndarray, str, float]:
    """target px → padded full-resolution sensor grid, how it was found, and its score."""
    moving = target_gray(image, camera_to_srgb)
    h, w = gray.shape
    # The reference at about the target's size: the estimate's fine pass then stays cheap.
    r = min(1.0, max(moving.shape) / max(h, w))
    ref = cv2.resize(gray, (max(1, round(w * r)), max(1, round(h * r))), interpolation=cv2.INTER_AREA) if r < 1 else gray
    candidates = {"stretched to fit": resampling(moving.shape, ref.shape)}
    try:
        found = estimate_alignment(ref, moving, "crop", feature_size=FEATURE_SIZE)
        candidates[found.method] = np.linalg.inv(PACKED_TO_FULL) @ found.matrix
    except (AlignmentFailed, cv2.error):
        pass
    scored = [(_score(ref, moving, m), name) for name, m in candidates.items()]
    score, method = max(scored)
    to_packed = np.linalg.inv(resampling(gray.shape, ref.shape))
    return PACKED_TO_FULL @ to_packed @ candidates[method], method, score


def _score(ref: np.ndarray, moving: np.ndarray, target_to_ref: np.ndarray) -> float:
    warped, valid = warp_to_grid(ref, np.linalg.inv(target_to_ref), moving.shape[:2])
    inside = cv2.erode((valid > 0.999).astype(np.uint8), np.ones((5, 5), np.uint8))
    return gradient_ncc(warped, moving, inside) if inside.sum() > 64 else 0.0


def _resampled(levelled: torch.Tensor, wb_gains: np.ndarray, target_to_full: np.ndarray, size: tuple[int, int],
               scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Levelled camera RGB on the target's grid (area-averaged), and where the RAW covers it."""
    if scale <= 0.5:
        # Each packed channel is a sensor sample grid of its own, a quarter pixel off the cell's
        # centre: warped with its own offset so colour edges stay registered.
        channels = []
        for k, (dx, dy) in enumerate(_SITE_OFFSETS):
            site_to_full = PACKED_TO_FULL @ np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], dtype=np.float64)
            warped, valid = warp_to_grid(levelled[k].numpy(), np.linalg.inv(target_to_full) @ site_to_full, size)
            channels.append(warped)
        linear = np.stack([channels[0], 0.5 * (channels[1] + channels[2]), channels[3]], axis=-1)
        return linear.astype(np.float32), valid
    gains = torch.tensor([float(wb_gains[0]), float(wb_gains[1]), float(wb_gains[1]), float(wb_gains[2])]).view(4, 1, 1)
    full = demosaic((levelled * gains)[None])[0] / torch.as_tensor(np.asarray(wb_gains, dtype=np.float32)).view(3, 1, 1)
    full_hwc = np.ascontiguousarray(full.clamp_(0, 1).permute(1, 2, 0).numpy())
    linear, valid = warp_to_grid(full_hwc, np.linalg.inv(target_to_full), size)
    return linear.astype(np.float32), valid


def _valid_box(valid: np.ndarray) -> tuple[int, int, int, int] | None:
    """The largest even-sized box (y0, y1, x0, x1) the RAW fully covers, shrunk from the edges."""
    ok = valid > 0.999
    y0, y1, x0, x1 = 0, ok.shape[0], 0, ok.shape[1]
    while y1 - y0 >= MIN_TARGET_SIDE and x1 - x0 >= MIN_TARGET_SIDE:
        box = ok[y0:y1, x0:x1]
        if box.all():
            return y0, y0 + (y1 - y0) // 2 * 2, x0, x0 + (x1 - x0) // 2 * 2
        # Peel the edge row or column with the most uncovered pixels.
        edges = {"top": (~box[0]).sum(), "bottom": (~box[-1]).sum(), "left": (~box[:, 0]).sum(), "right": (~box[:, -1]).sum()}
        worst = max(edges, key=lambda k: edges[k])
        y0, y1 = y0 + (worst == "top"), y1 - (worst == "bottom")
        x0, x1 = x0 + (worst == "left"), x1 - (worst == "right")
    return None


# ------------------------------------------------------------------------------------- storage


def save_pair(run_dir: Path, pair: LearnPair) -> LearnPair:
    """Write the pair atomically as RUN/pairs/<name>.npz (float16 images + its info as JSON) and
    return it as stored: `widened` of it is exactly what `load_pair` will read back.

    A fresh run trains on that stored pair, not on the float32 one it just built: a resumed run
    can only load the rounded one, and the two trained on different data (weights differed after
    12 steps).
    """
    folder = Path(run_dir) / PAIRS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stored = LearnPair(pair.name, pair.linear.astype(np.float16), pair.target.astype(np.float16), pair.info)
    with atomic_output(folder / f"{pair.name}.npz", overwrite=True) as out:
        np.savez(out, linear=stored.linear, target=stored.target, info=np.array(json.dumps(pair.info)))
    return stored


def widened(pair: LearnPair) -> LearnPair:
    """A stored (float16) pair as everything downstream reads it: float32, exactly."""
    return LearnPair(pair.name, pair.linear.astype(np.float32), pair.target.astype(np.float32), pair.info)


def load_pair(run_dir: Path, name: str, *, stored: bool = False) -> LearnPair | None:
    """A stored pair (float32, or as stored with `stored`), or None when it was never finished
    (or is unreadable: it is rebuilt)."""
    path = Path(run_dir) / PAIRS_DIR / f"{name}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            pair = LearnPair(name, data["linear"], data["target"], json.loads(str(data["info"])))
    except (OSError, ValueError, KeyError):
        return None
    return pair if stored else widened(pair)
