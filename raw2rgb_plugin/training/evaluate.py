"""`raw2rgb evaluate`: PSNR/SSIM of a profile on a dataset split, beside a classical baseline.

The network sees each stored patch normalised the way the profile was trained (the dataset keeps
raw sensor integers, so it serves any normalisation) and is scored against the aligned target.

The baseline is the classical rendering of the *same* pixels:

- ``libraw``: the source RAW the patch was cut from (the manifest keeps its path and crop box)
  rendered by LibRaw — AHD demosaicking, as-shot white balance, the camera matrix to sRGB, the
  sRGB transfer curve, no auto-brightening, 16 bit, sensor orientation — and cropped to the
  patch. One full-frame rendering per source image.
- ``bilinear``: where the source RAW is gone (dataset moved to another machine), the stored
  patch itself with white balance and camera matrix applied (`wb+ccm`), bilinear
  demosaicking and the sRGB curve. Each image's row says which baseline it got.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raw2rgb_plugin.pipeline.classical import bilinear_srgb
from raw2rgb_plugin.pipeline.metrics import psnr, ssim

BASELINE_SETTINGS = "LibRaw AHD, as-shot WB, camera matrix → sRGB, sRGB curve, no auto-bright"


@dataclass
class ImageScore:
    """Mean scores over the patches of one source image (one dataset shard)."""

    image: str
    scene: str
    patches: int
    psnr: float
    ssim: float
    baseline: str | None  # "libraw", "bilinear" or None (not computed)
    baseline_psnr: float | None
    baseline_ssim: float | None
    note: str | None = None


@dataclass
class Evaluation:
    profile: str
    dataset: str
    split: str
    input_normalization: str
    patches: int
    psnr: float
    ssim: float
    baseline_psnr: float | None
    baseline_ssim: float | None
    baseline_kinds: dict[str, int]
    images: list[ImageScore] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def libraw_render(raw_path: str | os.PathLike) -> np.ndarray:
    """Full-frame classical rendering in sensor orientation, float32 (H, W, 3) in [0, 1]."""
    import rawpy

    with rawpy.imread(str(raw_path)) as raw:
        rgb = raw.postprocess(
            demosaic_algorithm=rawpy.DemosaicAlgorithm.AHD,
            use_camera_wb=True,
            output_color=rawpy.ColorSpace.sRGB,
            output_bps=16,
            gamma=(2.4, 12.92),  # the sRGB curve's parameters in LibRaw's terms
            no_auto_bright=True,
            user_flip=0,  # the dataset's patches are in sensor orientation
        )
    return rgb.astype(np.float32) / 65535.0


def _shard_entries(manifest: dict, split: str) -> list[dict]:
    """The shards of `split` in the order the dataset reader enumerates their patches."""
    return [s for s in manifest.get("shards", []) if s.get("split") == split and s.get("count", 0) > 0]


class _LibRawCrops:
    """Renders each source RAW once and cuts the crop of every patch from it."""

    def __init__(self, patch: int):
        self.patch = patch
        self._key: str | None = None
        self._frame: np.ndarray | None = None
        self._problem: str | None = None

    def crop(self, shard: dict, k: int) -> tuple[torch.Tensor | None, str | None]:
        source = shard.get("raw")
        if not source or not Path(source).is_file():
            return None, "source RAW not found"
        if self._key != source:
            self._key, self._frame, self._problem = source, None, None
            try:
                frame = libraw_render(source)
            except Exception as exc:  # LibRaw errors come in many types; the fallback covers all
                self._problem = f"LibRaw could not render it ({type(exc).__name__})"
            else:
                expected = tuple(shard.get("sensor_size", frame.shape[:2]))
                if frame.shape[:2] != expected:
                    self._problem = f"LibRaw renders {frame.shape[1]}×{frame.shape[0]}, the mosaic is {expected[1]}×{expected[0]}"
                else:
                    top, left, bottom, right = shard.get("padding", (0, 0, 0, 0))
                    # The patches live on the phase-padded grid; pad the rendering the same way.
                    self._frame = np.pad(frame, ((top, bottom), (left, right), (0, 0)), mode="edge")
                    self._offset = (top, left)
        if self._frame is None:
            return None, self._problem
        y0, x0 = shard["patches"][k]["box_sensor"][:2]
        y, x = y0 + self._offset[0], x0 + self._offset[1]
        size = 2 * self.patch
        crop = self._frame[y : y + size, x : x + size]
        if crop.shape[:2] != (size, size):
            return None, "crop box outside the rendering"
        return torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))), None


@torch.no_grad()
def evaluate_profile(
    profile: Any,
    dataset: Any,
    *,
    split: str = "val",
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    baseline: bool = True,
    limit: int | None = None,
    dataset_label: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Score `profile` (from `load_profile`) on `dataset` (from `open_dataset`)."""
    mode = profile.input_normalization
    items = dataset.split(split, augment=False, input_normalization=mode)
    reference = dataset.split(split, augment=False, input_normalization="wb+ccm") if baseline else None
    total = len(items) if limit is None else min(limit, len(items))
    shards = _shard_entries(dataset.manifest, split)
    # (shard, patch-in-shard) of each item, in the reader's order: shards in manifest order.
    locations = [(i, k) for i, s in enumerate(shards) for k in range(int(s["count"]))]
    if baseline and len(locations) != len(items):
        raise ValueError(f"manifest lists {len(locations)} {split} patches, the reader {len(items)}")
    model = profile.model.to(device).eval()
    crops = _LibRawCrops(int(dataset.manifest.get("patch_size", 0)))

    per_image: dict[int, dict] = {}
    for start in range(0, total, batch_size):
        indices = list(range(start, min(start + batch_size, total)))
        batch = [items[i] for i in indices]
        raw = torch.stack([b["raw"] for b in batch]).to(device)
        target = torch.stack([b["rgb"] for b in batch])
        output = model(raw).float().clamp(0, 1).cpu()
        scores = torch.stack([psnr(output, target), ssim(output, target)], dim=1)
        for j, i in enumerate(indices):
            shard_index, k = locations[i] if i < len(locations) else (-1, i)
            row = per_image.setdefault(shard_index, {
                "image": Path(shards[shard_index].get("raw", "")).name if shard_index >= 0 else "patches",
                "scene": batch[j]["scene"], "scores": [], "baseline": [], "kinds": set(), "notes": set()})
            row["scores"].append(scores[j])
            if reference is None:
                continue
            crop, problem = crops.crop(shards[shard_index], k)
            kind = "libraw"
            if crop is None:
                crop, kind = bilinear_srgb(reference[i]["raw"][None])[0], "bilinear"
                row["notes"].add(problem)
            row["kinds"].add(kind)
            row["baseline"].append(torch.stack([psnr(crop[None], target[j : j + 1])[0], ssim(crop[None], target[j : j + 1])[0]]))
        if on_progress is not None:
            on_progress(indices[-1] + 1, total)

    return _summarise(per_image, profile.name, dataset_label or str(getattr(dataset, "root", "")), split, mode)


