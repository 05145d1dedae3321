"""RAW/RGB pairs → a training dataset (see `dataset_store` for the format).

For each pair: decode the RAW with the engine (`decode_raw`) and pack it to RGGB phase as exact
integers (`packing`; the reader normalises them with the engine's own code), read the target,
turn it from display orientation into sensor orientation (the inverse of the RAW's flip), align
it to the RAW (`align`), compute its saliency on the target as stored, warp target and saliency
onto the sensor grid together, cut patches, check each one's alignment, and write the pair's
shard atomically. A pair whose shard exists is skipped, so an interrupted build resumes; one that
failed leaves an empty shard saying why, and is not retried.

Drop reasons are counted for the report: whole pairs (decode failure, alignment failure, poor
global alignment, nothing fits) and single patches (outside the target, poor alignment score,
residual local shift).
Patches without structure to check (sky, walls) are kept when the pair aligned well: there is
nothing in them a small misalignment could spoil. They are counted as ``unverified``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from raw2rgb_plugin.training.data.align import (
    ALIGN_MODES,
    TEXTURE_THRESHOLD,
    Alignment,
    AlignmentFailed,
    PatchScorer,
    estimate_alignment,
    gradient_ncc,
    packed_gray,
    packed_rgb_preview,
    pad_to_grid,
    target_gray,
    warp_to_grid,
)
from raw2rgb_plugin.training.data.store import (
    BUILD_OPTIONS,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    MARGIN,
    DatasetError,
    ShardLevels,
    assign_splits,
    atomic_write_json,
    read_shard_info,
    write_shard,
)
from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.pipeline.normalization import INPUT_NORMALIZATIONS, apply_color_normalization
from raw2rgb_plugin.pipeline.orientation import exif_orient_hwc, unorient_hwc
from raw2rgb_plugin.pipeline.packing import PhasePadding, pack_rggb, pad_mosaic, rggb_padding
from raw2rgb_plugin.engine.plan import RAW_EXTENSIONS
from raw2rgb_plugin.io.raw_file import BayerFrame, decode_raw
from raw2rgb_plugin.training.saliency import SaliencySource, saliency_source

RGB_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"})
#: G1 has three stride-2 stages: packed patches must be a multiple of 8.
PATCH_MULTIPLE = 8
PREVIEW_WIDTH = 1800


@dataclass(frozen=True)
class Pair:
    raw: Path
    rgb: Path
    scene: str
    #: extra provenance stored with the shard (e.g. the unprocessing parameters).
    extra: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def shard_name(self) -> str:
        digest = hashlib.sha1(f"{self.raw.resolve()}|{self.rgb.resolve()}".encode()).hexdigest()[:10]
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", self.raw.stem)[:60]
        return f"{safe}-{digest}"


@dataclass
class BuildOptions:
    patch_size: int = 224  # packed pixels (the seed's 224 ↔ 448 sensor pixels)
    stride: int | None = None  # packed; default = patch_size (no overlap)
    patches_per_pair: int | None = None  # random positions instead of a grid (synthetic data)
    input_normalization: str = "linear-srgb"
    val_fraction: float = 0.1
    align: str = "auto"
    saliency: str = "builtin"
    trust_torchscript: bool = False
    min_pair_score: float = 0.3
    min_patch_score: float = 0.5
    max_patch_shift: float = 2.0  # sensor pixels of residual displacement a patch may keep
    previews: int = 4
    jobs: int = 1
    seed: int = 0
    kind: str = "pairs"

    def check(self) -> None:
        if self.patch_size < PATCH_MULTIPLE or self.patch_size % PATCH_MULTIPLE:
            raise DatasetError(f"patch size {self.patch_size} is not a multiple of {PATCH_MULTIPLE}",
                               "G1 halves the packed size three times: use e.g. 128 or 224")
        if self.stride is not None and self.stride < 1:
            raise DatasetError(f"stride {self.stride} must be positive", "use the patch size (no overlap)")
        if self.input_normalization not in INPUT_NORMALIZATIONS:
            raise DatasetError(f"unknown input normalisation {self.input_normalization!r}",
                               f"use one of {', '.join(INPUT_NORMALIZATIONS)}")
        if self.align not in ALIGN_MODES:
            raise DatasetError(f"unknown alignment mode {self.align!r}", f"use one of {', '.join(ALIGN_MODES)}")
        if not 0 <= self.val_fraction < 1:
            raise DatasetError(f"validation fraction {self.val_fraction} is outside [0, 1)", "use e.g. 0.1")
        if self.jobs < 1:
            raise DatasetError(f"--jobs {self.jobs} must be at least 1", "use 1 or the number of cores")

    def content_key(self, saliency: dict) -> dict:
        """Options that decide what the shards hold: a resumed build must use the same."""
        return {
            "kind": self.kind,
            "patch_size": self.patch_size,
            "margin": MARGIN,
            "stride": self.stride or self.patch_size,
            "patches_per_pair": self.patches_per_pair,
            "align": self.align,
            "min_pair_score": self.min_pair_score,
            "min_patch_score": self.min_patch_score,
            "max_patch_shift": self.max_patch_shift,
            "saliency": saliency,
            "seed": self.seed,
        }


ProgressCallback = Callable[[str, dict], None]
PreparePair = Callable[["Pair"], "tuple[Pair, Callable[[], None] | None]"]


# --------------------------------------------------------------------------------- discovery


def find_pairs(raw_dir: Path, rgb_dir: Path, manifest_csv: Path | None = None) -> tuple[list[Pair], dict]:
    """Pairs by file stem (case-insensitive), or from a CSV with columns raw, rgb[, scene].

    Returns the pairs and what could not be paired (for the report).
    """
    raw_dir, rgb_dir = Path(raw_dir), Path(rgb_dir)
    for folder, what in ((raw_dir, "RAW"), (rgb_dir, "RGB")):
        if not folder.is_dir():
            raise DatasetError(f"{what} folder {folder} does not exist", "check the path")
    if manifest_csv is not None:
        return _pairs_from_csv(Path(manifest_csv), raw_dir, rgb_dir), {}

    def by_stem(folder: Path, suffixes: frozenset[str], what: str) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for p in sorted(folder.iterdir()):
            if p.is_file() and p.suffix.lower() in suffixes:
                key = p.stem.lower()
                if key in found:
                    raise DatasetError(f"{what} files {found[key].name} and {p.name} share the stem {p.stem!r}",
                                       "rename one, or pair them with --manifest CSV")
                found[key] = p
        return found

    raws = by_stem(raw_dir, RAW_EXTENSIONS, "RAW")
    rgbs = by_stem(rgb_dir, RGB_EXTENSIONS, "RGB")
    pairs = [Pair(raws[k], rgbs[k], raws[k].stem) for k in sorted(raws) if k in rgbs]
    unmatched = {
        "raw_without_rgb": sorted(raws[k].name for k in raws if k not in rgbs),
        "rgb_without_raw": sorted(rgbs[k].name for k in rgbs if k not in raws),
    }
    if not pairs:
        raise DatasetError(f"no RAW in {raw_dir} has an RGB image of the same name in {rgb_dir}",
                           "name each pair alike (IMG_1.CR2 ↔ IMG_1.jpg) or pass --manifest CSV")
    return pairs, unmatched


def _pairs_from_csv(path: Path, raw_dir: Path, rgb_dir: Path) -> list[Pair]:
    if not path.is_file():
        raise DatasetError(f"pair manifest {path} does not exist", "check the path")
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"raw", "rgb"} <= set(rows[0]):
        raise DatasetError(f"{path} needs a header with columns raw,rgb (and optionally scene)", "fix the CSV header")
    pairs = []
    for line, row in enumerate(rows, start=2):
        raw = Path(row["raw"]).expanduser()
        rgb = Path(row["rgb"]).expanduser()
        raw = raw if raw.is_absolute() else raw_dir / raw
        rgb = rgb if rgb.is_absolute() else rgb_dir / rgb
        for p in (raw, rgb):
            if not p.is_file():
                raise DatasetError(f"{path}:{line}: {p} does not exist", "fix the path in the CSV")
        scene = (row.get("scene") or "").strip() or raw.stem
        pairs.append(Pair(raw, rgb, scene))
    return pairs


# ---------------------------------------------------------------------------------- one pair


def load_rgb(path: Path) -> tuple[np.ndarray, int]:
    """An RGB target in display orientation → (H, W, 3) float32 in [0, 1] and its bit depth.

    16-bit PNG and TIFF keep their 16 bits (OpenCV and tifffile; PIL would drop a 48-bit PNG to
    8 bits); the EXIF Orientation is applied as a viewer would.
    """
    suffix = path.suffix.lower()
    image = None
    if suffix in (".tif", ".tiff"):
        import tifffile

        try:
            image = tifffile.imread(path, key=0)
        except (OSError, ValueError, tifffile.TiffFileError) as exc:
            raise Raw2RgbError(f"cannot read {path.name} ({exc})", "save the target as an 8- or 16-bit RGB TIFF") from None
        if image.ndim == 3 and image.shape[0] in (3, 4) and image.shape[-1] not in (3, 4):
            image = np.moveaxis(image, 0, -1)  # planar configuration
    elif suffix == ".png":
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is not None and image.ndim == 3:
            image = cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB)
    if image is not None:
        if image.dtype not in (np.uint8, np.uint16) or image.ndim not in (2, 3):
            raise Raw2RgbError(f"{path.name} holds {image.dtype} samples of shape {image.shape}", "save the target as 8- or 16-bit sRGB")
        image = np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image[..., :3]
        bits = 16 if image.dtype == np.uint16 else 8
        return exif_orient_hwc(image, _exif_orientation(path)).astype(np.float32) / (65535.0 if bits == 16 else 255.0), bits
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            image = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise Raw2RgbError(f"cannot read {path.name} ({exc})", "use PNG, JPEG or TIFF") from None
    return image.astype(np.float32) / 255.0, 8


def _exif_orientation(path: Path) -> int:
    """The EXIF Orientation of a PNG or TIFF, read from its headers without decoding pixels."""
    try:
        if path.suffix.lower() == ".png":
            with open(path, "rb") as f:
                f.seek(8)  # PNG signature
                while header := f.read(8):
                    length, kind = int.from_bytes(header[:4], "big"), header[4:]
                    if kind == b"eXIf":
                        from PIL import Image

                        exif = Image.Exif()
                        exif.load(f.read(length))
                        return int(exif.get(274, 1))
                    if kind == b"IEND" or len(header) < 8:
                        return 1
                    f.seek(length + 4, 1)  # data and CRC
            return 1
        import tifffile

        with tifffile.TiffFile(path) as tif:
            tag = tif.pages[0].tags.get(274)
            return int(tag.value) if tag is not None else 1
    except Exception:  # a damaged header = no orientation; the pixels were readable
        return 1


def packed_uint16(frame: BayerFrame) -> tuple[np.ndarray, np.ndarray, PhasePadding]:
    """The mosaic padded to RGGB phase and packed, as exact integers; black per packed channel."""
    padding = rggb_padding(frame.cfa_pattern, frame.height, frame.width)
    mosaic = torch.from_numpy(frame.mosaic.astype(np.float32))  # uint16 values are exact in float32
    packed = pack_rggb(pad_mosaic(mosaic, padding)).round_().to(torch.int32).numpy().astype(np.uint16)
    # Padded site (i, j) holds a sample of the visible site (i − top, j − left), modulo 2.
    black = [float(frame.black_level_per_site[(i - padding.top) % 2, (j - padding.left) % 2]) for i, j in ((0, 0), (0, 1), (1, 0), (1, 1))]
    return packed, np.asarray(black, dtype=np.float32), padding


@dataclass
class PairResult:
    name: str
    info: dict
    preview: dict | None = None  # images for the side-by-side preview


def _patch_positions(h: int, w: int, options: BuildOptions, rng: np.random.Generator) -> list[tuple[int, int]]:
    n = options.patch_size + MARGIN
    if h < n or w < n:
        return []
    if options.patches_per_pair:
        ys = rng.integers(0, h - n + 1, size=options.patches_per_pair)
        xs = rng.integers(0, w - n + 1, size=options.patches_per_pair)
        return [(int(y), int(x)) for y, x in zip(ys, xs)]
    stride = options.stride or options.patch_size
    rows = list(range(0, h - n + 1, stride))
    cols = list(range(0, w - n + 1, stride))
    # Centre the grid: the frame's edges are where lens falloff and misalignment are worst.
    oy, ox = (h - (rows[-1] + n)) // 2, (w - (cols[-1] + n)) // 2
    return [(y + oy, x + ox) for y in rows for x in cols]


@dataclass
class _Placed:
    """The target and its saliency on the padded sensor grid, and where the target covers it."""

    target: np.ndarray  # (2h, 2w, 3) float32
    saliency: np.ndarray  # (2h, 2w) float32
    valid: np.ndarray  # (2h, 2w) float32, 1 where the target covers the grid
    alignment: Alignment


def _place_target(frame: BayerFrame, padding: PhasePadding, grid: tuple[int, int], target: np.ndarray,
                  saliency: np.ndarray, reference: np.ndarray, mode: str) -> _Placed:
    """Bring a sensor-oriented target (and its saliency) onto the grid; raises AlignmentFailed."""
    if mode == "none":
        if target.shape[:2] != (frame.height, frame.width):
            raise AlignmentFailed(f"target {target.shape[1]}×{target.shape[0]} is not the sensor's {frame.width}×{frame.height} "
                                  "(use --align auto)")
        pads = (padding.top, padding.left, padding.bottom, padding.right)
        shift = np.array([[1, 0, padding.left], [0, 1, padding.top], [0, 0, 1]], dtype=np.float64)
        return _Placed(pad_to_grid(target, *pads), pad_to_grid(saliency, *pads), np.ones(grid, np.float32), Alignment(shift, "none"))
    alignment = estimate_alignment(reference, target_gray(target, frame.camera_to_srgb), mode)
    warped, valid = warp_to_grid(target, alignment.matrix, grid)
    warped_saliency, _ = warp_to_grid(saliency.astype(np.float32), alignment.matrix, grid)
    return _Placed(warped, warped_saliency, valid, alignment)


def process_pair(pair: Pair, options: BuildOptions, source: SaliencySource, want_preview: bool) -> PairResult:
    """Everything for one pair except writing: the shard's arrays come back in `info['_arrays']`."""
    info: dict = {"name": pair.shard_name, "scene": pair.scene, "raw": str(pair.raw.resolve()), "rgb": str(pair.rgb.resolve()),
                  "count": 0, "dropped": {}, **pair.extra}
    t0 = time.perf_counter()

    def dropped_pair(reason: str, detail: str, preview: dict | None = None) -> PairResult:
        return PairResult(pair.shard_name, {**info, "status": "dropped", "reason": reason, "detail": detail}, preview)

    try:
        frame = decode_raw(pair.raw)
    except Raw2RgbError as exc:
        return dropped_pair("RAW not decodable", str(exc))
    try:
        target, bits = load_rgb(pair.rgb)
    except Raw2RgbError as exc:
        return dropped_pair("target not readable", str(exc))

    packed, black, padding = packed_uint16(frame)
    h, w = packed.shape[-2:]
    levels = ShardLevels(torch.from_numpy(black).view(4, 1, 1), float(frame.white_level), frame.wb_gains_rgb, frame.camera_to_srgb)
    levelled = levels.normalise(torch.from_numpy(packed.astype(np.int32)), "raw")
    info.update(
        camera=_camera_name(pair.raw),
        cfa_pattern=frame.cfa_pattern,
        flip=frame.flip,
        sensor_size=[frame.height, frame.width],
        padding=[padding.top, padding.left, padding.bottom, padding.right],
        target_size=list(target.shape[:2]),
        rgb_dtype="uint8" if bits == 8 else "uint16",
        levels={
            "black_per_channel": black.tolist(),
            "white_level": float(frame.white_level),
            "wb_gains_rgb": [float(v) for v in frame.wb_gains_rgb],
            "wb_source": frame.wb_source,
            "camera_to_srgb": [[float(v) for v in row] for row in frame.camera_to_srgb],
            "matrix_source": frame.matrix_source,
        },
    )
    try:
        saliency = source.map_for(target, pair.rgb)
    except Raw2RgbError as exc:
        return dropped_pair("no saliency map", str(exc))

    reference = packed_gray(levelled)
    checked = options.align != "none"
    try:
        placed = _place_target(frame, padding, (2 * h, 2 * w), unorient_hwc(target, frame.flip),
                               unorient_hwc(saliency, frame.flip), reference, options.align)
    except AlignmentFailed as exc:
        return dropped_pair("alignment failed" if checked else "size mismatch", exc.reason)
    alignment = placed.alignment
    warped_gray = cv2.resize(target_gray(placed.target, frame.camera_to_srgb), (w, h), interpolation=cv2.INTER_AREA)
    valid = cv2.resize(placed.valid, (w, h), interpolation=cv2.INTER_AREA)
    overlap = cv2.erode((valid > 0.999).astype(np.uint8), np.ones((5, 5), np.uint8))
    alignment.score = gradient_ncc(reference, warped_gray, overlap) if overlap.sum() > 64 else 0.0
    info["alignment"] = alignment.to_dict()

    def preview(boxes: list) -> dict | None:
        return _preview(pair, levels, levelled, placed.target, boxes, alignment) if want_preview else None

    if checked and alignment.score < options.min_pair_score:
        return dropped_pair("poor global alignment", f"gradient correlation {alignment.score:.3f} < {options.min_pair_score}", preview([]))

    n = options.patch_size + MARGIN
    positions = _patch_positions(h, w, options, np.random.default_rng(_pair_seed(options.seed, pair)))
    if not positions:
        return dropped_pair("frame smaller than a patch", f"packed frame {w}×{h} < patch {n}×{n}")
    scorer = PatchScorer(reference, warped_gray)
    kept: list[tuple[int, int]] = []
    patches: list[dict] = []
    boxes: list[tuple[tuple[int, int, int, int], str]] = []
    dropped: Counter = Counter()
    for y, x in positions:
        box = (y, x, y + n, x + n)
        inside = valid[y : y + n, x : x + n].min() >= 0.999
        verified = inside and (not checked or scorer.texture(box) >= TEXTURE_THRESHOLD)
        score = scorer.score(box) if inside else 0.0
        shift = 2.0 * scorer.shift(box) if checked and verified else 0.0  # sensor pixels
        if not inside:
            reason = "outside target"
        elif checked and verified and score < options.min_patch_score:
            reason = "poor alignment"
        elif shift > options.max_patch_shift:
            reason = "local misalignment"
        else:
            reason = None
        if reason is not None:
            dropped[reason] += 1
            boxes.append((box, "dropped"))
            continue
        kept.append((y, x))
        # The stored window in visible-mosaic coordinates (margin included).
        sensor_box = [2 * y - padding.top, 2 * x - padding.left, 2 * (y + n) - padding.top, 2 * (x + n) - padding.left]
        patches.append({"box_sensor": sensor_box, "score": round(float(score), 4), "shift": round(shift, 3), "verified": bool(verified)})
        boxes.append((box, "kept" if verified else "unverified"))

    unverified = sum(1 for p in patches if not p["verified"])
    info.update(count=len(kept), dropped=dict(dropped), unverified=unverified, patches=patches, seconds=round(time.perf_counter() - t0, 2))
    if not kept:
        return dropped_pair("no patch passed", ", ".join(f"{v} {k}" for k, v in dropped.items()), preview(boxes))

    rgb_dtype, scale = (np.uint8, 255.0) if bits == 8 else (np.uint16, 65535.0)
    full = [(slice(2 * y, 2 * (y + n)), slice(2 * x, 2 * (x + n))) for y, x in kept]
    info["status"] = "kept"
    info["_arrays"] = {
        "raw": np.stack([packed[:, y : y + n, x : x + n] for y, x in kept]),
        "rgb": np.stack([np.rint(np.clip(placed.target[r, c], 0, 1) * scale).astype(rgb_dtype).transpose(2, 0, 1) for r, c in full]),
        "saliency": np.stack([np.rint(np.clip(placed.saliency[r, c], 0, 1) * 255).astype(np.uint8)[None] for r, c in full]),
    }
    return PairResult(pair.shard_name, info, preview(boxes))


