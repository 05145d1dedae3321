"""Clean demosaicking on Kodak24 and McMaster18: the protocol papers report, in our pipeline.

Each whole image (cropped to even sides) is unprocessed with one random camera (seeded, as the
held-out set's tiles are), written as an RGGB DNG without noise, rendered by every method, and
scored in sRGB against the image itself. These are the field's test sets: no shipped profile may
train on them or be chosen by them from now on (the profiles up to `default-lite` of 2026-11 did
train on them, so their numbers here are not held-out ones; the report says so).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from raw2rgb_plugin.training.data.unprocess import random_params, write_synthetic_dng

from heldout import Case, HeldOutImage

SEED = 2016  # demosaicnet's year: any fixed seed, the same cameras every run
SETS = {"Kodak24": "kodak24", "McMaster18": "mcmaster"}


def literature_images(rgb_dir: Path) -> dict[str, list[HeldOutImage]]:
    """{set name: images} for the sets present under `rgb_dir` (../shared/data/rgb)."""
    found = {}
    for name, folder in SETS.items():
        files = sorted(p for p in (rgb_dir / folder).glob("*") if p.suffix.lower() in (".png", ".tif", ".tiff"))
        if files:
            found[name] = [_image(p) for p in files]
    return found


def _image(path: Path) -> HeldOutImage:
    with Image.open(path) as im:
        srgb = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
    h, w = srgb.shape[0] // 2 * 2, srgb.shape[1] // 2 * 2
    return HeldOutImage(path.stem, srgb[:h, :w], path.name, "test image", str(path))


def literature_cases(sets: dict[str, list[HeldOutImage]], workdir: Path) -> list[Case]:
    cases = []
    for s, (set_name, images) in enumerate(sets.items()):
        for i, image in enumerate(images):
            camera = replace(random_params(np.random.default_rng([SEED, s, i]), noise=False), cfa_pattern="RGGB")
            dng = workdir / f"lit-{set_name}-{image.name}.dng"
            write_synthetic_dng(image.srgb, dng, np.random.default_rng([SEED, s, i, 1]), params=camera,
                                model=f"{set_name} {image.name}")
            h, w = image.srgb.shape[:2]
            cases.append(Case(f"{set_name}/{image.name}", 0, (0, 0, h, w), "none", "RGGB", dng, image.srgb,
                              camera.to_dict()))
    return cases


def summary(rows: list[dict]) -> dict[str, dict[str, float]]:
    """{method: {set: mean PSNR, "both": mean over every image}}."""
    out: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        set_name = row["image"].split("/", 1)[0]
        per = out.setdefault(row["method"], {})
        per.setdefault(set_name, []).append(row["psnr"])
        per.setdefault("both", []).append(row["psnr"])
    return {m: {k: round(float(np.mean(v)), 2) for k, v in per.items()} for m, per in out.items()}


def markdown(means: dict[str, dict[str, float]], command: str) -> list[str]:
    sets = [s for s in SETS if any(s in v for v in means.values())]
    lines = ["## Clean demosaicking on Kodak24 and McMaster18", "",
             "The literature's protocol in this pipeline (`benchmarks/literature.py`): each whole image "
             "unprocessed with one random camera, RGGB, no noise, scored in sRGB (PSNR, dB). These are "
             "test sets: profiles trained before 2026-12 (`default-lite`, `develop-lite`) learned from "
             "them, so their rows here are not held out.", "",
             "| method | " + " | ".join(sets) + " | both |", "|---|" + "---|" * (len(sets) + 1)]
    for method, per in means.items():
        lines.append(f"| {method} | " + " | ".join(f"{per.get(s, float('nan')):.2f}" for s in sets)
                     + f" | {per['both']:.2f} |")
    lines += ["", f"`{command}`", ""]
    return lines
