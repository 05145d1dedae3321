"""The on-disk training dataset: sharded .npy patches that stream from disk, and their reader.

Layout of a dataset folder::

    manifest.json            what a trainer reads: options, counts, split, provenance per shard
    build.json               options that fix the content (checked when a build resumes)
    report.json, previews/   what the builder saw (for people)
    shards/<name>/           one source pair; written under a temporary name, then renamed
        raw.npy              uint16 (N, 4, p+1, p+1) packed RGGB-phase mosaic, exact sensor integers
        rgb.npy              uint8 or uint16 (N, 3, 2p+2, 2p+2) target, sensor orientation and grid
        saliency.npy         uint8 (N, 1, 2p+2, 2p+2) saliency of the target
        shard.json           source files, camera levels/WB/matrix, crop boxes, scores

**Why raw integers.** The RAW is kept as the camera wrote it (black level not subtracted) with
the source's levels, white balance and camera matrix in shard.json. The reader applies the input
normalisation with the engine's own code, so the network trains on exactly what `convert` will
feed it, and one dataset serves every normalisation (`raw`, `wb`, `wb+ccm`, `linear-srgb`).

**Why a margin.** Each patch is stored one packed pixel (two sensor pixels) larger than the
training size p. A flip or 90° rotation of a Bayer mosaic moves the red site off (0, 0); cropping
one sensor row and/or column from the margin brings it back to RGGB phase at the same size, and
the target and saliency are cropped identically. Without augmentation the top-left p×p is used.

**Streaming.** Arrays are opened with `np.load(mmap_mode="r")` on first use in each process (a
DataLoader worker included) and only the requested patch is copied, so a dataset far larger than
memory trains; the torch Dataset pickles without its open maps (spawn workers are fine).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.pipeline.normalization import apply_color_normalization, levels_normalize_packed
from raw2rgb_plugin.pipeline.packing import pack_rggb, unpack_rggb
from raw2rgb_plugin.vocabulary import INPUT_NORMALIZATIONS

FORMAT_NAME = "raw2rgb-dataset"
FORMAT_VERSION = 1
#: extra packed pixels stored on the bottom/right of every patch (see the module doc).
MARGIN = 1
SPLITS = ("train", "val")
MANIFEST = "manifest.json"
BUILD_OPTIONS = "build.json"
SHARD_DIR = "shards"
SHARD_INFO = "shard.json"
ARRAYS = ("raw", "rgb", "saliency")


class DatasetError(Raw2RgbError):
    """A dataset folder that cannot be read or extended."""


# ----------------------------------------------------------------------------------- writing


def write_shard(dataset_dir: Path, name: str, arrays: dict[str, np.ndarray] | None, info: dict) -> Path:
    """Write one shard atomically: everything goes into a hidden folder that is renamed last.

    `arrays` is None for a pair that gave no patches (its info records why), so that a resumed
    build does not try it again.
    """
    shards = Path(dataset_dir) / SHARD_DIR
    shards.mkdir(parents=True, exist_ok=True)
    final = shards / name
    tmp = shards / f".{name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        if arrays is not None:
            for key in ARRAYS:
                np.save(tmp / f"{key}.npy", np.ascontiguousarray(arrays[key]), allow_pickle=False)
        (tmp / SHARD_INFO).write_text(json.dumps(info, indent=1) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def read_shard_info(dataset_dir: Path, name: str) -> dict | None:
    """The info of a completed shard, or None when it was never finished."""
    path = Path(dataset_dir) / SHARD_DIR / name / SHARD_INFO
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def assign_splits(scenes: list[str], val_fraction: float, seed: int = 0) -> dict[str, str]:
    """scene → "train"/"val". Whole scenes only, so no view of a scene is in both splits.

    Scenes are ordered by a hash (stable across runs and machines); the first
    round(val_fraction × scenes) are validation, at least one when there are two or more scenes
    and val_fraction > 0, and never all of them.
    """
    unique = sorted(set(scenes))
    if not 0 <= val_fraction < 1:
        raise ValueError("val_fraction must be in [0, 1)")
    ranked = sorted(unique, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    n_val = round(val_fraction * len(unique))
    if val_fraction > 0 and len(unique) >= 2:
        n_val = min(max(n_val, 1), len(unique) - 1)
    val = set(ranked[:n_val])
    return {s: ("val" if s in val else "train") for s in unique}


# ----------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ShardLevels:
    """What the reader needs to normalise a shard's raw integers."""

    black_per_channel: torch.Tensor  # (4, 1, 1) for [R, Gr, Gb, B]
    white_level: float
    wb_gains_rgb: np.ndarray
    camera_to_srgb: np.ndarray

    @classmethod
    def from_info(cls, info: dict) -> ShardLevels:
        levels = info["levels"]
        return cls(
            black_per_channel=torch.tensor(levels["black_per_channel"], dtype=torch.float32).view(4, 1, 1),
            white_level=float(levels["white_level"]),
            wb_gains_rgb=np.asarray(levels["wb_gains_rgb"], dtype=np.float32),
            camera_to_srgb=np.asarray(levels["camera_to_srgb"], dtype=np.float32),
        )

    def normalise(self, packed: torch.Tensor, mode: str) -> torch.Tensor:
        """uint16-valued packed (4, h, w) → the engine's normalised input in [0, 1]."""
        levelled = levels_normalize_packed(packed, self.black_per_channel, self.white_level)
        return apply_color_normalization(levelled, mode, self.wb_gains_rgb, self.camera_to_srgb)