def _pair_seed(seed: int, pair: Pair) -> int:
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


def _preview(pair: Pair, levels: ShardLevels, levelled: torch.Tensor, warped: np.ndarray, boxes: list, alignment: Alignment) -> dict:
    rendered = apply_color_normalization(levelled, "wb+ccm", levels.wb_gains_rgb, levels.camera_to_srgb)
    return {"pair": pair, "raw": packed_rgb_preview(rendered), "target": warped, "boxes": boxes, "score": alignment.score}


def write_preview(path: Path, preview: dict) -> None:
    """RAW rendering | aligned target | checkerboard of both; patch boxes green/yellow/red."""
    from PIL import Image, ImageDraw

    raw = preview["raw"]
    h, w = raw.shape[:2]
    target = cv2.resize(np.clip(preview["target"], 0, 1).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    block = max(8, w // 16)
    yy, xx = np.mgrid[0:h, 0:w]
    checker = (((yy // block) + (xx // block)) % 2 == 0)[..., None]
    mixed = np.where(checker, raw, target)
    panels = np.concatenate([raw, target, mixed], axis=1)
    image = Image.fromarray((np.clip(panels, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    colours = {"kept": (40, 220, 40), "unverified": (240, 200, 0), "dropped": (230, 30, 30)}
    for (y0, x0, y1, x1), state in preview["boxes"]:
        for k in range(2):
            draw.rectangle([x0 + k * w, y0, x1 + k * w - 1, y1 - 1], outline=colours[state])
    scale = min(1.0, PREVIEW_WIDTH / image.width)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    image.save(tmp, format="PNG")
    tmp.replace(path)


# --------------------------------------------------------------------------------- whole build


def _check_build_options(out: Path, key: dict) -> None:
    path = out / BUILD_OPTIONS
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous.get("content") != key:
            changed = [k for k in key if previous.get("content", {}).get(k) != key[k]]
            raise DatasetError(f"{out} was built with different options ({', '.join(changed)})",
                               "resume with the same options, or write to a new folder")
    else:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "content": key})


def build_dataset(
    pairs: list[Pair],
    out: Path,
    options: BuildOptions,
    *,
    progress: ProgressCallback | None = None,
    unmatched: dict | None = None,
    source: SaliencySource | None = None,
    prepare: PreparePair | None = None,
) -> dict:
    """Turn `pairs` into the dataset at `out` (resuming one that exists); returns the report.

    `prepare`, when given, runs in the worker before a pair is processed (synthetic data writes
    its RAW there) and returns the pair to use plus a clean-up to run afterwards.
    """
    options.check()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out} exists and is not a folder", "choose another output folder")
    names = [p.shard_name for p in pairs]
    if len(set(names)) != len(names):
        raise DatasetError("the same RAW/RGB pair is listed twice", "remove the duplicate row")
    source = source or saliency_source(options.saliency, trust_torchscript=options.trust_torchscript)
    _check_build_options(out, options.content_key(source.describe()))
    emit = progress or (lambda event, data: None)
    emit("start", {"pairs": len(pairs)})

    results: dict[str, dict] = {}
    todo: list[Pair] = []
    for pair in pairs:
        done = read_shard_info(out, pair.shard_name)
        if done is not None:
            results[pair.shard_name] = {**done, "resumed": True}
            emit("pair", {"name": pair.raw.name, "status": done.get("status"), "count": done.get("count", 0), "resumed": True})
        else:
            todo.append(pair)

    previews_dir = out / "previews"
    preview_budget = max(0, options.previews - len(list(previews_dir.glob("*.png")) if previews_dir.is_dir() else []))

    def run(pair_and_preview: tuple[Pair, bool]) -> PairResult:
        pair, want_preview = pair_and_preview
        cleanup = None
        try:
            if prepare is not None:
                pair, cleanup = prepare(pair)
            return process_pair(pair, options, source, want_preview)
        except (MemoryError, OSError, cv2.error, ValueError, RuntimeError) as exc:  # a bad pair must not stop the build
            return PairResult(pair.shard_name, {"name": pair.shard_name, "scene": pair.scene, "raw": str(pair.raw), "rgb": str(pair.rgb),
                                                "count": 0, "status": "dropped", "reason": "processing error", "detail": f"{type(exc).__name__}: {exc}"})
        finally:
            if cleanup is not None:
                cleanup()

    def store(result: PairResult) -> None:
        arrays = result.info.pop("_arrays", None)
        if result.preview is not None:
            preview_path = previews_dir / f"{result.name}.png"
            write_preview(preview_path, result.preview)
            result.info["preview"] = str(preview_path.relative_to(out))
        write_shard(out, result.name, arrays, result.info)
        results[result.name] = result.info
        emit("pair", {"name": Path(result.info["raw"]).name, "status": result.info["status"], "count": result.info["count"],
                      "reason": result.info.get("reason"), "resumed": False})

    # At most two pairs per worker in flight: finished pairs hold full-frame arrays until stored.
    queue = [(pair, i < preview_budget) for i, pair in enumerate(todo)][::-1]
    with ThreadPoolExecutor(max_workers=options.jobs) as pool:
        running = {pool.submit(run, queue.pop()) for _ in range(min(len(queue), 2 * options.jobs))}
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                store(future.result())
                if queue:
                    running.add(pool.submit(run, queue.pop()))

    report = finish_dataset(out, [results[n] for n in names], options, source.describe(), unmatched or {})
    emit("done", report)
    return report


def finish_dataset(out: Path, shards: list[dict], options: BuildOptions, saliency: dict, unmatched: dict) -> dict:
    """Assign the scene split, write manifest.json and report.json; returns the report."""
    kept = [s for s in shards if s.get("count", 0) > 0]
    split_of = assign_splits([s["scene"] for s in kept], options.val_fraction, options.seed)
    pair_drops: Counter = Counter(s.get("reason") for s in shards if s.get("status") != "kept")
    patch_drops: Counter = Counter()
    for s in shards:
        patch_drops.update(s.get("dropped", {}))
    manifest_shards = []
    for s in kept:
        entry = {k: v for k, v in s.items() if k not in ("resumed", "preview")}
        entry["split"] = split_of[s["scene"]]
        manifest_shards.append(entry)
    counts = {
        "pairs": len(shards),
        "pairs_kept": len(kept),
        "pairs_dropped": dict(pair_drops),
        "patches": sum(s["count"] for s in kept),
        "patches_unverified": sum(s.get("unverified", 0) for s in kept),
        "patches_dropped": dict(patch_drops),
        "scenes": {name: sum(1 for v in split_of.values() if v == name) for name in ("train", "val")},
        "train": sum(s["count"] for s in manifest_shards if s["split"] == "train"),
        "val": sum(s["count"] for s in manifest_shards if s["split"] == "val"),
    }
    cameras = sorted({s.get("camera") or "unknown" for s in kept})
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": options.kind,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "patch_size": options.patch_size,
        "margin": MARGIN,
        "target_scale": 2,
        "input_normalization": options.input_normalization,
        "output_color_space": "srgb",
        "cameras": cameras,
        "saliency": saliency,
        "options": {k: v for k, v in asdict(options).items() if k not in ("jobs", "previews", "trust_torchscript")},
        "counts": counts,
        "shards": manifest_shards,
    }
    atomic_write_json(out / MANIFEST, manifest)
    report = {
        "dataset": str(out),
        "kind": options.kind,
        "patch_size": options.patch_size,
        "input_normalization": options.input_normalization,
        "cameras": cameras,
        "counts": counts,
        "unmatched": unmatched,
        "pairs": [
            {k: s.get(k) for k in ("name", "scene", "raw", "rgb", "status", "reason", "detail", "count", "dropped", "unverified", "preview", "resumed")}
            | {"alignment_score": (s.get("alignment") or {}).get("score"), "alignment_method": (s.get("alignment") or {}).get("method"),
               "split": split_of.get(s["scene"]) if s.get("count", 0) > 0 else None}
            for s in shards
        ],
    }
    atomic_write_json(out / "report.json", report)
    return report
