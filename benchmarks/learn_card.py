"""`raw2rgb learn` on synthetic cards of RAW+JPEG pairs: its time end to end, and its scores
against its own curve + 3D LUT on a battery of camera looks (benchmarks/looks.py).

    python benchmarks/learn_card.py                          # 100 × 24 MP, the global look, timed
    python benchmarks/learn_card.py --looks all --frames 24 --megapixels 1   # the battery

The card: `--frames` DNGs of `--megapixels` (3:2), one fixed camera (unprocessed from the sRGB
photographs of ../shared/data/rgb, scaled up and cropped, a different crop and flip per frame),
each with the look's rendering as a full-size JPEG (quality 92): a sidecar, as RAW+JPEG shooting
gives, on even frames, the DNG's embedded preview on odd ones (`--sidecar-only`: sidecars only).
Making the card is not timed; `raw2rgb learn` runs as a user runs it (a subprocess, on
`--threads` CPU threads), and the tables give its phases and its held-out scores from the run's
own report.json: the base profile, the curve + 3D LUT and the learned profile (which carries that
LUT and learns through it) against the camera's JPEGs.
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

sys.path.insert(0, str(ROOT / "benchmarks"))

from raw2rgb_plugin.io.dng_write import write_bayer_dng  # noqa: E402
from raw2rgb_plugin.training.data.images import load_rgb  # noqa: E402
from raw2rgb_plugin.training.data.sources import find_images  # noqa: E402
from raw2rgb_plugin.training.data.unprocess import random_params, unprocess  # noqa: E402

from looks import LOOKS  # noqa: E402


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


def make_card(card: Path, frames: int, megapixels: float, rgb_dir: Path, look: str, sidecar_only: bool) -> None:
    width = int(round((megapixels * 1e6 * 1.5) ** 0.5 / 16) * 16)
    height = int(round(width / 1.5 / 16) * 16)
    photos = find_images(rgb_dir)
    params = random_params(np.random.default_rng(7), noise=False, cfa_pattern="RGGB")
    card.mkdir(parents=True, exist_ok=True)
    for i in range(frames):
        name = f"IMG_{i:04d}"
        if (card / f"{name}.JPG").is_file():
            continue
        if (card / f"{name}.dng").is_file() and i % 2 and not sidecar_only:
            continue
        srgb = scene(photos, i, height, width)
        mosaic = unprocess(srgb, params, np.random.default_rng(i))
        buffer = io.BytesIO()
        Image.fromarray((LOOKS[look](srgb) * 255 + 0.5).astype(np.uint8)).save(buffer, format="JPEG", quality=92)
        embedded = bool(i % 2) and not sidecar_only
        write_bayer_dng(card / f"{name}.dng", mosaic, params.cfa_pattern, black_level=params.black_level,
                        white_level=params.white_level, color_matrix1=np.asarray(params.xyz_to_camera),
                        as_shot_neutral=params.as_shot_neutral, make="Benchmark", model="Card",
                        preview_jpeg=buffer.getvalue() if embedded else None)
        if not embedded:
            (card / f"{name}.JPG").write_bytes(buffer.getvalue())
        print(f"card: {i + 1}/{frames} ({width}×{height}, {look}, {'embedded' if embedded else 'sidecar'})",
              file=sys.stderr)


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
    parser.add_argument("--looks", default="global", help=f"comma-separated, or all: {', '.join(LOOKS)}")
    parser.add_argument("--sidecar-only", action="store_true", help="every frame with a sidecar JPEG (no embedded previews)")
    parser.add_argument("learn_args", nargs="*", help="passed to raw2rgb learn (after --)")
    args = parser.parse_args()

    looks = list(LOOKS) if args.looks == "all" else args.looks.split(",")
    summary = []
    for look in looks:
        card = args.card / f"{look}-{args.frames}x{args.megapixels:g}MP{'-sidecar' if args.sidecar_only else ''}"
        make_card(card, args.frames, args.megapixels, args.rgb, look, args.sidecar_only)
        run = args.run / look if args.run else card.parent / f"{card.name}-run"
        if run.exists():
            import shutil

            shutil.rmtree(run)
        seconds, report, peak = run_learn(card, run, args.threads, args.learn_args)
        print_run(args, look, seconds, report, peak)
        summary.append((look, report))
    print_summary(summary)


def print_run(args: argparse.Namespace, look: str, seconds: float, report: dict, peak: float) -> None:
    scores = report["scores"]["mean"]
    print(f"\nraw2rgb learn, look {look!r}: {args.frames} × {args.megapixels:g} MP RAW+JPEG ({report['files']['sources']}), "
          f"{args.threads} threads ({os.cpu_count()} CPUs), {report['files']['used']} used / "
          f"{len(report['scores']['frames'])} held out")
    print("| phase | seconds |\n|---|---|")
    for name, value in report["seconds"].items():
        print(f"| {name} | {value:.1f} |")
    print(f"| **whole command** (wall clock, incl. start-up) | **{seconds:.1f}** ({seconds / 60:.1f} min) |")
    print(f"\npeak memory {peak:.2f} GiB; held-out PSNR / ΔE2000: " + ", ".join(
        f"{m} {v['psnr']:.2f} / {v['delta_e2000']:.2f}" for m, v in scores.items())
        + f"; weights of step {report['finetune'].get('chosen_step')}")


def print_summary(runs: list[tuple[str, dict]]) -> None:
    """One row per look: held-out means, and what the learned profile adds to its own LUT."""
    print("\n| look | base dB / ΔE | curve + LUT dB / ΔE | learned dB / ΔE | learned − LUT dB | weights of step |")
    print("|---|---|---|---|---|---|")
    for look, report in runs:
        m = report["scores"]["mean"]
        cells = [f"{m[k]['psnr']:.2f} / {m[k]['delta_e2000']:.2f}" for k in ("base", "lut", "learned")]
        gain = m["learned"]["psnr"] - m["lut"]["psnr"]
        print(f"| {look} | {' | '.join(cells)} | {gain:+.2f} | {report['finetune'].get('chosen_step')} |")


if __name__ == "__main__":
    main()
