"""docs/QUALITY.md from one run of the quality report: the text around the measured numbers."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from raw2rgb_plugin import __version__ as RAW2RGB_VERSION
from raw2rgb_plugin.training.data.unprocess import BAYER_ORDERS

import quality_xtrans
import real_photos
from heldout import HELD_OUT_IMAGES, NOISE_LEVELS, SYNTHETIC_LEVELS, Case, HeldOutImage, noise_text
from quality_common import AHD, DEMOSAICNET, Method, count, fmt_table, verdict

#: Validation images a profile table names one by one (a corpus split of hundreds is counted only).
_NAMED_VAL_IMAGES = 12


@dataclass
class Run:
    """Everything one run measured, as the report needs it."""

    argv: list[str]
    device: str
    images: list[HeldOutImage]
    cases: list[Case]
    methods: list[Method]
    rows: list[dict]  # one per (case, method): image, tile, noise, cfa, method, psnr, ssim, seconds
    estimates: list[dict]  # one per case where the noise was estimated: noise, a, b, source
    targets: list[tuple[str, list]]  # (heading, [(passed, text)])
    notes: list[str] = field(default_factory=list)
    pictures: dict[str, Path] = field(default_factory=dict)
    photos: list = field(default_factory=list)  # real_photos.RealPhoto
    raw_dir: Path | None = None
    crops_dir: Path | None = None
    quick: bool = False
    elapsed: float = 0.0
    xtrans: quality_xtrans.XTransRun | None = None


def summarise(rows: list[dict], key) -> dict:
    """{(group, method): (mean PSNR, mean SSIM, mean seconds, count)}."""
    groups: dict = defaultdict(list)
    for row in rows:
        groups[(key(row), row["method"])].append(row)
    return {k: (float(np.mean([r["psnr"] for r in v])), float(np.mean([r["ssim"] for r in v])),
                float(np.mean([r["seconds"] for r in v])), len(v)) for k, v in groups.items()}


def synthetic_rows(rows: list[dict]) -> list[dict]:
    """The rows of the four synthetic levels: "overall" means stay comparable with earlier reports."""
    return [r for r in rows if r["noise"] in SYNTHETIC_LEVELS]


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
        if manifest.get("kind") == "synthetic-on-the-fly":  # pairs made during training: images, not patches
            scenes = manifest.get("scenes") or {}
            held = scenes.get("val", [])
            # A corpus's split holds hundreds of images: name them only where they fit a table cell.
            named = f", val {', '.join(held)}" if len(held) <= _NAMED_VAL_IMAGES else ""
            data = (f"{dataset} (synthetic, made on the fly; {manifest.get('images', '?')} images: "
                    f"{len(scenes.get('train', []))} train / {len(held)} val{named})")
        else:
            data = f"{dataset} ({manifest.get('kind', '?')}; {counts.get('pairs', '?')} images, " \
                   f"{counts.get('train', '?')} train / {counts.get('val', '?')} val patches)" if train else "—"
        val = train.get("validation") or {}
        run = (f"{train.get('steps', '?')} steps, {train.get('epochs_completed', '?')} epochs, on {train.get('device', '?')}"
               f"{'' if train.get('completed', True) else ' (stopped early)'}; "
               f"{train.get('started', '?')} → {train.get('finished', '?')}"
               + (f"; val {val['psnr']:.2f} dB / {val['ssim']:.4f}" if "psnr" in val and "ssim" in val else "")
               if train else "—")
        noise = f"yes ({meta['architecture'].get('noise_channels')} noise channels)" if m.reads_noise else "no"
        rows.append([f"`{m.info['profile']}`", f"{meta.get('variant', '?')} (width {meta['architecture']['width']}, "
                     f"{m.info['parameters'] / 1e6:.2f} M)", f"`{meta.get('input_normalization')}`", noise, data, run,
                     f"`{train['command_line']}`" if train.get("command_line") else (meta.get("description") or "—")])
    if not rows:
        return ["No profile was measured in this run: the tables hold the classical baselines only."]
    return fmt_table(["profile", "network", "input", "noise-aware", "training data", "training run",
                      "command / description"], rows)


def header_lines(run: Run) -> list[str]:
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python benchmarks/quality_report.py" + ("" if not run.argv else " " + " ".join(shlex.quote(a) for a in run.argv))
    md = ["# Quality report", "",
          f"Generated by `{command}` on {date} in {run.elapsed / 60:.1f} min. "
          "Do not edit by hand: rerun the command (see `benchmarks/quality_report.py --help`).", ""]
    md += machine_lines(run.device, run.methods)
    md += ["", "## Profiles measured", ""] + profile_lines(run.methods)
    md += ["", "## Targets", ""]
    for heading, lines in run.targets:
        md += [heading, ""] + [f"- {verdict(ok)} — {text}" for ok, text in lines] + [""]
    return md


def estimate_lines(run: Run, levels: list[str]) -> list[str]:
    """How the engine's noise estimate (what noise-aware profiles are told) met each level's truth."""
    if not run.estimates:
        return []
    rows = []
    for level in levels:
        found = [e for e in run.estimates if e["noise"] == level]
        if not found:
            continue
        shot = NOISE_LEVELS[level][0]
        a = np.median([e["a"] for e in found])
        sources = sorted({e["source"] for e in found})
        rows.append([level, f"{shot:.2e}", f"{a:.2e}", f"{a / shot:.2f}" if shot else "—", ", ".join(sources)])
    return ["- The noise model noise-aware profiles were told, per level (green shot term a; median over the "
            "level's DNGs):", ""] + fmt_table(["level", "true a", "estimated a", "estimate / truth", "source"], rows) + [""]


def heldout_lines(run: Run, levels: list[str], tiles: list) -> list[str]:
    md = ["## Held-out test set", "",
          f"Every number in the tables below comes from this synthetic set and nothing else: {count(len(tiles), 'tile')} of "
          f"{count(len(run.images), 'photograph')} outside the profiles' training data (the shipped profiles train on "
          "Kodak24 and McMaster; see each profile's data above), "
          f"each unprocessed at {len(levels)} noise levels × {len(BAYER_ORDERS)} Bayer orders = "
          f"{len(run.cases)} DNGs, rendered by {len(run.methods)} methods ({len(run.rows)} scores).", ""]
    md += fmt_table(["image", "source", "licence", "tiles (top, left, h×w)"], [
        [im.name, f"{im.title}; {im.source}", im.licence,
         ", ".join(f"({b[0]}, {b[1]}, {b[2]}×{b[3]})" for n, _, b in tiles if n == im.name)] for im in run.images])
    synthetic = [n for n in levels if n in SYNTHETIC_LEVELS]
    camera = [n for n in levels if n not in SYNTHETIC_LEVELS]
    md += ["", "- Unprocessing: `raw2rgb_plugin.training.data.unprocess` (Brooks et al. 2019; inverse smoothstep tone "
           "curve, sRGB decode, random mixed real-camera matrix, inverse white balance with highlight protection, "
           "12/14-bit with a black level); one random camera per tile (seeded), shared by its noise levels and Bayer "
           "orders; written as DNG and decoded by the engine's `decode_raw`.",
           "- Noise levels (variance = shot · x + read on the levelled [0, 1] raw signal): " + ", ".join(
               noise_text(n) for n in synthetic) + "."]
    if camera:
        md += ["- Camera-realistic levels: darktable's median camera at the ISO (`raw2rgb_plugin.io.noise_profile."
               "iso_prior`, green, in raw units); each DNG carries that ISO in its EXIF as a camera's file would: "
               + ", ".join(noise_text(n) for n in camera) + "."]
    md += ["- Ground truth: the 8-bit sRGB tile. Scores: `raw2rgb_plugin.pipeline.metrics` PSNR and SSIM (11×11 "
           "Gaussian, σ 1.5) on sRGB in [0, 1], whole tile including borders, the same code for every method.",
           "- \"Overall\" and the per-tile appendix are means over the four synthetic levels (none–high) only, as in "
           "earlier reports; the camera-realistic levels have their own columns.", ""]
    return md + estimate_lines(run, levels)


def method_lines(run: Run) -> list[str]:
    md = ["## Methods", "",
          "- **raw2rgb PROFILE**: as `raw2rgb convert` renders a file: the engine's `decode(job, with_noise=True)` "
          "gives the frame and the file's noise model, estimated from the file itself (a darktable profile where "
          "darktable knows the camera, else an estimate from the image, else the ISO prior; never the held-out "
          "truth), then `Converter(load_profile(PROFILE), denoise=1).render(frame, noise=model)`. Only noise-aware "
          "profiles read the model.",
          "- **LibRaw AHD / DHT**: rawpy `postprocess` with the frame's white balance (`user_wb`, the DNG's "
          "as-shot), camera RGB out (`output_color=raw`), linear 16-bit, no auto-brightening, no white-level "
          "adjustment; then the engine's camera→sRGB matrix (`decode_raw(dng).camera_to_srgb`), clip, sRGB curve "
          "and the smoothstep 3x² − 2x³ (the forward of the unprocessing's inverse tone curve).",
          "- **demosaicnet**: Gharbi et al. 2016 (SIGGRAPH Asia), the Bayer weights shipped in the PyPI package; "
          "input the white-balanced mosaic, sRGB-encoded as the network was trained (decoded after), reflect-"
          "padded to its GRBG phase; then the same matrix and tone curve. It demosaicks only (its noise-aware "
          "model was never released for PyTorch), so it does not denoise.", ""]
    md += [f"- Note: {n}" for n in run.notes]
    return md + ([""] if run.notes else [])


def results_lines(run: Run, levels: list[str], tiles: list) -> list[str]:
    names = [m.name for m in run.methods]
    overall = summarise(synthetic_rows(run.rows), lambda r: None)
    ahd = overall.get((None, AHD), (float("nan"),))[0]
    md = ["## Results", "", "### Overall (the four synthetic noise levels)", ""]
    md += fmt_table(["method", "PSNR (dB)", "Δ vs LibRaw AHD", "SSIM", "s / frame"], [
        [f"**{n}**" if n.startswith("raw2rgb") else n, f"{overall[(None, n)][0]:.2f}", f"{overall[(None, n)][0] - ahd:+.2f}",
         f"{overall[(None, n)][1]:.4f}", f"{overall[(None, n)][2]:.3f}"] for n in names])
    side = tiles[0][2][2] if tiles else 0
    md += ["", f"Seconds per {side}×{side} frame on this machine (render only: decoding and the noise estimate "
           "excluded; LibRaw's include opening the file).", ""]
    for title, key, groups in (("By noise level", "noise", levels), ("By Bayer order", "cfa", list(BAYER_ORDERS))):
        table = summarise(run.rows, lambda r, k=key: r[k])
        md += [f"### {title} (PSNR dB / SSIM)", ""]
        md += fmt_table(["method"] + groups, [
            [n] + [f"{table[(g, n)][0]:.2f} / {table[(g, n)][1]:.4f}" for g in groups] for n in names])
        md.append("")
    return md


def picture_lines(run: Run, path: Path) -> list[str]:
    md = ["## Pictures", ""]
    if "heldout" in run.pictures:
        md += ["Held-out tile, the same camera at each noise level (centre crop; PSNR of the whole tile):", "",
               f"![held-out comparison]({os.path.relpath(run.pictures['heldout'], path.parent)})", ""]
    if "mosaic" in run.pictures:
        md += ["Real sensor mosaic: `../shared/data/sensor/bayer_small.png` (Halide's camera_pipe sample, MIT, "
               "© MIT CSAIL, Google, Facebook, Adobe, NVIDIA and other contributors), 10-bit GRBG, black 25, white "
               "1023, Halide's colour matrix at 3700 K split into white balance and ColorMatrix1 "
               "(`benchmarks/real_mosaic.py`), written as a DNG; centre crop. 'LibRaw AHD (its sRGB)' is LibRaw's "
               "complete classical rendering (the same white balance, its own matrix, sRGB curve); '+ tone curve' "
               "is the baseline of the tables above:", "",
               f"![real mosaic]({os.path.relpath(run.pictures['mosaic'], path.parent)})", ""]
    return md


def write_report(path: Path, run: Run) -> None:
    levels = [n for n in NOISE_LEVELS if any(c.noise == n for c in run.cases)]
    tiles = sorted({(c.image, c.tile, c.box) for c in run.cases},
                   key=lambda t: (HELD_OUT_IMAGES.index(t[0]) if t[0] in HELD_OUT_IMAGES else 99, t[1]))
    md = header_lines(run) + heldout_lines(run, levels, tiles) + method_lines(run) + results_lines(run, levels, tiles)
    if run.xtrans is not None:
        md += quality_xtrans.section_lines(run.xtrans, [n for n in levels if any(
            c.noise == n for c in quality_xtrans.xtrans_rows_cases(run.xtrans.cases))])
    if run.raw_dir is not None:
        md += real_photos.section_lines(run.photos, raw_dir=run.raw_dir, crops_dir=run.crops_dir, quick=run.quick)
    md += picture_lines(run, path)
    names = [m.name for m in run.methods]
    md += ["## Appendix: per tile (PSNR dB / SSIM, mean over the four synthetic noise levels and the Bayer orders)", ""]
    per_tile = summarise(synthetic_rows(run.rows), lambda r: (r["image"], r["tile"]))
    md += fmt_table(["tile"] + names, [
        [f"{im} #{t}"] + [f"{per_tile[((im, t), n)][0]:.2f} / {per_tile[((im, t), n)][1]:.4f}" for n in names]
        for im, t, _ in tiles])
    md.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(md))
