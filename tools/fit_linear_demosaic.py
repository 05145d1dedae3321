"""Fit the linear demosaic a CFA's gated base uses, from the training corpus, and ship its kernels.

    python tools/fit_linear_demosaic.py ~/.cache/raw2rgb/corpus/images --cfa xtrans
    python tools/fit_linear_demosaic.py ~/.cache/raw2rgb/corpus/images --cfa bayer

Bayer's current demosaic is Malvar–He–Cutler (the fitted one is a base of its own, `lsq-*`).

Fits on crops of the corpus's training split (the on-the-fly trainer's split, so its validation
images stay unseen), scores the fitted kernels against the current ones on its validation split
(no noise, linear sRGB mosaics, sRGB-encoded PSNR) and, with --write, replaces the shipped file.
Kodak24, McMaster18 and the other test sets must never be the folder given here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from raw2rgb_plugin.pipeline import bayer_lsq_demosaic, mhc, xtrans_demosaic
from raw2rgb_plugin.pipeline.cfa import XTRANS
from raw2rgb_plugin.pipeline.colour import srgb_decode, srgb_encode_tensor
from raw2rgb_plugin.pipeline.metrics import psnr
from raw2rgb_plugin.training.data.images import load_rgb
from raw2rgb_plugin.training.data.onthefly import OnTheFlyDataset, OnTheFlyOptions
from raw2rgb_plugin.training.linear_demosaic_fit import NormalEquations, demosaic_with, random_crops, sample_mosaic, solve

PATTERNS = {"xtrans": XTRANS, "bayer": "RGGB"}
RADIUS = {"xtrans": 1,  # 3×3 packed = 18 px: 34.23 dB; 5×5 packed scored 34.21 (no gain, 2.8× the cost)
          "bayer": 2}


def linear_crops(paths: list[Path], size: int, per_image: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    crops = random_crops((load_rgb(p)[0] for p in paths), size, per_image, rng)
    return torch.from_numpy(srgb_decode(np.stack(crops)).transpose(0, 3, 1, 2).copy())


def current_demosaic(cfa: str, mosaic: torch.Tensor) -> torch.Tensor:
    if cfa == "xtrans":
        return demosaic_with(xtrans_demosaic.XTRANS_DEMOSAIC_KERNELS, mosaic)
    return mhc.demosaic(mosaic)


def free_licence(corpus: Path) -> set[Path]:
    """The corpus's images under a free licence (what shipped weights learn from), by its manifest."""
    manifest = json.loads((corpus.parent / "manifest.json").read_text())
    return {corpus.parent / entry["file"] for entry in manifest["images"] if not entry["research_only"]}


def psnr_srgb(estimate: torch.Tensor, truth: torch.Tensor, margin: int = 6) -> float:
    """Mean over crops of sRGB-encoded PSNR, `margin` px of border left out."""
    e, t = (srgb_encode_tensor(x.clamp(0, 1))[..., margin:-margin, margin:-margin] for x in (estimate, truth))
    return float(psnr(e, t).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path, help="the training corpus's images folder")
    parser.add_argument("--cfa", choices=sorted(PATTERNS), default="xtrans")
    parser.add_argument("--size", type=int, default=192, help="crop side, px (a multiple of 6)")
    parser.add_argument("--crops-per-image", type=int, default=2)
    parser.add_argument("--images", type=int, default=1500, help="training images used (a seeded sample)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="replace the shipped kernels")
    parser.add_argument("--radius", type=int, help="packed pixels either side (default: the CFA's)")
    args = parser.parse_args()
    start = time.monotonic()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    dataset = OnTheFlyDataset(args.corpus, OnTheFlyOptions(cfa=args.cfa, patch_size=args.size))
    free = free_licence(args.corpus)
    train = [p for p in dataset.split("train").images if p in free]
    train = [train[i] for i in sorted(np.random.default_rng(args.seed).permutation(len(train))[: args.images])]
    val = dataset.split("val").images
    equations = NormalEquations(PATTERNS[args.cfa], args.radius or RADIUS[args.cfa])
    crops = linear_crops(train, args.size, args.crops_per_image, args.seed)
    for batch in crops.split(32):
        equations.add(batch)
    kernels = solve(equations)

    truth = linear_crops(val, args.size, 1, args.seed + 1).to(torch.float64)
    mosaic = sample_mosaic(truth, PATTERNS[args.cfa])
    fitted = psnr_srgb(demosaic_with(kernels, mosaic), truth)
    current = psnr_srgb(current_demosaic(args.cfa, mosaic), truth)
    print(f"{len(crops)} training crops of {len(train)} images, {len(truth)} validation crops: "
          f"fitted {fitted:.2f} dB, current {current:.2f} dB ({time.monotonic() - start:.0f} s)")
    if args.write:
        write_kernels(kernels, args, fitted=fitted, current=current, crops=len(crops), images=len(train))


def write_kernels(kernels: torch.Tensor, args: argparse.Namespace, **scores) -> None:
    manifest = args.corpus.parent / "manifest.json"
    metadata = {
        "cfa": args.cfa, "radius": args.radius or RADIUS[args.cfa], "size": args.size, "crops_per_image": args.crops_per_image,
        "seed": args.seed, "fitted": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "corpus_manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else None,
        "validation_psnr_srgb": round(scores["fitted"], 2), "replaced_psnr_srgb": round(scores["current"], 2),
        "training_crops": scores["crops"], "training_images": scores["images"], "licences": "free only (no research-only source)",
    }
    path = {"xtrans": xtrans_demosaic.FITTED_KERNELS_FILE, "bayer": bayer_lsq_demosaic.FITTED_KERNELS_FILE}[args.cfa]
    tmp = path.with_suffix(".tmp")
    save_file({"kernels": kernels.to(torch.float32).contiguous()}, str(tmp), metadata={"fit": json.dumps(metadata)})
    tmp.replace(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
