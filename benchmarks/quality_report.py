"""Regenerate `docs/QUALITY.md`: raw2rgb profiles vs the classical pipeline, measured in one run.

    python benchmarks/quality_report.py                                   # default, default-lite
    python benchmarks/quality_report.py --profiles default --device cuda
    python benchmarks/quality_report.py --profiles run/x.safetensors --quick --out /tmp/q.md

**Held-out set** (`heldout.py`). Photographs no profile trains on (profiles train on Kodak24 and
McMaster): the public-domain and CC0 colour photographs bundled in scikit-image's wheel (read
from the wheel as a zip; scikit-image is not needed), cut into tiles. Each tile gets one random
camera (seeded) and is unprocessed into DNGs at four synthetic noise levels and three
camera-realistic ones (darktable's median camera at ISO 100, 1600, 12800) × the four Bayer
orders; the tile itself is the ground truth.

**Methods**, each scored with `raw2rgb_plugin.pipeline.metrics` (PSNR, SSIM on sRGB in [0, 1]):
each profile through the engine as `raw2rgb convert` runs it (noise-aware profiles are told the
noise the engine estimates from each file); LibRaw AHD and DHT and demosaicnet (Gharbi et al.
2016), each followed by the same white balance, camera matrix and tone curve (`classical.py`),
so only the rendering differs.

**Clean demosaicking on Kodak24 + McMaster18** (`literature.py`), the protocol papers report:
each whole test image (../shared/data/rgb) unprocessed with one random camera, RGGB, no noise,
every method in the same run (demosaicnet included unless `--no-demosaicnet`); `--no-literature`
leaves it out, `--quick` takes one image per set.

**X-Trans** (`quality_xtrans.py`, issue 25): the same tiles and cameras unprocessed into X-Trans
DNGs at the same noise levels (two real phases; one with `--quick`), each tile inside a 520-px
window (LibRaw's X-Trans code refuses frames under 512 px); each `--xtrans-profiles` profile
(default: the installed ones), LibRaw's X-Trans rendering (3-pass Markesteijn) and demosaicnet's
X-Trans model, display profiles scored as above, scene-linear ones as `develop_report.py` scores
the Bayer develop profiles; the Bayer profiles on a clean Bayer DNG of the same windows, for
"within 1 dB of Bayer". `--no-xtrans` leaves it out.

**Real photographs** (`real_photos.py`): the camera RAWs of `../shared/data/raw`, where present,
measured for detail and flat-region noise against LibRaw AHD. They are CC BY-NC-SA ("tests
only"), so their crops are written only with `--real-raw-previews DIR`, outside docs/.

**Pictures** (docs/quality/*.png, `quality_pictures.py`): held-out crops, and the real sensor
mosaic of `../shared/data/sensor` (MIT).

Cost: 196 frames of 256×256 (7 tiles × 7 levels × 4 orders) and the two real files; with
`default-lite` alone 10 min on one thread of two busy CPU cores (OMP_NUM_THREADS=1), most of it
SSIM (float64 11×11 convolutions), demosaicnet and the profiles.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from raw2rgb_plugin.engine.converter import decode  # noqa: E402
from raw2rgb_plugin.engine.jobs import ConvertJob  # noqa: E402
from raw2rgb_plugin.errors import Raw2RgbError  # noqa: E402
from raw2rgb_plugin.io.raw_file import decode_raw  # noqa: E402

import classical  # noqa: E402
import literature  # noqa: E402
import quality_targets  # noqa: E402
import quality_xtrans  # noqa: E402
import real_mosaic  # noqa: E402
import real_photos  # noqa: E402
from heldout import NOISE_LEVELS, SYNTHETIC_LEVELS, XTRANS_PHASES, Case, build_cases, held_out_images  # noqa: E402
from quality_common import AHD, DEMOSAICNET, DHT, Method, score  # noqa: E402
from quality_markdown import Run, summarise, synthetic_rows, write_report  # noqa: E402
from quality_pictures import heldout_picture, labelled_strip, real_file_panels  # noqa: E402
from skimage_wheel import SKIMAGE_VERSION, WheelError  # noqa: E402

TILE = 256
TILES_PER_IMAGE = 2
QUICK_TILE = 64
QUICK_NOISE = ("none", "high", "iso1600")
#: Quick runs measure a centre part of each real RAW, not the whole frame.
QUICK_REAL_SIDE = 384
REAL_CROP = 192


# --------------------------------------------------------------------------------------------
# methods


def profile_methods(names: list[str], device: str) -> list[Method]:
    from raw2rgb_plugin.engine.converter import Converter
    from raw2rgb_plugin.profiles.store import load_profile

    methods = []
    for name in names:
        profile = load_profile(name)
        converter = Converter(profile, device=device)  # --denoise 1, convert's default

        def render(path, frame, noise, converter=converter) -> np.ndarray:
            return converter.render(frame, noise=noise).astype(np.float64) / 65535.0

        params = sum(p.numel() for p in profile.model.parameters())
        methods.append(Method(f"raw2rgb {profile.name}", "profile", render, {
            "profile": profile.name, "path": str(profile.path), "metadata": profile.metadata, "parameters": params,
            "device": str(converter.device), "dtype": str(converter.dtype).replace("torch.", ""),
            "reads_noise": converter.reads_noise}, converter))
    return methods


def classical_methods(device: str, demosaicnet: bool) -> tuple[list[Method], str | None]:
    methods = [
        Method(algorithm_name, "classical",
               lambda path, frame, noise, a=algorithm: classical.finish_rendering(
                   classical.libraw_camera_rgb(path, frame, a), frame))
        for algorithm, algorithm_name in (("AHD", AHD), ("DHT", DHT))
    ]
    if not demosaicnet:
        return methods, "demosaicnet was left out (--no-demosaicnet)"
    if not classical.demosaicnet_available():
        return methods, "demosaicnet is not installed (`pip install '.[quality]'`), so it was not measured"
    net = classical.DemosaicNet("cuda" if device.startswith("cuda") and torch.cuda.is_available() else "cpu")
    methods.append(Method(DEMOSAICNET, "classical",
                          lambda path, frame, noise: classical.finish_rendering(net.camera_rgb(frame), frame),
                          {"version": net.version, "device": str(net.device)}))
    return methods, None


# --------------------------------------------------------------------------------------------
# measuring


def decode_case(case: Case, with_noise: bool):
    """(frame, noise model or None), decoded as `raw2rgb convert` decodes the file."""
    if not with_noise:
        return decode_raw(case.dng), None
    decoded = decode(ConvertJob(case.dng, case.dng), with_noise=True)
    return decoded.frame, decoded.noise


def measure(cases: list[Case], methods: list[Method], *, keep: Callable[[Case], bool],
            progress: Callable[[str], None]) -> tuple[list[dict], dict, list[dict]]:
    """(score rows, kept renders, the noise estimate of each case where a profile reads it)."""
    rows, renders, estimates = [], {}, []
    with_noise = any(m.reads_noise for m in methods)
    # One untimed run each, so first-call costs (kernel selection, thread pools) stay out.
    warm_frame, warm_noise = decode_case(cases[0], with_noise)
    for method in methods:
        method.render(cases[0].dng, warm_frame, warm_noise)
    start = time.perf_counter()
    for k, case in enumerate(cases):
        frame, noise = decode_case(case, with_noise)
        if noise is not None:
            estimates.append({"image": case.image, "tile": case.tile, "noise": case.noise, "cfa": case.cfa,
                              "a": noise.shot, "b": noise.read, "source": noise.source})
        for method in methods:
            t0 = time.perf_counter()
            rgb = method.render(case.dng, frame, noise)
            seconds = time.perf_counter() - t0
            if rgb.shape != case.truth.shape:
                raise RuntimeError(f"{method.name} rendered {rgb.shape} for a {case.truth.shape} tile")
            p, s = score(rgb, case.truth)
            rows.append({"image": case.image, "tile": case.tile, "noise": case.noise, "cfa": case.cfa,
                         "method": method.name, "psnr": p, "ssim": s, "seconds": seconds})
            if keep(case):
                renders[(case.image, case.tile, case.noise, case.cfa, method.name)] = rgb
        if (k + 1) % 8 == 0 or k + 1 == len(cases):
            progress(f"{k + 1}/{len(cases)} frames, {time.perf_counter() - start:.0f} s")
    return rows, renders, estimates


def all_targets(rows: list[dict], methods: list[Method], photos: list, raw_dir: Path,
                xtrans: quality_xtrans.XTransRun | None = None,
                literature_means: dict | None = None) -> list[tuple[str, list]]:
    overall = summarise(synthetic_rows(rows), lambda r: None)
    by_noise = summarise(rows, lambda r: r["noise"])
    extra = [] if xtrans is None else [
        ("X-Trans, held-out set (issue 25; see the X-Trans section):",
         quality_xtrans.target_lines(xtrans, xtrans_levels(xtrans)))]
    return [
        ("Mean PSNR over the held-out set's four synthetic noise levels (issue 4):",
         quality_targets.target_lines(overall, methods)),
        ("Noise-aware rendering, held-out set (issue \"noise-aware rendering\"; for each `default-lite`-like "
         "profile: `default-lite…` or a lite-variant candidate):",
         quality_targets.noise_aware_lines(overall, by_noise, methods)),
        ("Base-ISO quality (issue 20; camera-realistic levels of the held-out set, and the literature's test sets):",
         quality_targets.base_iso_lines(by_noise, literature_means, methods)),
        ("Noise-aware rendering, real files at base ISO (see Real photographs):",
         real_photos.target_lines(photos, methods, raw_dir=raw_dir)),
        *extra,
    ]


def xtrans_profile_names(args: argparse.Namespace) -> list[str]:
    if args.xtrans_profiles is None:
        return quality_xtrans.default_profiles()
    text = args.xtrans_profiles.strip()
    return [] if text.lower() in ("", "none") else [p.strip() for p in text.split(",") if p.strip()]


def xtrans_levels(run: quality_xtrans.XTransRun) -> list[str]:
    return [n for n in NOISE_LEVELS if any(c.noise == n for c in quality_xtrans.xtrans_rows_cases(run.cases))]


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Regenerate docs/QUALITY.md (see the module docstring).")
    parser.add_argument("--profiles", default="default,default-lite",
                        help="comma-separated profile names or .safetensors paths; 'none' for baselines only")
    parser.add_argument("--device", default="auto", help="device for the profiles: auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--quick", action="store_true",
                        help=f"one image, one {QUICK_TILE}px tile, noise {'/'.join(QUICK_NOISE)}, a "
                             f"{QUICK_REAL_SIDE}px part of each real RAW: seconds, for tests")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "QUALITY.md")
    parser.add_argument("--pictures", type=Path, help="folder for the PNGs (default: quality/ beside --out)")
    parser.add_argument("--skimage-wheel", type=Path,
                        help=f"a scikit_image-{SKIMAGE_VERSION} wheel (default: cached or pip-downloaded)")
    parser.add_argument("--images", type=Path, help="use these PNG/JPEG images as the held-out set instead")
    parser.add_argument("--tile", type=int, default=TILE, help="tile side in pixels")
    parser.add_argument("--tiles-per-image", type=int, default=TILES_PER_IMAGE)
    parser.add_argument("--no-demosaicnet", action="store_true", help="leave demosaicnet out")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data",
                        help="shared data folder (real mosaic and RAWs); what is absent is skipped")
    parser.add_argument("--real-raw-previews", type=Path,
                        help="also write 1:1 crops of the CC BY-NC-SA camera RAWs into this folder (not docs/)")
    parser.add_argument("--json", type=Path, help="also write every score, camera and timing as JSON here")
    parser.add_argument("--xtrans-profiles", default=None,
                        help="comma-separated X-Trans profiles for the X-Trans section; 'none' for baselines only "
                             f"(default: those of {', '.join(quality_xtrans.DEFAULT_XTRANS_PROFILES)} installed)")
    parser.add_argument("--no-xtrans", action="store_true", help="leave out the X-Trans section")
    parser.add_argument("--no-literature", action="store_true",
                        help="leave out clean demosaicking on Kodak24 + McMaster18 (SHARED/rgb)")
    return parser.parse_args(argv)


def mosaic_picture(args, methods: list[Method], workdir: Path, pictures_dir: Path, notes: list[str]) -> Path | None:
    sensor = args.shared / "sensor"
    if not (sensor / real_mosaic.MOSAIC_FILE).is_file():
        notes.append(f"{sensor} is absent: no picture of the real mosaic")
        return None
    dng = real_mosaic.write_real_mosaic_dng(sensor, workdir / "bayer_small.dng")
    panels, _ = real_file_panels(dng, methods, REAL_CROP)
    out = pictures_dir / "real-mosaic-bayer_small.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    labelled_strip(panels).save(out, optimize=True)
    return out


def write_json(path: Path, run: Run) -> None:
    noise = [n for n in NOISE_LEVELS if any(c.noise == n for c in run.cases)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "command": run.argv, "seconds": round(run.elapsed, 1), "device": run.device,
        "noise_levels": {n: NOISE_LEVELS[n] for n in noise}, "synthetic_levels": list(SYNTHETIC_LEVELS),
        "methods": [{"name": m.name, "kind": m.kind, **{k: v for k, v in m.info.items() if k != "metadata"}}
                    for m in run.methods],
        "cases": [{"image": c.image, "tile": c.tile, "box": list(c.box), "noise": c.noise, "cfa": c.cfa, "camera": c.camera}
                  for c in run.cases],
        "scores": run.rows, "noise_estimates": run.estimates,
        "real_photos": real_photos.json_summary(run.photos),
        "targets": [{"group": heading, "passed": ok, "text": text} for heading, lines in run.targets for ok, text in lines],
        "xtrans": None if run.xtrans is None else quality_xtrans.json_summary(run.xtrans),
    }, indent=1))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    started = time.perf_counter()

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    pictures_dir = args.pictures or args.out.parent / "quality"
    names = [] if args.profiles.strip().lower() in ("", "none") else [p.strip() for p in args.profiles.split(",") if p.strip()]
    try:
        images = held_out_images(args.images, args.skimage_wheel)
        methods = profile_methods(names, args.device)
        device = next((m.info["device"] for m in methods if m.kind == "profile"), "cpu")
        xtrans = None if args.no_xtrans else quality_xtrans.section_methods(
            xtrans_profile_names(args), args.device if args.device != "auto" else device, not args.no_demosaicnet)
    except (WheelError, Raw2RgbError) as exc:
        say(f"error: {exc}")
        return 1
    extra, note = classical_methods(device, not args.no_demosaicnet)
    methods += extra
    notes = [note] if note else []

    tile, tiles_per_image, noise = args.tile, args.tiles_per_image, list(NOISE_LEVELS)
    if args.quick:
        images, tile, tiles_per_image, noise = images[:1], QUICK_TILE, 1, list(QUICK_NOISE)
    with tempfile.TemporaryDirectory(prefix="raw2rgb-quality-") as tmp:
        workdir = Path(tmp)
        say(f"writing held-out DNGs ({len(images)} images) …")
        cases = build_cases(images, workdir, tile=tile, tiles_per_image=tiles_per_image, noise_levels=noise)
        first = cases[0]
        keep = lambda c: (c.image, c.tile, c.cfa) == (first.image, first.tile, "GRBG")  # noqa: E731
        say(f"rendering {len(cases)} frames × {len(methods)} methods …")
        rows, renders, estimates = measure(cases, methods, keep=keep, progress=say)
        pictures: dict[str, Path] = {}
        for key, made in (("heldout", heldout_picture(cases, renders, methods, pictures_dir / f"heldout-{first.image}.png")),
                          ("mosaic", mosaic_picture(args, methods, workdir, pictures_dir, notes))):
            if made:
                pictures[key] = made

        literature_means = None
        sets = {} if args.no_literature else literature.literature_images(args.shared / "rgb")
        if args.quick:
            sets = {name: images[:1] for name, images in sets.items()}
        if sets:
            say(f"literature protocol: {sum(len(v) for v in sets.values())} whole images, clean …")
            lit_rows, _, _ = measure(literature.literature_cases(sets, workdir), methods, keep=lambda c: False,
                                     progress=say)
            literature_means = literature.summary(lit_rows)
        xtrans_run = None if xtrans is None else quality_xtrans.run_section(
            images, workdir, tile=tile, tiles_per_image=tiles_per_image, noise_levels=noise,
            phases=XTRANS_PHASES[:1] if args.quick else XTRANS_PHASES, methods=xtrans[0], notes=xtrans[1],
            bayer_methods=methods, say=say)

    raw_dir = args.shared / "raw"
    photos = []
    if raw_dir.is_dir():
        photos, real_notes = real_photos.run(raw_dir, methods, crops_dir=args.real_raw_previews,
                                             max_side=QUICK_REAL_SIDE if args.quick else None, say=say)
        notes += real_notes
    else:
        notes.append(f"{raw_dir} is absent: no real-photo measures")
    run = Run(argv=argv, device=device, images=images, cases=cases, methods=methods, rows=rows, estimates=estimates,
              targets=all_targets(rows, methods, photos, raw_dir, xtrans_run, literature_means), notes=notes, pictures=pictures,
              photos=photos, raw_dir=raw_dir if raw_dir.is_dir() else None, crops_dir=args.real_raw_previews,
              quick=args.quick, xtrans=xtrans_run)
    run.elapsed = time.perf_counter() - started
    write_report(args.out, run)
    if literature_means:
        command = "python benchmarks/quality_report.py " + " ".join(argv)
        with args.out.open("a") as report:
            report.write("\n" + "\n".join(literature.markdown(literature_means, command.strip())))
    if args.json:
        write_json(args.json, run)
        if literature_means:
            document = json.loads(args.json.read_text())
            document["literature"] = literature_means
            args.json.write_text(json.dumps(document, indent=1))
    print_summary(run)
    print(f"wrote {args.out} ({run.elapsed:.0f} s)")
    return 0


def print_summary(run: Run) -> None:
    overall = summarise(synthetic_rows(run.rows), lambda r: None)
    width = max(len(m.name) for m in run.methods)
    for m in run.methods:
        p, s, sec, _ = overall[(None, m.name)]
        print(f"{m.name:<{width}}  PSNR {p:6.2f} dB  SSIM {s:.4f}  {sec:.3f} s/frame")
    if run.xtrans is not None:
        for basis in (quality_xtrans.DISPLAY, quality_xtrans.SCENE_LINEAR):
            table = quality_xtrans.means(quality_xtrans.xtrans_rows(run.xtrans.rows), basis, lambda r: None)
            for (_, name), (p, s, _) in table.items():
                print(f"X-Trans {basis}: {name}  PSNR {p:6.2f} dB  SSIM {s:.4f}")
    for _, lines in run.targets:
        for ok, text in lines:
            print(f"{'PASS' if ok else ('FAIL' if ok is False else 'n/a ')}  {text}")


if __name__ == "__main__":
    sys.exit(main())
