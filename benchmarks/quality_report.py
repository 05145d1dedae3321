"""Regenerate `docs/QUALITY.md`: raw2rgb profiles vs the classical pipeline, measured in one run.

    python benchmarks/quality_report.py                                   # default, default-lite
    python benchmarks/quality_report.py --profiles default --device cuda
    python benchmarks/quality_report.py --profiles run/x.safetensors --quick --out /tmp/q.md

**Held-out set.** Photographs no profile trains on (profiles train on Kodak24 and McMaster): the
public-domain and CC0 colour photographs bundled in scikit-image's wheel (read from the wheel as
a zip; scikit-image is not needed), cut into tiles. Each tile gets one random camera (seeded) and
is unprocessed (`raw2rgb_plugin.training.data.unprocess`) at four fixed noise levels × the four Bayer orders into
DNGs; the tile itself is the ground truth.

**Methods**, each scored with `raw2rgb_plugin.training.metrics` (PSNR, SSIM on sRGB in [0, 1]):
each profile through the engine (`Converter.render`); LibRaw AHD and DHT and demosaicnet (Gharbi
et al. 2016), each followed by the same white balance, camera matrix and tone curve
(`classical.py`), so only the rendering differs.

**Pictures** (docs/quality/*.png): held-out crops, and the real sensor mosaic of
`../shared/data/sensor` (MIT). The real camera RAWs of `../shared/data/raw` are CC BY-NC-SA
("tests only"), so their crops are written only with `--real-raw-previews DIR`, outside docs/.

Cost: 112 frames of 256×256 (7 tiles × 16); with `default` and `default-lite` about 15 min on two
busy CPU cores, most of it SSIM (float64 11×11 convolutions) and the two neural baselines.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import classical  # noqa: E402
import real_mosaic  # noqa: E402
from skimage_wheel import SAMPLE_IMAGES, SKIMAGE_VERSION, WheelError, find_or_download_wheel, read_sample_image  # noqa: E402

from raw2rgb_plugin import __version__ as RAW2RGB_VERSION  # noqa: E402
from raw2rgb_plugin.errors import Raw2RgbError  # noqa: E402
from raw2rgb_plugin.training.metrics import psnr, ssim  # noqa: E402
from raw2rgb_plugin.io.raw_file import BayerFrame, decode_raw  # noqa: E402
from raw2rgb_plugin.pipeline.orientation import orient_hwc  # noqa: E402
from raw2rgb_plugin.training.data.unprocess import BAYER_ORDERS, random_params, write_synthetic_dng  # noqa: E402

#: Fixed shot/read pairs on Brooks et al.'s line log read = 2.18 · log shot + 1.2 (without its
#: jitter), spanning their shot range [1e-4, 0.012]; values are variances on [0, 1] signal.
NOISE_LEVELS: dict[str, tuple[float, float]] = {
    "none": (0.0, 0.0),
    "low": (1e-4, float(np.exp(2.18 * np.log(1e-4) + 1.2))),
    "medium": (1e-3, float(np.exp(2.18 * np.log(1e-3) + 1.2))),
    "high": (1e-2, float(np.exp(2.18 * np.log(1e-2) + 1.2))),
}
HELD_OUT_IMAGES = ("astronaut", "coffee", "chelsea", "rocket")
SEED = 4
TILE = 256
TILES_PER_IMAGE = 2
QUICK_TILE = 64
QUICK_NOISE = ("none", "high")
VISUAL_CROP = 128
VISUAL_NOISE = ("none", "medium", "high")
REAL_CROP = 192
TARGET_MARGIN_DB = 2.0

AHD, DHT, DEMOSAICNET = "LibRaw AHD", "LibRaw DHT", "demosaicnet"


@dataclass
class HeldOutImage:
    name: str
    srgb: np.ndarray  # float64 (H, W, 3) in [0, 1]
    title: str
    licence: str
    source: str


@dataclass
class Case:
    image: str
    tile: int
    box: tuple[int, int, int, int]  # (top, left, height, width) in the source image
    noise: str
    cfa: str
    dng: Path
    truth: np.ndarray  # float64 (H, W, 3)
    camera: dict


@dataclass
class Method:
    name: str
    kind: str  # "profile" or "classical"
    render: Callable[[Case, BayerFrame], np.ndarray]  # float64 (H, W, 3) in [0, 1]
    info: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# held-out test set


def held_out_images(args) -> list[HeldOutImage]:
    if args.images:
        from PIL import Image

        files = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff"))
        if not files:
            raise SystemExit(f"error: {args.images} holds no PNG/JPEG/TIFF images")
        out = []
        for path in files:
            with Image.open(path) as im:
                srgb = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
            out.append(HeldOutImage(path.stem, srgb, path.name, "as its owner states (user-supplied)", str(path)))
        return out
    wheel = find_or_download_wheel(args.skimage_wheel)
    return [HeldOutImage(name, read_sample_image(wheel, name), SAMPLE_IMAGES[name].title, SAMPLE_IMAGES[name].licence,
                         f"`{SAMPLE_IMAGES[name].member}`, scikit-image {SKIMAGE_VERSION} wheel")
            for name in HELD_OUT_IMAGES]


def tile_boxes(height: int, width: int, tile: int, count: int) -> list[tuple[int, int, int, int]]:
    """Up to `count` non-overlapping tile×tile boxes from a centred grid, spread over it."""
    ny, nx = height // tile, width // tile
    if ny == 0 or nx == 0:
        side = min(height, width) // 2 * 2
        return [((height - side) // 2, (width - side) // 2, side, side)]
    y0, x0 = (height - ny * tile) // 2, (width - nx * tile) // 2
    grid = [(y0 + r * tile, x0 + c * tile, tile, tile) for r in range(ny) for c in range(nx)]
    if count == 1:
        return [grid[(len(grid) - 1) // 2]]
    picks = sorted(set(np.linspace(0, len(grid) - 1, min(count, len(grid))).round().astype(int).tolist()))
    return [grid[i] for i in picks]


def build_cases(images: list[HeldOutImage], workdir: Path, *, tile: int, tiles_per_image: int,
                noise_levels: list[str]) -> list[Case]:
    cases = []
    for i, image in enumerate(images):
        for t, box in enumerate(tile_boxes(*image.srgb.shape[:2], tile, tiles_per_image)):
            top, left, h, w = box
            truth = np.ascontiguousarray(image.srgb[top : top + h, left : left + w])
            # One camera per tile: every noise level and CFA order sees the same colours.
            camera = random_params(np.random.default_rng([SEED, i, t]), noise=False)
            for n, noise in enumerate(noise_levels):
                shot, read = NOISE_LEVELS[noise]
                for c, cfa in enumerate(BAYER_ORDERS):
                    params = replace(camera, cfa_pattern=cfa, shot_noise=shot, read_noise=read)
                    dng = workdir / f"{image.name}-t{t}-{noise}-{cfa}.dng"
                    write_synthetic_dng(truth, dng, np.random.default_rng([SEED, i, t, n, c]), params=params,
                                        model=f"held-out {image.name} tile {t}")
                    cases.append(Case(image.name, t, box, noise, cfa, dng, truth, params.to_dict()))
    return cases


# --------------------------------------------------------------------------------------------
# methods


def profile_methods(names: list[str], device: str) -> list[Method]:
    from raw2rgb_plugin.engine.converter import Converter
    from raw2rgb_plugin.profiles.store import load_profile

    methods = []
    for name in names:
        profile = load_profile(name)
        converter = Converter(profile, device=device)

        def render(case: Case, frame: BayerFrame, converter=converter) -> np.ndarray:
            return converter.render(frame).astype(np.float64) / 65535.0

        params = sum(p.numel() for p in profile.model.parameters())
        methods.append(Method(f"raw2rgb {profile.name}", "profile", render, {
            "profile": profile.name, "path": str(profile.path), "metadata": profile.metadata, "parameters": params,
            "device": str(converter.device), "dtype": str(converter.dtype).replace("torch.", "")}))
    return methods


def classical_methods(device: str, demosaicnet: bool) -> tuple[list[Method], str | None]:
    methods = [
        Method(algorithm_name, "classical",
               lambda case, frame, a=algorithm: classical.finish_rendering(classical.libraw_camera_rgb(case.dng, frame, a), frame))
        for algorithm, algorithm_name in (("AHD", AHD), ("DHT", DHT))
    ]
    if not demosaicnet:
        return methods, "demosaicnet was left out (--no-demosaicnet)"
    if not classical.demosaicnet_available():
        return methods, "demosaicnet is not installed (`pip install '.[quality]'`), so it was not measured"
    net = classical.DemosaicNet("cuda" if device.startswith("cuda") and torch.cuda.is_available() else "cpu")
    methods.append(Method(DEMOSAICNET, "classical",
                          lambda case, frame: classical.finish_rendering(net.camera_rgb(frame), frame),
                          {"version": net.version, "device": str(net.device)}))
    return methods, None


# --------------------------------------------------------------------------------------------
# measuring


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]


def score(output: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    out, ref = _tensor(output), _tensor(truth)
    return float(psnr(out, ref)[0]), float(ssim(out, ref)[0])


def measure(cases: list[Case], methods: list[Method], *, keep: Callable[[Case], bool],
            progress: Callable[[str], None]) -> tuple[list[dict], dict]:
    rows, renders = [], {}
    # One untimed run each, so first-call costs (kernel selection, thread pools) stay out.
    warm_frame = decode_raw(cases[0].dng)
    for method in methods:
        method.render(cases[0], warm_frame)
    start = time.perf_counter()
    for k, case in enumerate(cases):
        frame = decode_raw(case.dng)
        for method in methods:
            t0 = time.perf_counter()
            rgb = method.render(case, frame)
            seconds = time.perf_counter() - t0
            if rgb.shape != case.truth.shape:
                raise RuntimeError(f"{method.name} rendered {rgb.shape} for a {case.truth.shape} tile")
            p, s = score(rgb, case.truth)
            rows.append({"image": case.image, "tile": case.tile, "noise": case.noise, "cfa": case.cfa,
                         "method": method.name, "psnr": p, "ssim": s, "seconds": seconds})
            if keep(case):
                renders[(case.image, case.tile, case.noise, case.cfa, method.name)] = rgb
        if (k + 1) % 8 == 0 or k + 1 == len(cases):
            elapsed = time.perf_counter() - start
            progress(f"{k + 1}/{len(cases)} frames, {elapsed:.0f} s")
    return rows, renders


def summarise(rows: list[dict], key: Callable[[dict], object]) -> dict:
    """{(group, method): (mean PSNR, mean SSIM, mean seconds, count)}."""
    groups: dict = defaultdict(list)
    for row in rows:
        groups[(key(row), row["method"])].append(row)
    return {k: (float(np.mean([r["psnr"] for r in v])), float(np.mean([r["ssim"] for r in v])),
                float(np.mean([r["seconds"] for r in v])), len(v)) for k, v in groups.items()}


def target_lines(overall: dict, methods: list[Method]) -> list[tuple[bool | None, str]]:
    """The issue's targets as (passed, text); passed None when a side was not measured."""
    names = {m.info.get("profile"): m.name for m in methods if m.kind == "profile"}
    have = {m.name for m in methods}

    def mean(name: str) -> float:
        return overall[(None, name)][0]

    lines = []
    checks = [("default", AHD, TARGET_MARGIN_DB), ("default", DEMOSAICNET, TARGET_MARGIN_DB), ("default-lite", AHD, 0.0)]
    for profile, baseline, margin in checks:
        want = f"≥ {margin:+.1f} dB" if margin else "> 0 dB"
        label = f"`{profile}` vs {baseline}: target {want} PSNR"
        if profile not in names:
            lines.append((None, f"{label} — not measured (no `{profile}` profile in this run)"))
            continue
        if baseline not in have:
            lines.append((None, f"{label} — not measured ({baseline} is not in this run)"))
            continue
        delta = mean(names[profile]) - mean(baseline)
        passed = delta >= margin if margin else delta > 0
        lines.append((passed, f"{label}: {delta:+.2f} dB ({mean(names[profile]):.2f} vs {mean(baseline):.2f})"))
    return lines


