"""The quality report's X-Trans section (issue 25): the held-out tiles through an X-Trans sensor.

The same photographs, tiles, cameras and noise levels as the Bayer section, unprocessed into X-Trans
DNGs by the project's writer (`heldout.build_xtrans_cases`; LibRaw decodes them as X-Trans). Scored,
on the tile only (the frame is a ≥ 512 px window around it, as LibRaw's X-Trans code needs):

- display: each display X-Trans profile as `raw2rgb convert` renders the file, LibRaw's X-Trans
  rendering and demosaicnet's X-Trans model (classical.py: white balance, matrix, tone curve),
  against the sRGB tile, as the Bayer section scores;
- scene-linear: each scene-linear X-Trans profile as `convert --format dng` writes the file, and
  the same classical two, as develop_report.py scores the Bayer develop profiles: against the clean
  camera image, all finished with white balance, matrix and sRGB encoding, no tone curve;
- Bayer at clean input: the Bayer section's display profiles and LibRaw AHD on a clean Bayer DNG
  of the same window and camera, for the target "within 1 dB of our Bayer default".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from raw2rgb_plugin.engine.converter import Converter, decode
from raw2rgb_plugin.engine.jobs import ConvertJob
from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.io.raw_file import SensorFrame
from raw2rgb_plugin.pipeline.cfa import period, shifted
from raw2rgb_plugin.profiles.catalog import installed_names
from raw2rgb_plugin.profiles.store import load_profile

import classical
from heldout import LIBRAW_XTRANS_MIN_SIDE, XTRANS_BAYER_REFERENCE, Case, build_xtrans_cases, noise_text
from quality_common import AHD, Method, count, fmt_table, score

#: what the section measures when no --xtrans-profiles is given: those of these that are installed
DEFAULT_XTRANS_PROFILES = ("xtrans", "xtrans-lite", "xtrans-develop-lite")
DISPLAY, SCENE_LINEAR = "display", "scene-linear"
LIBRAW_XTRANS, DEMOSAICNET_XTRANS = "LibRaw X-Trans (Markesteijn 3-pass)", "demosaicnet X-Trans"


@dataclass
class XMethod:
    """An X-Trans method: `render(path, frame, noise, inner)` gives the tile `inner` (top, left, h,
    w) of its rendering: display sRGB (`bases` = display) or white-balanced camera RGB (scene-linear
    profiles; the classical methods, scored on both bases)."""

    name: str
    kind: str  # "profile" or "classical"
    bases: tuple[str, ...]
    render: Callable
    info: dict = field(default_factory=dict)
    reads_noise: bool = False


@dataclass
class XTransRun:
    cases: list[Case]
    methods: list[XMethod]
    bayer_methods: list[Method]
    rows: list[dict]
    notes: list[str] = field(default_factory=list)


def cut(image: np.ndarray, inner: tuple[int, int, int, int]) -> np.ndarray:
    top, left, h, w = inner
    return image[top : top + h, left : left + w]


def default_profiles() -> list[str]:
    installed = set(installed_names())
    return [name for name in DEFAULT_XTRANS_PROFILES if name in installed]


def profile_methods(names: list[str], device: str) -> list[XMethod]:
    methods = []
    for name in names:
        profile = load_profile(name)
        if profile.cfa != "xtrans":
            raise Raw2RgbError(f"--xtrans-profiles: '{profile.name}' renders {profile.cfa} sensors, not X-Trans",
                               "name X-Trans profiles there and Bayer ones in --profiles")
        linear = profile.scene_linear
        converter = Converter(profile, device=device, output_format="dng" if linear else "tiff")

        def render(path, frame, noise, inner, converter=converter, linear=linear) -> np.ndarray:
            out = cut(converter.render(frame, noise=noise), inner).astype(np.float64) / 65535.0
            return out * np.asarray(frame.wb_gains_rgb, dtype=np.float64) if linear else out

        methods.append(XMethod(f"raw2rgb {profile.name}", "profile", (SCENE_LINEAR if linear else DISPLAY,), render, {
            "profile": profile.name, "path": str(profile.path), "output": profile.output,
            "parameters": sum(p.numel() for p in profile.model.parameters()), "device": str(converter.device)},
            converter.reads_noise))
    return methods


def classical_methods(device: str, demosaicnet: bool) -> tuple[list[XMethod], str | None]:
    both = (DISPLAY, SCENE_LINEAR)
    methods = [XMethod(LIBRAW_XTRANS, "classical", both, lambda path, frame, noise, inner: cut(
        classical.libraw_xtrans_camera_rgb(path, frame), inner))]
    if not demosaicnet:
        return methods, None
    if not classical.demosaicnet_available():
        return methods, "demosaicnet is not installed: its X-Trans model was not measured"
    net = classical.XTransDemosaicNet(device)

    def render(path, frame, noise, inner) -> np.ndarray:
        # The network sees 12 px around each output pixel: the tile and that margin give its
        # whole-window output inside the tile, at a quarter of the cost (5.3 s per 520-px window here).
        top, left, h, w = inner
        m = min(net.MARGIN, top, left)
        rgb = net.camera_rgb(crop_frame(frame, (top - m, left - m, h + 2 * m, w + 2 * m)))
        return rgb[m : m + h, m : m + w]

    methods.append(XMethod(DEMOSAICNET_XTRANS, "classical", both, render, {"version": net.version}))
    return methods, None


def crop_frame(frame: SensorFrame, box: tuple[int, int, int, int]) -> SensorFrame:
    """The part `box` of a frame, its CFA pattern and per-site black levels seen from there."""
    top, left, h, w = box
    side = period(frame.cfa_pattern)
    black = np.roll(frame.black_level_per_site, (-top % side, -left % side), axis=(0, 1))
    return replace(frame, mosaic=frame.mosaic[top : top + h, left : left + w],
                   cfa_pattern=shifted(frame.cfa_pattern, top, left), black_level_per_site=black)


# --------------------------------------------------------------------------------------------
# measuring


def decode_case(case: Case, with_noise: bool):
    """(frame, noise model or None) as `raw2rgb convert` decodes the file, X-Trans frames included."""
    decoded = decode(ConvertJob(case.dng, case.dng), with_noise=with_noise, accept=lambda frame: frame)
    return decoded.frame, decoded.noise


def finished(out: np.ndarray, frame, method_kind: str, basis: str) -> np.ndarray:
    """A method's tile on the basis it is scored on: a display profile's sRGB as it is; camera RGB
    with white balance, matrix and sRGB curve, plus the tone curve for the display basis."""
    if basis == DISPLAY and method_kind == "profile":
        return out
    return classical.finish_rendering(out, frame, tone_curve=basis == DISPLAY)


def truth_on(basis: str, case: Case, frame) -> np.ndarray:
    from develop_report import truth_camera_rgb  # the Bayer develop profiles' truth (not a package module)

    if basis == DISPLAY:
        return case.truth
    return classical.finish_rendering(truth_camera_rgb(case.truth, case.camera), frame, tone_curve=False)


def _row(case: Case, name: str, basis: str, scores: tuple[float, float], seconds: float) -> dict:
    return {"image": case.image, "tile": case.tile, "noise": case.noise, "cfa": case.cfa, "method": name,
            "basis": basis, "psnr": scores[0], "ssim": scores[1], "seconds": seconds}


def _timed(render, *args) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = render(*args)
    return out, time.perf_counter() - start


def measure(cases: list[Case], methods: list[XMethod], bayer_methods: list[Method], *,
            progress: Callable[[str], None]) -> list[dict]:
    """One row per (X-Trans case, method, basis) and per (clean Bayer case, Bayer method)."""
    rows: list[dict] = []
    with_noise = any(m.reads_noise for m in methods) or any(m.reads_noise for m in bayer_methods)
    start = time.perf_counter()
    # No untimed first run as in the Bayer section: a profile's render of one window costs more
    # than a quick run's whole Bayer section; the seconds (JSON only) include first calls.
    for k, case in enumerate(cases):
        frame, noise = decode_case(case, with_noise)
        if case.cfa == XTRANS_BAYER_REFERENCE:
            for bayer in bayer_methods:
                out, seconds = _timed(bayer.render, case.dng, frame, noise)
                rows.append(_row(case, bayer.name, DISPLAY, score(case.tile_of(out), case.truth), seconds))
        else:
            for method in methods:
                out, seconds = _timed(method.render, case.dng, frame, noise, case.inner)
                for basis in method.bases:
                    image = finished(out, frame, method.kind, basis)
                    rows.append(_row(case, method.name, basis, score(image, truth_on(basis, case, frame)), seconds))
        if (k + 1) % 8 == 0 or k + 1 == len(cases):
            progress(f"X-Trans: {k + 1}/{len(cases)} frames, {time.perf_counter() - start:.0f} s")
    return rows


# --------------------------------------------------------------------------------------------
# report


def means(rows: list[dict], basis: str, key) -> dict:
    """{(group, method): (mean PSNR, mean SSIM, count)} of the rows scored on `basis`."""
    groups: dict = {}
    for row in rows:
        if row["basis"] == basis:
            groups.setdefault((key(row), row["method"]), []).append(row)
    return {k: (float(np.mean([r["psnr"] for r in v])), float(np.mean([r["ssim"] for r in v])), len(v))
            for k, v in groups.items()}


def xtrans_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["cfa"] != XTRANS_BAYER_REFERENCE]


def _cell(table: dict, key) -> str:
    return f"{table[key][0]:.2f} / {table[key][1]:.4f}" if key in table else "—"


def score_table(run: XTransRun, basis: str, levels: list[str]) -> list[str]:
    names = [m.name for m in run.methods if basis in m.bases]
    by_level = means(xtrans_rows(run.rows), basis, lambda r: r["noise"])
    overall = means(xtrans_rows(run.rows), basis, lambda r: None)
    body = [[f"**{n}**" if n.startswith("raw2rgb") else n, *(_cell(by_level, (lv, n)) for lv in levels),
             _cell(overall, (None, n))] for n in names]
    if basis == DISPLAY:
        clean = means([r for r in run.rows if r["cfa"] == XTRANS_BAYER_REFERENCE], DISPLAY, lambda r: r["noise"])
        body += [[f"{m.name} — Bayer {XTRANS_BAYER_REFERENCE}, same windows", _cell(clean, ("none", m.name)),
                  *("" for _ in levels[1:]), ""] for m in run.bayer_methods]
    return fmt_table(["method", *levels, "mean"], body)


def phase_table(run: XTransRun) -> list[str]:
    phases = sorted({r["cfa"] for r in xtrans_rows(run.rows)})
    body = []
    for basis in (DISPLAY, SCENE_LINEAR):
        table = means(xtrans_rows(run.rows), basis, lambda r: r["cfa"])
        body += [[f"{m.name} ({basis})", *(_cell(table, (p, m.name)) for p in phases)]
                 for m in run.methods if basis in m.bases]
    return fmt_table(["method", *phases], body)


def section_lines(run: XTransRun, levels: list[str]) -> list[str]:
    tiles = sorted({(c.image, c.tile) for c in run.cases})
    side = run.cases[0].truth.shape[0] if run.cases else 0
    phases = sorted({c.cfa.removeprefix("X-Trans ") for c in xtrans_rows_cases(run.cases)})
    md = ["## X-Trans (issue 25)", "",
          f"The held-out set's {count(len(tiles), 'tile')} with the Bayer section's cameras, unprocessed into X-Trans "
          f"DNGs (`raw2rgb_plugin.io.dng_write`, 6×6 CFAPattern; LibRaw decodes them as X-Trans) at the "
          f"{'phase' if len(phases) == 1 else 'phases'} (row, column) {'; '.join(phases)} and the noise levels "
          f"{', '.join(noise_text(n) for n in levels)}: {len(xtrans_rows_cases(run.cases))} DNGs. Each frame is the "
          f"{side}-px tile inside a window of its photograph (reflected past the photograph's edges) at least "
          f"{LIBRAW_XTRANS_MIN_SIDE} px a side, the smallest frame LibRaw's X-Trans interpolation renders; every "
          "method renders the whole frame and is scored on the tile alone.", "",
          "- **raw2rgb PROFILE** (X-Trans): as `raw2rgb convert` renders the file (noise estimated from it); "
          "scene-linear profiles as `convert --format dng` writes it.",
          f"- **{LIBRAW_XTRANS}**: rawpy `postprocess` as for AHD above; on an X-Trans file LibRaw runs its "
          "3-pass Markesteijn interpolation (AHD, DHT and LibRaw's default give the same pixels).",
          f"- **{DEMOSAICNET_XTRANS}**: Gharbi et al. 2016's X-Trans weights from the same wheel, input as for "
          "its Bayer model (no stride, so any phase); it does not denoise.",
          f"- **Bayer, same windows**: the Bayer section's display profiles and LibRaw AHD on a clean "
          f"{XTRANS_BAYER_REFERENCE} DNG of the same window and camera.", ""]
    md += [f"- Note: {n}" for n in run.notes] + ([""] if run.notes else [])
    md += ["### X-Trans, display rendering (PSNR dB / SSIM against the sRGB tile)", "", *score_table(run, DISPLAY, levels),
           "", "### X-Trans, scene-linear (PSNR dB / SSIM against the clean camera image; white balance, matrix, "
           "sRGB encoding, no tone curve, as `develop_report.py`)", "", *score_table(run, SCENE_LINEAR, levels), "",
           "### X-Trans by phase (mean over the levels)", "", *phase_table(run), ""]
    return md


def xtrans_rows_cases(cases: list[Case]) -> list[Case]:
    return [c for c in cases if c.cfa != XTRANS_BAYER_REFERENCE]


# --------------------------------------------------------------------------------------------
# targets


def bayer_reference(xtrans_name: str, bayer_names: list[str]) -> str | None:
    """The Bayer profile an X-Trans one is held to: its Bayer twin (xtrans-lite → default-lite)
    where measured, else `default`, else `default-lite`, else the first Bayer profile measured."""
    profile = xtrans_name.removeprefix("raw2rgb ")
    wanted = ["raw2rgb " + profile.replace("xtrans", "default", 1)] if profile.startswith("xtrans") else []
    for name in [*wanted, "raw2rgb default", "raw2rgb default-lite"]:
        if name in bayer_names:
            return name
    return bayer_names[0] if bayer_names else None


def ahead_of_libraw(run: XTransRun, method: XMethod, levels: list[str]) -> tuple[bool | None, str]:
    basis = method.bases[0]
    table = means(xtrans_rows(run.rows), basis, lambda r: r["noise"])
    deltas = [(lv, table[(lv, method.name)][0] - table[(lv, LIBRAW_XTRANS)][0]) for lv in levels
              if (lv, method.name) in table and (lv, LIBRAW_XTRANS) in table]
    text = (f"{method.name} ({basis}) ahead of {LIBRAW_XTRANS} by ≥ 3 dB at every noise level: "
            + (", ".join(f"{lv} {d:+.2f} dB" for lv, d in deltas) or "not measured"))
    return (all(d >= 3.0 for _, d in deltas) if deltas else None), text


def within_bayer(run: XTransRun, method: XMethod) -> tuple[bool | None, str]:
    bayer_names = [m.name for m in run.bayer_methods if m.kind == "profile"]
    reference = bayer_reference(method.name, bayer_names)
    ours = means(xtrans_rows(run.rows), DISPLAY, lambda r: r["noise"]).get(("none", method.name))
    bayer = means([r for r in run.rows if r["cfa"] == XTRANS_BAYER_REFERENCE], DISPLAY,
                  lambda r: r["noise"]).get(("none", reference))
    head = f"{method.name} at clean input within 1 dB of our Bayer profile on the same photographs"
    if ours is None or bayer is None:
        return None, f"{head}: not measured (no clean frames or no Bayer profile in --profiles)"
    gap = ours[0] - bayer[0]
    return gap >= -1.0, f"{head} ({reference}): {ours[0]:.2f} vs {bayer[0]:.2f} dB ({gap:+.2f})"


def target_lines(run: XTransRun, levels: list[str]) -> list[tuple[bool | None, str]]:
    profiles = [m for m in run.methods if m.kind == "profile"]
    if not profiles:
        return [(None, "no X-Trans profile was measured (none is installed; name them with --xtrans-profiles)")]
    lines = [ahead_of_libraw(run, m, levels) for m in profiles]
    lines += [within_bayer(run, m) for m in profiles if DISPLAY in m.bases]
    return lines


def json_summary(run: XTransRun) -> dict:
    return {"methods": [{"name": m.name, "kind": m.kind, "bases": list(m.bases), "reads_noise": m.reads_noise, **m.info}
                        for m in run.methods],
            "cases": [{"image": c.image, "tile": c.tile, "box": list(c.box), "inner": list(c.inner or ()),
                       "noise": c.noise, "cfa": c.cfa, "camera": c.camera} for c in run.cases],
            "scores": run.rows, "notes": run.notes}


def section_methods(profiles: list[str], device: str, demosaicnet: bool) -> tuple[list[XMethod], list[str]]:
    """The X-Trans section's methods and notes (loading the profiles, so a bad name fails early)."""
    methods = profile_methods(profiles, device)
    extra, note = classical_methods(device, demosaicnet)
    notes = [note] if note else []
    if not profiles:
        notes.append("no X-Trans profile is installed and none was named (--xtrans-profiles): classical methods only")
    return methods + extra, notes


def run_section(images, workdir: Path, *, tile: int, tiles_per_image: int, noise_levels: list[str], phases,
                methods: list[XMethod], notes: list[str], bayer_methods: list[Method],
                say: Callable[[str], None]) -> XTransRun:
    say(f"writing X-Trans DNGs ({len(images)} images) …")
    cases = build_xtrans_cases(images, workdir, tile=tile, tiles_per_image=tiles_per_image, noise_levels=noise_levels,
                               phases=phases)
    # The Bayer section's display profiles, for "within 1 dB of Bayer", and LibRaw AHD beside them
    # (its DHT and demosaicnet would cost more than the rest of a quick run: ~9 s per window here).
    bayer = [m for m in bayer_methods if m.name == AHD or (
        m.kind == "profile" and (m.info.get("metadata") or {}).get("output") != "scene-linear")]
    run = XTransRun(cases, methods, bayer, [], notes)
    say(f"rendering {len(cases)} X-Trans-section frames …")
    run.rows = measure(cases, methods, bayer, progress=say)
    return run
