"""Time `raw2rgb learn` end to end on a synthetic card of full-size RAW+JPEG pairs.

    python benchmarks/learn_card.py                          # 100 × 24 MP, sidecar JPEGs
    python benchmarks/learn_card.py --frames 13 --megapixels 0.1 --card /tmp/card

The card: `--frames` DNGs of `--megapixels` (3:2), one fixed camera (unprocessed from the sRGB
photographs of ../shared/data/rgb, scaled up and cropped, a different crop and flip per frame),
each with a full-size sidecar JPEG (quality 92) carrying a simple look (S-curve + saturation),
as RAW+JPEG shooting gives. Making the card is not timed; `raw2rgb learn` runs as a user runs it
(a subprocess, on `--threads` CPU threads), and the table gives its phases from the run's own
report.json beside the classical curve + 3D LUT fit, which is one of those phases.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raw2rgb_plugin.io.dng_write import write_bayer_dng  # noqa: E402
from raw2rgb_plugin.training.data.images import load_rgb  # noqa: E402
from raw2rgb_plugin.training.data.sources import find_images  # noqa: E402
from raw2rgb_plugin.training.data.unprocess import random_params, unprocess  # noqa: E402


def simple_look(srgb: np.ndarray) -> np.ndarray:
    """An S-curve and 30 % more saturation: enough for a look to learn; the content is not timed."""
    x = 0.5 * srgb + 0.5 * srgb * srgb * (3.0 - 2.0 * srgb)
    luma = x.mean(axis=-1, keepdims=True)
    return np.clip(luma + 1.3 * (x - luma), 0.0, 1.0)


def scene(photos: list[Path], index: int, height: int, width: int) -> np.ndarray:
    image, _ = load_rgb(photos[index % len(photos)])  # float32 in [0, 1]
    if image.shape[0] > image.shape[1]:
        image = np.ascontiguousarray(image.transpose(1, 0, 2))
    rng = np.random.default_rng(index)
    scale = max(height / image.shape[0], width / image.shape[1]) * (1.0 + 0.3 * rng.random())
    big = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_CUBIC)
    y, x = int(rng.integers(0, big.shape[0] - height + 1)), int(rng.integers(0, big.shape[1] - width + 1))
    crop = big[y : y + height, x : x + width]
    return np.ascontiguousarray(crop[:, ::-1] if index % 2 else crop).clip(0.0, 1.0)


def make_card(card: Path, frames: int, megapixels: float, rgb_dir: Path) -> None:
    width = int(round((megapixels * 1e6 * 1.5) ** 0.5 / 16) * 16)
    height = int(round(width / 1.5 / 16) * 16)
    photos = find_images(rgb_dir)
    params = random_params(np.random.default_rng(7), noise=False, cfa_pattern="RGGB")
    card.mkdir(parents=True, exist_ok=True)
    for i in range(frames):
        name = f"IMG_{i:04d}"
        if (card / f"{name}.JPG").is_file():
            continue
        srgb = scene(photos, i, height, width)
        mosaic = unprocess(srgb, params, np.random.default_rng(i))
        write_bayer_dng(card / f"{name}.dng", mosaic, params.cfa_pattern, black_level=params.black_level,
                        white_level=params.white_level, color_matrix1=np.asarray(params.xyz_to_camera),
                        as_shot_neutral=params.as_shot_neutral, make="Benchmark", model="Card")
        buffer = io.BytesIO()
        Image.fromarray((simple_look(srgb) * 255 + 0.5).astype(np.uint8)).save(buffer, format="JPEG", quality=92)
        (card / f"{name}.JPG").write_bytes(buffer.getvalue())
        print(f"card: {i + 1}/{frames} ({width}×{height})", file=sys.stderr)


def run_learn(card: Path, run: Path, threads: int, extra: list[str]) -> tuple[float, dict, float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "RAW2RGB_PROFILE_DIR": str(run.parent / "profiles")}
    command = [sys.executable, "-m", "raw2rgb_cli.main", "learn", str(card), "--profile-name", "bench-card",
               "-o", str(run), "--overwrite", "--json", "--quiet", *extra]
    t0 = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *command], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"raw2rgb learn failed:\n{done.stderr[-3000:]}")
    peak_gib = int(done.stderr.strip().splitlines()[-1]) / 2**20
    return seconds, json.loads(done.stdout), peak_gib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--megapixels", type=float, default=24.0)
    parser.add_argument("--card", type=Path, default=Path("/tmp/raw2rgb-learn-card"), help="where the card is made (kept)")
    parser.add_argument("--run", type=Path, help="learn's run folder (default: CARD-run, replaced)")
    parser.add_argument("--rgb", type=Path, default=ROOT.parent / "shared" / "data" / "rgb")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("learn_args", nargs="*", help="passed to raw2rgb learn (after --)")
    args = parser.parse_args()

    card = args.card / f"{args.frames}x{args.megapixels:g}MP"
    make_card(card, args.frames, args.megapixels, args.rgb)
    run = args.run or card.parent / f"{card.name}-run"
    if run.exists():
        import shutil

        shutil.rmtree(run)
    seconds, report, peak = run_learn(card, run, args.threads, args.learn_args)
    phases = report["seconds"]
    scores = report["scores"]["mean"]
    print(f"raw2rgb learn, {args.frames} × {args.megapixels:g} MP RAW+JPEG, {args.threads} threads "
          f"({os.cpu_count()} CPUs), {report['files']['used']} used / {len(report['scores']['frames'])} scored")
    print("| phase | seconds |\n|---|---|")
    for name, value in phases.items():
        print(f"| {name} | {value:.1f} |")
    print(f"| **whole command** (wall clock, incl. start-up) | **{seconds:.1f}** ({seconds / 60:.1f} min) |")
    print(f"\npeak memory {peak:.2f} GiB; held-out PSNR / ΔE2000: " + ", ".join(
        f"{m} {v['psnr']:.2f} / {v['delta_e2000']:.2f}" for m, v in scores.items()))


if __name__ == "__main__":
    main()
