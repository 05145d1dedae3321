"""RAW/RGB pairs → a training dataset (see `store` for the format).

For each pair: decode the RAW with the engine (`decode_raw`) and pack it to RGGB phase as exact
integers, read the target (`images`), turn it from display orientation into sensor orientation
(the inverse of the RAW's flip), align it to the RAW, compute its saliency on the target as
stored, warp target and saliency onto the sensor grid together, cut patches, check each one's
alignment (`placement`), and write the pair's shard atomically. A pair whose shard exists is
skipped, so an interrupted build resumes; one that failed leaves an empty shard saying why, and
is not retried. The pairs come from a `PairSource` (`sources`).

Drop reasons are counted for the report: whole pairs (decode failure, alignment failure, poor
global alignment, nothing fits) and single patches (outside the target, poor alignment score,
residual local shift).
Patches without structure to check (sky, walls) are kept when the pair aligned well: there is
nothing in them a small misalignment could spoil. They are counted as ``unverified``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.io.raw_file import BayerFrame, decode_raw
from raw2rgb_plugin.pipeline.orientation import unorient_hwc
from raw2rgb_plugin.pipeline.packing import PhasePadding
from raw2rgb_plugin.training.data.align import AlignmentFailed, PatchScorer, packed_gray
from raw2rgb_plugin.training.data.images import load_rgb
from raw2rgb_plugin.training.data.manifest import check_build_options, finish_dataset
from raw2rgb_plugin.training.data.options import BuildOptions, ProgressCallback
from raw2rgb_plugin.training.data.placement import (
    Placed,
    choose_patches,
    cut_patches,
    packed_uint16,
    patch_positions,
    place_target,
    score_placement,
)
from raw2rgb_plugin.training.data.preview import preview_images, write_preview
from raw2rgb_plugin.training.data.sources import ListedPairs, Pair, PairSource
from raw2rgb_plugin.training.data.store import (
    MARGIN,
    DatasetError,
    ShardLevels,
    read_shard_info,
    write_shard,
)
from raw2rgb_plugin.training.saliency import SaliencySource, saliency_source


@dataclass
class PairResult:
    name: str
    info: dict  # shard.json
    preview: dict | None = None  # images for the side-by-side preview
    arrays: dict[str, np.ndarray] | None = None  # the shard's patches; None for a dropped pair


class _Dropped(Exception):
    """A pair that gives no patch: why, and the preview that shows it (if one is wanted)."""

    def __init__(self, reason: str, detail: str, preview: dict | None = None):
        super().__init__(reason)
        self.reason, self.detail, self.preview = reason, detail, preview


@dataclass
class _Sensor:
    """The RAW as the shard stores it (exact packed integers) and as alignment sees it."""

    frame: BayerFrame
    packed: np.ndarray  # (4, h, w) uint16, padded to RGGB phase
    black: np.ndarray  # per packed channel
    padding: PhasePadding
    levels: ShardLevels
    levelled: torch.Tensor  # black/white-normalised packed RAW
    reference: np.ndarray  # (h, w) gray that the target is aligned to


# ---------------------------------------------------------------------------------- one pair


def process_pair(pair: Pair, options: BuildOptions, saliency: SaliencySource, want_preview: bool) -> PairResult:
    """Everything for one pair except writing; a dropped pair's info says why."""
    info: dict = {"name": pair.shard_name, "scene": pair.scene, "raw": str(pair.raw.resolve()), "rgb": str(pair.rgb.resolve()),
                  "count": 0, "dropped": {}, **pair.extra}
    try:
        arrays, preview = _cut_pair(pair, options, saliency, want_preview, info)
    except _Dropped as drop:
        return PairResult(pair.shard_name, {**info, "status": "dropped", "reason": drop.reason, "detail": drop.detail},
                          drop.preview)
    info["status"] = "kept"
    return PairResult(pair.shard_name, info, preview, arrays)