# --------------------------------------------------------------------------------------------
# pictures


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def labelled_strip(panels: list[tuple[str, np.ndarray]], *, title: str | None = None):
    """Panels side by side with a caption band above each (PIL image)."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=11)  # Pillow ≥ 10.1 with FreeType: a real scalable font
    except TypeError:
        font = ImageFont.load_default()
    band, gap = 16, 4
    h = max(p.shape[0] for _, p in panels)
    width = sum(p.shape[1] for _, p in panels) + gap * (len(panels) - 1)
    top = band if title is None else 2 * band
    canvas = Image.new("RGB", (width, h + top), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((2, 2), title, fill=(0, 0, 0), font=font)
    x = 0
    for caption, panel in panels:
        canvas.paste(Image.fromarray(_to_uint8(panel)), (x, top))
        draw.text((x + 2, top - band + 2), caption, fill=(0, 0, 0), font=font)
        x += panel.shape[1] + gap
    return canvas


def stack_rows(rows):
    from PIL import Image

    width = max(r.width for r in rows)
    canvas = Image.new("RGB", (width, sum(r.height for r in rows)), (255, 255, 255))
    y = 0
    for r in rows:
        canvas.paste(r, (0, y))
        y += r.height
    return canvas


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    size = min(size, h, w)
    y, x = (h - size) // 2, (w - size) // 2
    return image[y : y + size, x : x + size]


def heldout_picture(cases: list[Case], renders: dict, methods: list[Method], out: Path) -> Path | None:
    """GT and every method on one held-out tile, one row per noise level."""
    if not renders:
        return None
    image, tile, _, cfa, _ = next(iter(renders))
    rows = []
    for noise in [n for n in NOISE_LEVELS if n in VISUAL_NOISE or n == QUICK_NOISE[-1]]:
        panels = []
        for case in cases:
            if (case.image, case.tile, case.noise, case.cfa) == (image, tile, noise, cfa):
                panels.append(("ground truth", centre_crop(case.truth, VISUAL_CROP)))
                break
        else:
            continue
        for method in methods:
            rgb = renders.get((image, tile, noise, cfa, method.name))
            if rgb is not None:
                p, _ = score(rgb, case.truth)
                panels.append((f"{method.name} {p:.1f} dB", centre_crop(rgb, VISUAL_CROP)))
        rows.append(labelled_strip(panels, title=f"{image}, tile {tile}, {cfa}, noise {_noise_text(noise)}"))
    out.parent.mkdir(parents=True, exist_ok=True)
    stack_rows(rows).save(out, optimize=True)
    return out


def real_file_panels(path: Path, methods: list[Method], crop: int) -> tuple[list[tuple[str, np.ndarray]], BayerFrame]:
    """LibRaw (own sRGB; and + our tone curve) and each profile on a centre crop of a real file."""
    frame = decode_raw(path)
    h, w = frame.mosaic.shape
    size = min(crop, h, w) // 2 * 2
    y0, x0 = (h - size) // 4 * 2, (w - size) // 4 * 2  # even: the crop keeps the CFA phase
    panels = [
        ("LibRaw AHD (its sRGB)", classical.libraw_display(path, frame)[y0 : y0 + size, x0 : x0 + size]),
        ("LibRaw AHD + tone curve", classical.finish_rendering(
            classical.libraw_camera_rgb(path, frame, "AHD")[y0 : y0 + size, x0 : x0 + size], frame)),
    ]
    # Profiles see the crop plus a margin (≥ the engine's tile overlap), not the whole frame.
    margin = 64
    my0, mx0 = max(0, y0 - margin), max(0, x0 - margin)
    sub = replace(frame, mosaic=np.ascontiguousarray(frame.mosaic[my0 : y0 + size + margin, mx0 : x0 + size + margin]), flip=0)
    for method in methods:
        if method.kind == "profile":
            rgb = method.render(None, sub)  # type: ignore[arg-type]
            panels.append((method.name, rgb[y0 - my0 : y0 - my0 + size, x0 - mx0 : x0 - mx0 + size]))
    return [(c, orient_hwc(p, frame.flip)) for c, p in panels], frame


# --------------------------------------------------------------------------------------------
# report


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _noise_text(level: str) -> str:
    shot, read = NOISE_LEVELS[level]
    return f"{level} (quantisation only)" if shot == read == 0 else f"{level} (shot {shot:.0e}, read {read:.1e})"


def _fmt_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def machine_lines(device: str, methods: list[Method]) -> list[str]:
    import rawpy

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    versions = {
        "raw2rgb": RAW2RGB_VERSION, "torch": torch.__version__, "rawpy": getattr(rawpy, "__version__", "?"),
        "LibRaw": getattr(rawpy, "libraw_version", "?"), "numpy": np.__version__, "Python": platform.python_version(),
    }
    dn = next((m for m in methods if m.name == DEMOSAICNET), None)
    if dn is not None:
        versions["demosaicnet"] = dn.info.get("version") or "?"
    if isinstance(versions["LibRaw"], tuple):
        versions["LibRaw"] = ".".join(str(v) for v in versions["LibRaw"])
    return [
        f"- Machine: {platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} logical CPUs "
        f"(torch uses {torch.get_num_threads()} threads), GPU: {gpu}; profiles ran on `{device}`",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
    ]


def profile_lines(methods: list[Method]) -> list[str]:
    rows = []
    for m in methods:
        if m.kind != "profile":
            continue
        meta = m.info["metadata"]
        train = meta.get("training") or {}
        manifest = (train.get("dataset") or {}).get("manifest") or {}
        counts = manifest.get("counts") or {}
        dataset = Path((train.get("dataset") or {}).get("path") or "").name or "?"
        data = f"{dataset} ({manifest.get('kind', '?')}; {counts.get('pairs', '?')} images, " \
               f"{counts.get('train', '?')} train / {counts.get('val', '?')} val patches)" if train else "—"
        val = train.get("validation") or {}
        run = (f"{train.get('steps', '?')} steps, {train.get('epochs_completed', '?')} epochs, on {train.get('device', '?')}"
               f"{'' if train.get('completed', True) else ' (stopped early)'}; {train.get('started', '?')} → {train.get('finished', '?')}"
               + (f"; val {val['psnr']:.2f} dB / {val['ssim']:.4f}" if "psnr" in val and "ssim" in val else "")
               if train else "—")
        rows.append([f"`{m.info['profile']}`", f"{meta.get('variant', '?')} (width {meta['architecture']['width']}, "
                     f"{m.info['parameters'] / 1e6:.2f} M)", f"`{meta.get('input_normalization')}`", data, run,
                     f"`{train['command_line']}`" if train.get("command_line") else (meta.get("description") or "—")])
    if not rows:
        return ["No profile was measured in this run: the tables hold the classical baselines only."]
    return _fmt_table(["profile", "network", "input", "training data", "training run", "command / description"], rows)


def write_report(path: Path, *, argv: list[str], args, images: list[HeldOutImage], cases: list[Case],
                 methods: list[Method], rows: list[dict], notes: list[str], pictures: dict[str, Path],
                 targets: list[tuple[bool | None, str]], elapsed: float) -> None:
    names = [m.name for m in methods]
    overall = summarise(rows, lambda r: None)
    ahd = overall.get((None, AHD), (float("nan"),))[0]
    noise_levels = [n for n in NOISE_LEVELS if any(c.noise == n for c in cases)]
    tiles = sorted({(c.image, c.tile, c.box) for c in cases}, key=lambda t: (HELD_OUT_IMAGES.index(t[0]) if t[0] in HELD_OUT_IMAGES else 99, t[1]))
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python benchmarks/quality_report.py" + ("" if not argv else " " + " ".join(shlex.quote(a) for a in argv))

    md = ["# Quality report", "",
          f"Generated by `{command}` on {date} in {elapsed / 60:.1f} min. "
          "Do not edit by hand: rerun the command (see `benchmarks/quality_report.py --help`).", ""]
    md += machine_lines(args.device, methods)
    md += ["", "## Profiles measured", ""] + profile_lines(methods)
    md += ["", "## Targets", "", "Mean PSNR over the whole held-out set (issue 4):", ""]
    md += [f"- {'**PASS**' if ok else ('**FAIL**' if ok is False else 'n/a')} — {text}" for ok, text in targets]
    md += ["", "## Held-out test set", "",
           f"Every number below comes from this synthetic set and nothing else: {_count(len(tiles), 'tile')} of "
           f"{_count(len(images), 'photograph')} outside the profiles' training data (the shipped profiles train on Kodak24 "
           "and McMaster; see each profile's data above), "
           f"each unprocessed at {len(noise_levels)} noise levels × {len(BAYER_ORDERS)} Bayer orders = "
           f"{len(cases)} DNGs, rendered by {len(methods)} methods ({len(rows)} scores).", ""]
    md += _fmt_table(["image", "source", "licence", "tiles (top, left, h×w)"], [
        [im.name, f"{im.title}; {im.source}", im.licence,
         ", ".join(f"({b[0]}, {b[1]}, {b[2]}×{b[3]})" for n, _, b in tiles if n == im.name)] for im in images])
    md += ["", "- Unprocessing: `raw2rgb_plugin.training.data.unprocess` (Brooks et al. 2019; inverse smoothstep tone curve, "
           "sRGB decode, random mixed real-camera matrix, inverse white balance with highlight protection, 12/14-bit "
           "with a black level); one random camera per tile (seeded), shared by its noise levels and Bayer orders; "
           "written as DNG and decoded by the engine's `decode_raw`.",
           "- Noise levels (variance = shot · x + read on [0, 1] signal): " + ", ".join(
               _noise_text(n) for n in noise_levels) + ".",
           "- Ground truth: the 8-bit sRGB tile. Scores: `raw2rgb_plugin.training.metrics` PSNR and SSIM (11×11 Gaussian, "
           "σ 1.5) on sRGB in [0, 1], whole tile including borders, the same code for every method.", ""]
    md += ["## Methods", "",
           "- **raw2rgb PROFILE**: `Converter(load_profile(PROFILE)).render(decode_raw(dng))`, exactly what "
           "`raw2rgb convert` computes.",
           "- **LibRaw AHD / DHT**: rawpy `postprocess` with the frame's white balance (`user_wb`, the DNG's "
           "as-shot), camera RGB out (`output_color=raw`), linear 16-bit, no auto-brightening, no white-level "
           "adjustment; then the engine's camera→sRGB matrix (`decode_raw(dng).camera_to_srgb`), clip, sRGB curve "
           "and the smoothstep 3x² − 2x³ (the forward of the unprocessing's inverse tone curve).",
           "- **demosaicnet**: Gharbi et al. 2016 (SIGGRAPH Asia), the Bayer weights shipped in the PyPI package; "
           "input the white-balanced mosaic, sRGB-encoded as the network was trained (decoded after), reflect-"
           "padded to its GRBG phase; then the same matrix and tone curve. It demosaicks only (its noise-aware "
           "model was never released for PyTorch), so it does not denoise.", ""]
    md += [f"- Note: {n}" for n in notes]
    if notes:
        md.append("")

    md += ["## Results", "", "### Overall", ""]
    md += _fmt_table(["method", "PSNR (dB)", "Δ vs LibRaw AHD", "SSIM", "s / frame"], [
        [f"**{n}**" if n.startswith("raw2rgb") else n, f"{overall[(None, n)][0]:.2f}", f"{overall[(None, n)][0] - ahd:+.2f}",
         f"{overall[(None, n)][1]:.4f}", f"{overall[(None, n)][2]:.3f}"] for n in names])
    frame_side = tiles[0][2][2] if tiles else 0
    md += ["", f"Seconds per {frame_side}×{frame_side} frame on this machine (render only, decoding excluded; "
           "LibRaw's include opening the file).", ""]
    for title, key, groups in (("By noise level", "noise", noise_levels), ("By Bayer order", "cfa", list(BAYER_ORDERS))):
        table = summarise(rows, lambda r, k=key: r[k])
        md += [f"### {title} (PSNR dB / SSIM)", ""]
        md += _fmt_table(["method"] + groups, [
            [n] + [f"{table[(g, n)][0]:.2f} / {table[(g, n)][1]:.4f}" for g in groups] for n in names])
        md.append("")

    md += ["## Pictures", ""]
    if "heldout" in pictures:
        md += ["Held-out tile, the same camera at each noise level (centre crop; PSNR of the whole tile):", "",
               f"![held-out comparison]({os.path.relpath(pictures['heldout'], path.parent)})", ""]
    if "mosaic" in pictures:
        md += ["Real sensor mosaic: `../shared/data/sensor/bayer_small.png` (Halide's camera_pipe sample, MIT, "
               "© MIT CSAIL, Google, Facebook, Adobe, NVIDIA and other contributors), 10-bit GRBG, black 25, white "
               "1023, Halide's colour matrix at 3700 K split into white balance and ColorMatrix1 "
               "(`benchmarks/real_mosaic.py`), written as a DNG; centre crop. 'LibRaw AHD (its sRGB)' is LibRaw's "
               "complete classical rendering (the same white balance, its own matrix, sRGB curve); '+ tone curve' "
               "is the baseline of the tables above:", "",
               f"![real mosaic]({os.path.relpath(pictures['mosaic'], path.parent)})", ""]
    md += ["The real camera RAWs of `../shared/data/raw` (Canon D30 CRW, Kodak DC50 KDC; rawsamples.ch, "
           "CC BY-NC-SA, tests only) are not pictured here, to keep their licence out of this MIT repository: "
           "`python benchmarks/quality_report.py --real-raw-previews out/real-previews` writes the same side-by-side "
           "crops for them locally.", ""]

    md += ["## Appendix: per tile (PSNR dB / SSIM, mean over noise levels and Bayer orders)", ""]
    per_tile = summarise(rows, lambda r: (r["image"], r["tile"]))
    md += _fmt_table(["tile"] + names, [
        [f"{im} #{t}"] + [f"{per_tile[((im, t), n)][0]:.2f} / {per_tile[((im, t), n)][1]:.4f}" for n in names]
        for im, t, _ in tiles])
    md.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(md))


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Regenerate docs/QUALITY.md (see the module docstring).")
    parser.add_argument("--profiles", default="default,default-lite",
                        help="comma-separated profile names or .safetensors paths; 'none' for baselines only")
    parser.add_argument("--device", default="auto", help="device for the profiles: auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--quick", action="store_true",
                        help=f"one image, one {QUICK_TILE}px tile, noise {'/'.join(QUICK_NOISE)}: seconds, for tests")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "QUALITY.md")
    parser.add_argument("--pictures", type=Path, help="folder for the PNGs (default: quality/ beside --out)")
    parser.add_argument("--skimage-wheel", type=Path, help=f"a scikit_image-{SKIMAGE_VERSION} wheel (default: cached or pip-downloaded)")
    parser.add_argument("--images", type=Path, help="use these PNG/JPEG images as the held-out set instead")
    parser.add_argument("--tile", type=int, default=TILE, help="tile side in pixels")
    parser.add_argument("--tiles-per-image", type=int, default=TILES_PER_IMAGE)
    parser.add_argument("--no-demosaicnet", action="store_true", help="leave demosaicnet out")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data",
                        help="shared data folder (real mosaic and RAWs); pictures of them are skipped if absent")
    parser.add_argument("--real-raw-previews", type=Path,
                        help="also write side-by-side crops of the CC BY-NC-SA camera RAWs into this folder (not docs/)")
    parser.add_argument("--json", type=Path, help="also write every score, camera and timing as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    started = time.perf_counter()

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    pictures_dir = args.pictures or args.out.parent / "quality"
    names = [] if args.profiles.strip().lower() in ("", "none") else [p.strip() for p in args.profiles.split(",") if p.strip()]
    try:
        images = held_out_images(args)
        methods = profile_methods(names, args.device)
    except (WheelError, Raw2RgbError) as exc:
        say(f"error: {exc}")
        return 1
    device = next((m.info["device"] for m in methods if m.kind == "profile"), "cpu")
    args.device = device
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
        rows, renders = measure(cases, methods, keep=keep, progress=say)

        pictures: dict[str, Path] = {}
        made = heldout_picture(cases, renders, methods, pictures_dir / f"heldout-{first.image}.png")
        if made:
            pictures["heldout"] = made
        sensor = args.shared / "sensor"
        if (sensor / real_mosaic.MOSAIC_FILE).is_file():
            dng = real_mosaic.write_real_mosaic_dng(sensor, workdir / "bayer_small.dng")
            panels, _ = real_file_panels(dng, methods, REAL_CROP)
            pictures["mosaic"] = pictures_dir / "real-mosaic-bayer_small.png"
            labelled_strip(panels).save(pictures["mosaic"], optimize=True)
        else:
            notes.append(f"{sensor} is absent: no picture of the real mosaic")
        if args.real_raw_previews:
            raw_dir = args.shared / "raw"
            args.real_raw_previews.mkdir(parents=True, exist_ok=True)
            for raw in sorted(raw_dir.glob("*")) if raw_dir.is_dir() else []:
                panels, _ = real_file_panels(raw, methods, REAL_CROP)
                target = args.real_raw_previews / f"{raw.stem}.png"
                labelled_strip(panels, title=f"{raw.name} (rawsamples.ch, CC BY-NC-SA; centre crop)").save(target, optimize=True)
                say(f"wrote {target}")

    overall = summarise(rows, lambda r: None)
    targets = target_lines(overall, methods)
    elapsed = time.perf_counter() - started
    write_report(args.out, argv=argv, args=args, images=images, cases=cases, methods=methods, rows=rows,
                 notes=notes, pictures=pictures, targets=targets, elapsed=elapsed)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "command": argv, "seconds": round(elapsed, 1), "device": device, "noise_levels": {n: NOISE_LEVELS[n] for n in noise},
            "methods": [{"name": m.name, "kind": m.kind, **{k: v for k, v in m.info.items() if k != "metadata"}} for m in methods],
            "cases": [{"image": c.image, "tile": c.tile, "box": list(c.box), "noise": c.noise, "cfa": c.cfa, "camera": c.camera}
                      for c in cases],
            "scores": rows,
        }, indent=1))

    width = max(len(m.name) for m in methods)
    for m in methods:
        p, s, sec, _ = overall[(None, m.name)]
        print(f"{m.name:<{width}}  PSNR {p:6.2f} dB  SSIM {s:.4f}  {sec:.3f} s/frame")
    for ok, text in targets:
        print(f"{'PASS' if ok else ('FAIL' if ok is False else 'n/a ')}  {text}")
    print(f"wrote {args.out} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
