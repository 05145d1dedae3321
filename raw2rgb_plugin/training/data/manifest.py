"""A build's bookkeeping files: build.json (checked on resume), manifest.json and report.json.

The manifest is what a trainer reads (see `store`); the report is for people and for
`raw2rgb dataset … --json`: every pair, kept or not, with why.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from raw2rgb_plugin.io.files import write_json
from raw2rgb_plugin.training.data.options import BuildOptions
from raw2rgb_plugin.training.data.store import (
    BUILD_OPTIONS,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    MARGIN,
    DatasetError,
    assign_splits,
)

#: options that change how a build runs, not what it stores.
_RUN_ONLY_OPTIONS = ("jobs", "previews", "trust_torchscript")
_REPORT_KEYS = ("name", "scene", "raw", "rgb", "status", "reason", "detail", "count", "dropped", "unverified", "preview",
                "resumed")


def check_build_options(out: Path, key: dict) -> None:
    """Record `key` in a new dataset, or refuse to resume one whose shards were cut otherwise."""
    path = out / BUILD_OPTIONS
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous.get("content") != key:
            changed = [k for k in key if previous.get("content", {}).get(k) != key[k]]
            raise DatasetError(f"{out} was built with different options ({', '.join(changed)})",
                               "resume with the same options, or write to a new folder")
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_json(path, {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "content": key})


def finish_dataset(out: Path, shards: list[dict], options: BuildOptions, saliency: dict, unmatched: dict) -> dict:
    """Assign the scene split, write manifest.json and report.json; returns the report."""
    kept = [s for s in shards if s.get("count", 0) > 0]
    split_of = assign_splits([s["scene"] for s in kept], options.val_fraction, options.seed)
    manifest_shards = []
    for s in kept:
        entry = {k: v for k, v in s.items() if k not in ("resumed", "preview")}
        entry["split"] = split_of[s["scene"]]
        manifest_shards.append(entry)
    counts = _counts(shards, kept, manifest_shards, split_of)
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
        "options": {k: v for k, v in asdict(options).items() if k not in _RUN_ONLY_OPTIONS},
        "counts": counts,
        "shards": manifest_shards,
    }
    write_json(out / MANIFEST, manifest)
    report = {
        "dataset": str(out),
        "kind": options.kind,
        "patch_size": options.patch_size,
        "input_normalization": options.input_normalization,
        "cameras": cameras,
        "counts": counts,
        "unmatched": unmatched,
        "pairs": [_report_entry(s, split_of) for s in shards],
    }
    write_json(out / "report.json", report)
    return report


def _counts(shards: list[dict], kept: list[dict], manifest_shards: list[dict], split_of: dict[str, str]) -> dict:
    pair_drops: Counter = Counter(s.get("reason") for s in shards if s.get("status") != "kept")
    patch_drops: Counter = Counter()
    for s in shards:
        patch_drops.update(s.get("dropped", {}))
    return {
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


def _report_entry(shard: dict, split_of: dict[str, str]) -> dict:
    alignment = shard.get("alignment") or {}
    return {k: shard.get(k) for k in _REPORT_KEYS} | {
        "alignment_score": alignment.get("score"),
        "alignment_method": alignment.get("method"),
        "split": split_of.get(shard["scene"]) if shard.get("count", 0) > 0 else None,
    }