def _cut_pair(pair: Pair, options: BuildOptions, saliency: SaliencySource, want_preview: bool,
              info: dict) -> tuple[dict, dict | None]:
    """The shard's arrays and preview; fills `info` as it goes and raises _Dropped."""
    t0 = time.perf_counter()
    frame, target, bits = _read_pair(pair)
    sensor = _read_sensor(frame)
    info.update(_sensor_info(pair.raw, sensor, target, bits))
    placed = _place(pair, sensor, target, saliency, options.align)
    warped_gray, valid = score_placement(placed, sensor.reference, frame.camera_to_srgb)
    alignment = placed.alignment
    info["alignment"] = alignment.to_dict()

    def preview(boxes: list) -> dict | None:
        return preview_images(sensor.levels, sensor.levelled, placed.target, boxes, alignment.score) if want_preview else None

    checked = options.align != "none"
    if checked and alignment.score < options.min_pair_score:
        raise _Dropped("poor global alignment", f"gradient correlation {alignment.score:.3f} < {options.min_pair_score}",
                       preview([]))
    h, w = sensor.packed.shape[-2:]
    rng = np.random.default_rng(_pair_seed(options.seed, pair))
    positions = patch_positions(h, w, options.patch_size, options.stride, options.patches_per_pair, rng)
    if not positions:
        n = options.patch_size + MARGIN
        raise _Dropped("frame smaller than a patch", f"packed frame {w}×{h} < patch {n}×{n}")
    choice = choose_patches(positions, options.patch_size, sensor.padding, PatchScorer(sensor.reference, warped_gray), valid,
                            checked=checked, min_score=options.min_patch_score, max_shift=options.max_patch_shift)
    unverified = sum(1 for p in choice.patches if not p["verified"])
    info.update(count=len(choice.kept), dropped=dict(choice.dropped), unverified=unverified, patches=choice.patches,
                seconds=round(time.perf_counter() - t0, 2))
    if not choice.kept:
        raise _Dropped("no patch passed", ", ".join(f"{v} {k}" for k, v in choice.dropped.items()), preview(choice.boxes))
    return cut_patches(sensor.packed, placed, choice.kept, options.patch_size, bits), preview(choice.boxes)


def _read_pair(pair: Pair) -> tuple[BayerFrame, np.ndarray, int]:
    try:
        frame = decode_raw(pair.raw)
    except Raw2RgbError as exc:
        raise _Dropped("RAW not decodable", str(exc)) from None
    try:
        target, bits = load_rgb(pair.rgb)
    except Raw2RgbError as exc:
        raise _Dropped("target not readable", str(exc)) from None
    return frame, target, bits


def _read_sensor(frame: BayerFrame) -> _Sensor:
    packed, black, padding = packed_uint16(frame)
    levels = ShardLevels(torch.from_numpy(black).view(4, 1, 1), float(frame.white_level), frame.wb_gains_rgb,
                         frame.camera_to_srgb)
    levelled = levels.normalise(torch.from_numpy(packed.astype(np.int32)), "raw")
    return _Sensor(frame, packed, black, padding, levels, levelled, packed_gray(levelled))


def _sensor_info(raw: Path, sensor: _Sensor, target: np.ndarray, bits: int) -> dict:
    """The shard.json fields the reader needs to normalise the RAW, and the pair's provenance."""
    frame, padding = sensor.frame, sensor.padding
    return {
        "camera": _camera_name(raw),
        "cfa_pattern": frame.cfa_pattern,
        "flip": frame.flip,
        "sensor_size": [frame.height, frame.width],
        "padding": [padding.top, padding.left, padding.bottom, padding.right],
        "target_size": list(target.shape[:2]),
        "rgb_dtype": "uint8" if bits == 8 else "uint16",
        "levels": {
            "black_per_channel": sensor.black.tolist(),
            "white_level": float(frame.white_level),
            "wb_gains_rgb": [float(v) for v in frame.wb_gains_rgb],
            "wb_source": frame.wb_source,
            "camera_to_srgb": [[float(v) for v in row] for row in frame.camera_to_srgb],
            "matrix_source": frame.matrix_source,
        },
    }


def _place(pair: Pair, sensor: _Sensor, target: np.ndarray, saliency: SaliencySource, mode: str) -> Placed:
    """Saliency on the target as the user sees it, then both in sensor orientation onto the grid."""
    try:
        saliency_map = saliency.map_for(target, pair.rgb)
    except Raw2RgbError as exc:
        raise _Dropped("no saliency map", str(exc)) from None
    frame = sensor.frame
    h, w = sensor.packed.shape[-2:]
    try:
        return place_target(frame, sensor.padding, (2 * h, 2 * w), unorient_hwc(target, frame.flip),
                            unorient_hwc(saliency_map, frame.flip), sensor.reference, mode)
    except AlignmentFailed as exc:
        raise _Dropped("alignment failed" if mode != "none" else "size mismatch", exc.reason) from None


def _pair_seed(seed: int, pair: Pair) -> int:
    # From the pair's name, not its position: patch positions survive a resume or a new order.
    return int.from_bytes(hashlib.sha256(f"{seed}|{pair.shard_name}".encode()).digest()[:8], "little")