def _summarise(per_image: dict[int, dict], profile_name: str, dataset_label: str, split: str, mode: str) -> Evaluation:
    """Per-image rows of scores → the evaluation, with means over all patches."""
    images: list[ImageScore] = []
    kinds: dict[str, int] = {}
    all_scores, all_baseline = [], []
    for row in per_image.values():
        s = torch.stack(row["scores"])
        all_scores.append(s)
        b = torch.stack(row["baseline"]) if row["baseline"] else None
        if b is not None:
            all_baseline.append(b)
        baseline_kind = "+".join(sorted(row["kinds"])) or None
        if baseline_kind:
            kinds[baseline_kind] = kinds.get(baseline_kind, 0) + len(row["scores"])
        images.append(ImageScore(
            image=row["image"], scene=row["scene"], patches=len(row["scores"]),
            psnr=float(s[:, 0].mean()), ssim=float(s[:, 1].mean()), baseline=baseline_kind,
            baseline_psnr=float(b[:, 0].mean()) if b is not None else None,
            baseline_ssim=float(b[:, 1].mean()) if b is not None else None,
            note="; ".join(sorted(n for n in row["notes"] if n)) or None,
        ))
    scores = torch.cat(all_scores) if all_scores else torch.zeros(0, 2)
    base = torch.cat(all_baseline) if all_baseline else None
    return Evaluation(
        profile=profile_name,
        dataset=dataset_label,
        split=split,
        input_normalization=mode,
        patches=int(scores.shape[0]),
        psnr=float(scores[:, 0].mean()) if len(scores) else float("nan"),
        ssim=float(scores[:, 1].mean()) if len(scores) else float("nan"),
        baseline_psnr=float(base[:, 0].mean()) if base is not None else None,
        baseline_ssim=float(base[:, 1].mean()) if base is not None else None,
        baseline_kinds=kinds,
        images=images,
    )
