"""Scene-linear profiles (`--format dng`) against the classical linear demosaics, in one run.

    python benchmarks/develop_report.py --profiles develop-lite --out docs/QUALITY-develop.md

What a DNG should hold is the camera's own image, demosaiced and denoised, nothing else. So the
ground truth of each held-out frame (`heldout.py`: the scikit-image wheel's photographs, never
trained on, one random camera per tile, every Bayer order, clean and darktable's median camera
at ISO 100, 1600 and 12800) is the clean camera image the synthetic mosaic sampled, and every
method is scored on the same finishing: white balance, the camera matrix, the sRGB encoding —
no tone curve, since a DNG's look is the raw converter's business.

Methods: each profile through the engine exactly as `convert --format dng` writes it (the
camera-native pixels before the file is written, noise estimated from each file); LibRaw AHD
(rawpy, camera RGB out, linear); and the two linear demosaics the profiles blend with, each alone
(a gated base with its gate shut): the fitted one of `lsq-linear-gated` (develop-lite's since
2026-12-06) and Malvar–He–Cutler (`mhc-linear-gated`, earlier profiles'). Scores: PSNR and
median CIEDE2000 against the truth.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from raw2rgb_plugin.engine.converter import Converter, decode  # noqa: E402
from raw2rgb_plugin.engine.jobs import ConvertJob  # noqa: E402
from raw2rgb_plugin.models.g1 import G1, G1Config  # noqa: E402
from raw2rgb_plugin.profiles.store import Profile, load_profile, save_profile  # noqa: E402
from raw2rgb_plugin.training.color_difference import median_delta_e2000  # noqa: E402
from raw2rgb_plugin.training.data.unprocess import UnprocessParams, protected_inverse_gains, scene_linear  # noqa: E402

import classical  # noqa: E402
from heldout import build_cases, held_out_images, noise_text  # noqa: E402
from quality_common import fmt_table  # noqa: E402

LEVELS = ["none", "iso100", "iso1600", "iso12800"]


def truth_camera_rgb(srgb: np.ndarray, camera: dict) -> np.ndarray:
    """The clean, white-balanced camera image the synthetic mosaic sampled (as `unprocess` makes it)."""
    params = UnprocessParams(**{**camera, "xyz_to_camera": tuple(map(tuple, camera["xyz_to_camera"]))})
    native = np.clip(scene_linear(srgb, params) @ params.camera_from_srgb.T, 0.0, 1.0)
    native = np.clip(protected_inverse_gains(native, params), 0.0, 1.0)
    return native * params.wb_gains_rgb


def classical_develop_profile(folder: Path, base: str = "mhc-linear-gated") -> Path:
    """A scene-linear profile whose gate is shut: its image is its linear classical base alone
    (Malvar–He–Cutler, or with "lsq-linear-gated" the fitted demosaic)."""
    model = G1(G1Config(width=8, spectral_norm=False, residual_base=base, noise_channels=4)).eval()
    with torch.no_grad():
        model.d4.conv.weight[12:].zero_()
        model.d4.conv.bias[12:].fill_(-40.0)
    return save_profile(folder / f"{base}.safetensors", model, {
        "input_normalization": "wb-headroom", "output_color_space": "camera-linear", "output": "scene-linear"})


def profile_renderer(profile: Profile):
    converter = Converter(profile, device="cpu", output_format="dng")

    def render(path: Path, decoded) -> np.ndarray:  # white-balanced camera RGB, like the truth
        native = converter.render(decoded.frame, noise=decoded.noise).astype(np.float64) / 65535.0
        return native * np.asarray(decoded.frame.wb_gains_rgb, dtype=np.float64)

    return render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default="develop-lite", help="comma-separated scene-linear profiles")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--tiles-per-image", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    parser.add_argument("--skimage-wheel", type=Path)
    parser.add_argument("--images", type=Path, help="use these PNG/JPEG images as the held-out set instead")
    parser.add_argument("--json", type=Path, help="also write every score as JSON here (tools/pick_winner.py reads it)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        renderers = {f"raw2rgb {name}": profile_renderer(load_profile(name)) for name in args.profiles.split(",")}
        for base, label in (("lsq-linear-gated", "fitted linear demosaic (develop-lite's base)"),
                            ("mhc-linear-gated", "linear MHC (earlier profiles' base)")):
            renderers[label] = profile_renderer(load_profile(classical_develop_profile(work, base)))
        renderers["LibRaw AHD"] = lambda path, decoded: classical.libraw_camera_rgb(path, decoded.frame, "AHD")
        cases = build_cases(held_out_images(args.images, args.skimage_wheel), work, tile=args.tile,
                            tiles_per_image=args.tiles_per_image, noise_levels=LEVELS)
        scores: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for case in cases:
            decoded = decode(ConvertJob(case.dng, work / "unused"), with_noise=True)
            truth = classical.finish_rendering(truth_camera_rgb(case.truth, case.camera), decoded.frame, tone_curve=False)
            for name, render in renderers.items():
                out = classical.finish_rendering(render(case.dng, decoded), decoded.frame, tone_curve=False)
                mse = float(np.mean((out - truth) ** 2))
                scores.setdefault((name, case.noise), []).append((10 * np.log10(1 / max(mse, 1e-10)),
                                                                  median_delta_e2000(out, truth)))
    rows = [[name, *(f"{np.mean([s[0] for s in scores[(name, level)]]):.2f} / "
                     f"{np.mean([s[1] for s in scores[(name, level)]]):.2f}" for level in LEVELS)]
            for name in renderers]
    lines = ["# Scene-linear profiles (`convert --format dng`)", "",
             "Regenerated by `benchmarks/develop_report.py` (see its docstring for the method).", "",
             f"Held-out frames: {len(cases) // len(LEVELS)} per level ({args.tile} px tiles of the scikit-image "
             f"photographs, four Bayer orders); PSNR (dB) / median ΔE2000 against the clean camera image, "
             f"both finished with white balance, camera matrix and sRGB encoding (no tone curve).", "",
             *fmt_table(["method", *(noise_text(level) for level in LEVELS)], rows), "",
             f"`python benchmarks/develop_report.py --profiles {args.profiles}`, {time.perf_counter() - started:.0f} s."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"scores": [{"method": name, "noise": level, "psnr": round(float(p), 3),
                                                     "delta_e2000": round(float(d), 3)}
                                                    for (name, level), values in scores.items() for p, d in values]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