def _camera_name(path: Path) -> str | None:
    try:
        import exifread

        with open(path, "rb") as f:
            tags = exifread.process_file(f, details=False, stop_tag="Model")
        make = str(tags.get("Image Make", "")).strip()
        model = str(tags.get("Image Model", "")).strip()
    except Exception:  # EXIF is provenance only; unreadable EXIF must not drop a pair
        return None
    name = f"{make} {model}".strip() if not model.startswith(make) else model
    return name or None


# --------------------------------------------------------------------------------- whole build


def build_dataset(
    pairs: PairSource | Sequence[Pair],
    out: Path,
    options: BuildOptions,
    *,
    progress: ProgressCallback | None = None,
    unmatched: dict | None = None,
    saliency: SaliencySource | None = None,
) -> dict:
    """Turn the pairs into the dataset at `out` (resuming one that exists); returns the report.

    `pairs` is a `PairSource`, or a list of pairs already on disk; for a list, `unmatched` says
    what could not be paired (for the report).
    """
    source = ListedPairs(pairs, unmatched) if isinstance(pairs, Sequence) else pairs
    options.check()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out} exists and is not a folder", "choose another output folder")
    listed = source.pairs()
    names = [p.shard_name for p in listed]
    if len(set(names)) != len(names):
        raise DatasetError("the same RAW/RGB pair is listed twice", "remove the duplicate row")
    saliency = saliency or saliency_source(options.saliency, trust_torchscript=options.trust_torchscript)
    check_build_options(out, options.content_key(saliency.describe()))
    emit = progress or (lambda event, data: None)
    emit("start", {"pairs": len(listed)})

    results = _resumed(out, listed, emit)
    todo = [pair for pair in listed if pair.shard_name not in results]
    previews_dir = out / "previews"
    budget = max(0, options.previews - len(list(previews_dir.glob("*.png")) if previews_dir.is_dir() else []))

    def run(item: tuple[Pair, bool]) -> PairResult:
        return _process_safely(source, item[0], options, saliency, item[1])

    def store(result: PairResult) -> None:
        results[result.name] = _store(out, previews_dir, result)
        emit("pair", {"name": Path(result.info["raw"]).name, "status": result.info["status"], "count": result.info["count"],
                      "reason": result.info.get("reason"), "resumed": False})

    _run_pool([(pair, i < budget) for i, pair in enumerate(todo)], run, store, options.jobs)
    report = finish_dataset(out, [results[n] for n in names], options, saliency.describe(), source.unmatched())
    emit("done", report)
    return report


def _resumed(out: Path, pairs: list[Pair], emit: ProgressCallback) -> dict[str, dict]:
    """The infos of the pairs a previous run finished, by shard name."""
    results: dict[str, dict] = {}
    for pair in pairs:
        done = read_shard_info(out, pair.shard_name)
        if done is not None:
            results[pair.shard_name] = {**done, "resumed": True}
            emit("pair", {"name": pair.raw.name, "status": done.get("status"), "count": done.get("count", 0), "resumed": True})
    return results


def _process_safely(source: PairSource, pair: Pair, options: BuildOptions, saliency: SaliencySource,
                    want_preview: bool) -> PairResult:
    """`process_pair` after the source's preparation; an error drops the pair, not the build."""
    cleanup = None
    try:
        pair, cleanup = source.prepare(pair)
        return process_pair(pair, options, saliency, want_preview)
    except (MemoryError, OSError, cv2.error, ValueError, RuntimeError) as exc:
        return PairResult(pair.shard_name, {"name": pair.shard_name, "scene": pair.scene,
                                            "raw": str(pair.raw), "rgb": str(pair.rgb),
                                            "count": 0, "status": "dropped", "reason": "processing error",
                                            "detail": f"{type(exc).__name__}: {exc}"})
    finally:
        if cleanup is not None:
            cleanup()


def _store(out: Path, previews_dir: Path, result: PairResult) -> dict:
    """Write the pair's preview and shard; returns its info as the manifest will list it."""
    if result.preview is not None:
        preview_path = previews_dir / f"{result.name}.png"
        write_preview(preview_path, result.preview)
        result.info["preview"] = str(preview_path.relative_to(out))
    write_shard(out, result.name, result.arrays, result.info)
    return result.info


def _run_pool(items: list, run: Callable, store: Callable, jobs: int) -> None:
    """`run` each item on `jobs` threads and `store` the results on this one, as they finish."""
    # At most two items per worker in flight: finished pairs hold full-frame arrays until stored.
    queue = items[::-1]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        running = {pool.submit(run, queue.pop()) for _ in range(min(len(queue), 2 * jobs))}
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                store(future.result())
                if queue:
                    running.add(pool.submit(run, queue.pop()))