def _colour_phase_after(k: int, flip: bool) -> tuple[int, int]:
    """Where the red site of an RGGB mosaic lands after rot90(k) then a column flip."""
    cfa = torch.tensor([[0, 1], [1, 2]])
    t = torch.rot90(cfa, k, dims=(0, 1))
    if flip:
        t = t.flip(1)
    (dy,), (dx,) = torch.nonzero(t == 0, as_tuple=True)
    return int(dy), int(dx)


def augment_patch(
    raw: torch.Tensor, rgb: torch.Tensor, saliency: torch.Tensor, k: int, flip: bool, size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rotate by k·90° and optionally mirror a stored patch, keeping the Bayer phase RGGB.

    `raw` is normalised packed (4, n, n) with n ≥ size + 1; `rgb`/`saliency` are (C, 2n, 2n) on
    the same sensor grid. The mosaic is unpacked, transformed with the images, cropped by one
    sensor row/column where the transform moved the red site, and packed again.
    """
    mosaic = unpack_rggb(raw)[None]
    stack = torch.cat([mosaic, rgb, saliency], dim=0)
    stack = torch.rot90(stack, k, dims=(-2, -1))
    if flip:
        stack = stack.flip(-1)
    dy, dx = _colour_phase_after(k, flip)
    full = 2 * size
    stack = stack[:, dy : dy + full, dx : dx + full]
    return pack_rggb(stack[0]), stack[1:4], stack[4:5]


class PatchSplit(Dataset):
    """One split of a dataset as a torch Dataset of dicts (raw, rgb, saliency, scene).

    - ``raw``: float32 (4, p, p), packed RGGB, input-normalised, in [0, 1]
    - ``rgb``: float32 (3, 2p, 2p) in [0, 1]
    - ``saliency``: float32 (1, 2p, 2p) in [0, 1]
    - ``scene``: str
    """

    def __init__(self, root: Path, shards: list[dict], name: str, *, augment: bool, input_normalization: str, patch_size: int):
        self.root = Path(root)
        self.name = name
        self.augment = augment
        self.input_normalization = input_normalization
        self.patch_size = patch_size
        self._shard_names = [s["name"] for s in shards]
        self._scenes = [s["scene"] for s in shards]
        self._levels = [ShardLevels.from_info(s) for s in shards]
        self._rgb_scale = [1.0 / (255.0 if s["rgb_dtype"] == "uint8" else 65535.0) for s in shards]
        counts = [int(s["count"]) for s in shards]
        self._index = np.array([(i, j) for i, c in enumerate(counts) for j in range(c)], dtype=np.int64).reshape(-1, 2)
        self._open: dict[int, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return int(self._index.shape[0])

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_open"] = {}  # memory maps are reopened in each worker
        return state

    @property
    def scenes(self) -> list[str]:
        return sorted(set(self._scenes))

    @property
    def open_shards(self) -> int:
        """How many shards this process has mapped so far (streaming is lazy)."""
        return len(self._open)

    def _arrays(self, shard: int) -> dict[str, np.ndarray]:
        arrays = self._open.get(shard)
        if arrays is None:
            folder = self.root / SHARD_DIR / self._shard_names[shard]
            try:
                arrays = {key: np.load(folder / f"{key}.npy", mmap_mode="r", allow_pickle=False) for key in ARRAYS}
            except (OSError, ValueError) as exc:
                raise DatasetError(f"shard {folder} is unreadable ({exc})", "rebuild the dataset (the build resumes)") from None
            self._open[shard] = arrays
        return arrays

    def __getitem__(self, item: int) -> dict:
        shard, k = (int(v) for v in self._index[item])
        arrays = self._arrays(shard)
        p = self.patch_size
        raw = self._levels[shard].normalise(torch.from_numpy(np.array(arrays["raw"][k], dtype=np.int32)),
                                            self.input_normalization)
        rgb = torch.from_numpy(np.array(arrays["rgb"][k], dtype=np.float32)).mul_(self._rgb_scale[shard])
        saliency = torch.from_numpy(np.array(arrays["saliency"][k], dtype=np.float32)).mul_(1.0 / 255.0)
        if self.augment:
            turn = int(torch.randint(0, 4, (1,)))
            mirror = bool(torch.randint(0, 2, (1,)))
            raw, rgb, saliency = augment_patch(raw, rgb, saliency, turn, mirror, p)
        else:
            raw, rgb, saliency = raw[:, :p, :p], rgb[:, : 2 * p, : 2 * p], saliency[:, : 2 * p, : 2 * p]
        return {
            "raw": raw.contiguous(),
            "rgb": rgb.contiguous(),
            "saliency": saliency.contiguous(),
            "scene": self._scenes[shard],
        }


class PairDataset:
    """A dataset folder: `.manifest` (the parsed manifest.json) and `.split(name)`."""

    def __init__(self, root: Path, manifest: dict):
        self.root = Path(root)
        self.manifest = manifest

    @property
    def patch_size(self) -> int:
        return int(self.manifest["patch_size"])

    @property
    def input_normalization(self) -> str:
        return self.manifest["input_normalization"]

    def split(self, name: str, augment: bool = False, *, input_normalization: str | None = None) -> PatchSplit:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; known: {', '.join(SPLITS)}")
        mode = input_normalization or self.input_normalization
        if mode not in INPUT_NORMALIZATIONS:
            raise DatasetError(f"unknown input normalisation {mode!r}", f"use one of {', '.join(INPUT_NORMALIZATIONS)}")
        shards = [s for s in self.manifest["shards"] if s["split"] == name and s["count"] > 0]
        return PatchSplit(self.root, shards, name, augment=augment, input_normalization=mode, patch_size=self.patch_size)


def open_dataset(path: str | os.PathLike) -> PairDataset:
    """Open a dataset folder made by `raw2rgb dataset build` or `raw2rgb dataset synth`."""
    root = Path(path).expanduser()
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        hint = "the build did not finish: run it again (it resumes)" if (root / BUILD_OPTIONS).is_file() else \
            "build one with `raw2rgb dataset build` or `raw2rgb dataset synth`"
        raise DatasetError(f"{root} has no {MANIFEST}", hint)
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{manifest_path} is unreadable ({exc})", "rebuild the dataset") from None
    if manifest.get("format") != FORMAT_NAME:
        raise DatasetError(f"{root} is not a raw2rgb dataset", "build one with `raw2rgb dataset build`")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DatasetError(f"{root} has dataset format {version!r}; this raw2rgb reads up to {FORMAT_VERSION}", "upgrade raw2rgb")
    return PairDataset(root, manifest)
