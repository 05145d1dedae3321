"""Real camera RAWs in the quality report: detail and flat-region noise measured against LibRaw AHD.

Real files have no ground truth, so the report asks two questions of each rendering instead, both
relative to LibRaw AHD on the same file (`measure`):

- **detail ratio**: does it keep texture? The luma Y = 0.2126 R′ + 0.7152 G′ + 0.0722 B′ of the
  display (sRGB-encoded) image is divided by its own mean (brightness matching), filtered with
  the 3×3 Laplacian [[0, 1, 0], [1, −4, 1], [0, 1, 0]] (reflected edges), and the squared
  response is averaged over the *textured* pixels: the 16×16 blocks whose AHD luma std is in the
  top 30 %. The ratio is that mean for the rendering over the same for AHD (1 = AHD's detail).
- **flat noise**: does it add or remove grain? The std of the high-pass luma (normalised luma
  minus its 5×5 box blur) over the *flat* pixels: the 10 % of 16×16 blocks with the least AHD
  gradient energy (mean of squared forward differences of its normalised luma), among blocks with
  no clipped pixel (a channel ≥ 0.99 in AHD) and a mean AHD luma within [0.05, 0.95] (where a
  clipped or crushed tone would hide the noise). Reported over AHD's value (< 1 = less noise).

Both masks come from AHD alone, so every rendering is measured on the same pixels. Everything
here is numpy, on the whole frame at full resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from raw2rgb_plugin.engine.converter import Converter, decode
from raw2rgb_plugin.engine.jobs import ConvertJob
from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.pipeline.colour import tone_curve
from raw2rgb_plugin.pipeline.orientation import orient_hwc

import classical
from quality_common import fmt_table, is_lite_like
from quality_pictures import labelled_strip

BLOCK = 16
TEXTURED_FRACTION = 0.30
FLAT_FRACTION = 0.10
FLAT_LUMA_RANGE = (0.05, 0.95)
CLIPPED = 0.99
REC709 = np.array([0.2126, 0.7152, 0.0722])
CROP = 256
DENOISE_STRENGTHS = (0.0, 1.0, 2.0)
#: The target on real files at base ISO, with --denoise 1: detail ratio ≥ this while the
#: flat-region noise stays below AHD's. Issue 20 (base-ISO quality) raised it from the noise-aware
#: issue's 0.9 to 0.95.
DETAIL_TARGET = 0.95


# --------------------------------------------------------------------------------------------
# measures


def normalised_luma(rgb: np.ndarray) -> np.ndarray:
    """Display luma of an sRGB image (H, W, 3) in [0, 1], divided by its mean (float64)."""
    y = np.asarray(rgb, dtype=np.float64) @ REC709
    return y / max(float(y.mean()), 1e-6)


def laplacian(y: np.ndarray) -> np.ndarray:
    p = np.pad(y, 1, mode="reflect")
    return p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4.0 * y


def box_blur(y: np.ndarray, size: int = 5) -> np.ndarray:
    """Mean over a size×size window (reflected edges), by summed-area table."""
    r = size // 2
    p = np.pad(y, r, mode="reflect")
    s = np.pad(p.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, w = y.shape
    return (s[size:size + h, size:size + w] - s[:h, size:size + w] - s[size:size + h, :w] + s[:h, :w]) / size**2


def _blocks(values: np.ndarray, block: int) -> np.ndarray:
    """(H, W, …) → (H // block, W // block, block · block, …): the complete blocks, flattened."""
    by, bx = values.shape[0] // block, values.shape[1] // block
    v = values[: by * block, : bx * block].reshape(by, block, bx, block, *values.shape[2:])
    return np.moveaxis(v, 2, 1).reshape(by, bx, block * block, *values.shape[2:])


def _pixels(selected: np.ndarray, shape: tuple[int, int], block: int) -> np.ndarray:
    """A block selection (by, bx) as a pixel mask of `shape` (pixels past the last block: False)."""
    mask = np.zeros(shape, dtype=bool)
    by, bx = selected.shape
    mask[: by * block, : bx * block] = np.kron(selected, np.ones((block, block), dtype=bool))
    return mask


@dataclass
class Regions:
    """Where the measures look, decided on the reference (AHD) rendering alone."""

    textured: np.ndarray  # (H, W) bool
    flat: np.ndarray  # (H, W) bool
    block_std: np.ndarray  # (by, bx) AHD normalised-luma std per block (for choosing a crop)
    block: int = BLOCK


def regions(reference: np.ndarray, *, block: int = BLOCK) -> Regions:
    y = normalised_luma(reference)
    std = _blocks(y, block).std(axis=2)
    textured = std >= np.quantile(std, 1.0 - TEXTURED_FRACTION)
    gy = np.diff(y, axis=0, append=y[-1:])
    gx = np.diff(y, axis=1, append=y[:, -1:])
    gradient = _blocks(gx * gx + gy * gy, block).mean(axis=2)
    raw_luma = np.asarray(reference, dtype=np.float64) @ REC709
    mean_luma = _blocks(raw_luma, block).mean(axis=2)
    clipped = _blocks(np.asarray(reference).max(axis=2), block).max(axis=2) >= CLIPPED
    usable = ~clipped & (mean_luma >= FLAT_LUMA_RANGE[0]) & (mean_luma <= FLAT_LUMA_RANGE[1])
    if not usable.any():  # a frame with no unclipped mid-tone block: fall back to every block
        usable = np.ones_like(usable)
    flat = usable & (gradient <= np.quantile(gradient[usable], FLAT_FRACTION))
    shape = y.shape
    return Regions(_pixels(textured, shape, block), _pixels(flat, shape, block), std, block)


def detail_energy(rgb: np.ndarray, where: Regions) -> float:
    """Mean squared Laplacian of the normalised luma over the textured pixels."""
    return float(np.mean(laplacian(normalised_luma(rgb))[where.textured] ** 2))


def flat_noise(rgb: np.ndarray, where: Regions) -> float:
    """Std of the high-pass (minus a 5×5 box blur) normalised luma over the flat pixels."""
    y = normalised_luma(rgb)
    return float(np.std((y - box_blur(y))[where.flat]))


@dataclass
class Measures:
    detail: float  # mean squared Laplacian, textured pixels
    noise: float  # high-pass std, flat pixels
    detail_ratio: float  # / AHD's
    noise_ratio: float  # / AHD's


def measure(reference: np.ndarray, renders: dict[str, np.ndarray], where: Regions | None = None) -> dict[str, Measures]:
    """Each rendering's measures and their ratios to `reference`'s (all the same shape)."""
    where = where or regions(reference)
    ref_detail, ref_noise = detail_energy(reference, where), flat_noise(reference, where)
    out = {}
    for label, rgb in renders.items():
        if rgb.shape != reference.shape:
            raise ValueError(f"{label}: {rgb.shape} is not the reference's {reference.shape}")
        d, n = detail_energy(rgb, where), flat_noise(rgb, where)
        out[label] = Measures(d, n, d / max(ref_detail, 1e-30), n / max(ref_noise, 1e-30))
    return out


def textured_crop(where: Regions, size: int) -> tuple[int, int, int]:
    """(top, left, side) of the size×size window (on the block grid) with the most AHD texture."""
    b = where.block
    n = max(1, min(size // b, *where.block_std.shape))
    s = np.pad(where.block_std.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = s[n:, n:] - s[:-n, n:] - s[n:, :-n] + s[:-n, :-n]
    i, j = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(i) * b, int(j) * b, n * b


# --------------------------------------------------------------------------------------------
# rendering the real files


@dataclass
class RealPhoto:
    name: str
    camera: str
    iso: float | None
    noise: object  # the NoiseModel `raw2rgb convert` estimates for the file
    region: tuple[int, int, int, int]  # (top, left, height, width) of the sensor area measured
    renders: dict[str, np.ndarray] = field(default_factory=dict)  # label → oriented sRGB float32
    kinds: dict[str, tuple[str, float | None]] = field(default_factory=dict)  # label → (method, denoise)
    measures: dict[str, Measures] = field(default_factory=dict)
    crop: tuple[int, int, int] = (0, 0, 0)
    picture: Path | None = None


def profile_strengths(method) -> tuple[float, ...]:
    """--denoise strengths to render: 0/1/2 where the profile reads the noise, else only the default."""
    return DENOISE_STRENGTHS if method.reads_noise else (1.0,)


def render_label(method, strength: float) -> str:
    name = method.info.get("profile") or method.name
    return f"{name} --denoise {strength:g}" if method.reads_noise else name


def _region(height: int, width: int, max_side: int | None) -> tuple[int, int, int, int]:
    """The whole sensor area, or (quick runs) an even-aligned centre part of at most max_side²."""
    if not max_side:
        return 0, 0, height, width
    h, w = min(height, max_side) // 2 * 2, min(width, max_side) // 2 * 2
    return (height - h) // 4 * 2, (width - w) // 4 * 2, h, w


def render_file(path: Path, methods: list, *, max_side: int | None = None) -> RealPhoto:
    """LibRaw AHD/DHT and every profile (at each strength) on `path`, as `raw2rgb convert` decodes it."""
    decoded = decode(ConvertJob(path, path), with_noise=True)
    frame, meta = decoded.frame, decoded.metadata
    y0, x0, h, w = _region(*frame.mosaic.shape, max_side)
    make, model = (meta.make or "").strip(), (meta.model or "").strip()
    # EXIF models often repeat the make ("Canon" + "Canon EOS D30").
    camera = model if make and model.lower().startswith(make.split()[0].lower()) else f"{make} {model}".strip()
    camera = camera or "?"
    photo = RealPhoto(path.name, camera, meta.iso, decoded.noise, (y0, x0, h, w))

    def keep(label: str, kind: tuple[str, float | None], sensor_rgb: np.ndarray) -> None:
        photo.renders[label] = orient_hwc(np.asarray(sensor_rgb, dtype=np.float32), frame.flip)
        photo.kinds[label] = kind

    for algorithm, name in (("AHD", "LibRaw AHD"), ("DHT", "LibRaw DHT")):
        # The tone curve the profiles render with (that of their training targets), so that
        # detail and noise are compared at the same contrast.
        full = classical.libraw_display(path, frame, algorithm)
        keep(name, (name, None), tone_curve(full[y0 : y0 + h, x0 : x0 + w]))
    # Profiles render the region plus a margin (≥ the engine's tile overlap), in sensor orientation.
    m = 64 if max_side else 0
    my0, mx0 = max(0, y0 - m), max(0, x0 - m)
    sub = replace(frame, flip=0, mosaic=np.ascontiguousarray(frame.mosaic[my0 : y0 + h + m, mx0 : x0 + w + m]))
    for method in (mt for mt in methods if mt.kind == "profile"):
        for strength in profile_strengths(method):
            base = method.converter
            converter = base if strength == base.denoise else Converter(base.profile, device=base.device,
                                                                        denoise=strength)
            rgb = converter.render(sub, noise=decoded.noise)[y0 - my0 : y0 - my0 + h, x0 - mx0 : x0 - mx0 + w]
            keep(render_label(method, strength), (method.name, strength), rgb / np.float32(65535.0))
    return photo


def picture(photo: RealPhoto, out: Path) -> Path:
    """1:1 crops of every rendering at `photo.crop`, AHD's most textured window."""
    top, left, side = photo.crop
    panels = [(label.replace("LibRaw ", ""), rgb[top : top + side, left : left + side])
              for label, rgb in photo.renders.items()]
    title = f"{photo.name}, ISO {photo.iso or '?'}: 1:1 crop at ({top}, {left}); LibRaw + tone curve"
    out.parent.mkdir(parents=True, exist_ok=True)
    labelled_strip(panels, title=title).save(out, optimize=True)
    return out


def run(raw_dir: Path, methods: list, *, crops_dir: Path | None, max_side: int | None,
        say=lambda message: None) -> tuple[list[RealPhoto], list[str]]:
    """Every RAW in `raw_dir` rendered and measured; (photos, notes on files that failed)."""
    photos, notes = [], []
    for path in sorted(p for p in raw_dir.iterdir() if p.is_file() and not p.name.startswith(".")):
        say(f"real photo {path.name} …")
        try:
            photo = render_file(path, methods, max_side=max_side)
        except Raw2RgbError as exc:
            notes.append(f"real photo {path.name} was skipped: {exc}")
            continue
        reference = photo.renders["LibRaw AHD"]
        where = regions(reference)
        photo.measures = measure(reference, photo.renders, where)
        photo.crop = textured_crop(where, CROP)
        if crops_dir is not None:
            photo.picture = picture(photo, crops_dir / f"real-{path.stem}.png")
        photo.renders = {}  # full frames are large; the measures and the picture are kept
        photos.append(photo)
    return photos, notes


# --------------------------------------------------------------------------------------------
# report


def _noise_text(noise) -> str:
    if noise is None:
        return "—"
    return f"{noise.source}: a {noise.shot:.2e}, b {noise.read:.2e}"


def _shown(raw_dir: Path) -> str:
    """`../shared/data/raw` for the usual folder beside the project, else the path as given."""
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "raw"
    return "../shared/data/raw" if raw_dir.resolve() == shared.resolve() else str(raw_dir)


def section_lines(photos: list[RealPhoto], *, raw_dir: Path, crops_dir: Path | None, quick: bool) -> list[str]:
    md = ["## Real photographs", "",
          f"The real camera RAWs of `{_shown(raw_dir)}` (rawsamples.ch, CC BY-NC-SA, tests only), rendered as "
          "`raw2rgb convert` renders them: decoded by the engine, each "
          "file's noise model estimated from the file (what noise-aware profiles are told, scaled by `--denoise`), "
          "profiles at `--denoise` 1 and, for noise-aware ones, 0 and 2. LibRaw AHD and DHT: rawpy `postprocess` "
          "with the engine's white balance for the file (`user_wb`: as shot, or daylight where the file has none), "
          "LibRaw's own camera→sRGB matrix and sRGB curve (`output_color=sRGB`), 16-bit, no auto-brightening, "
          "no white-level adjustment, then the smoothstep tone curve 3x² − 2x³ that the profiles render with "
          "(without it AHD would have less contrast than the profiles, and a brightness gain cannot match "
          "contrast)."
          + (" Quick run: only a centre part of each file." if quick else " Whole frame, full resolution."), "",
          "No ground truth exists, so two measures compare each rendering with LibRaw AHD's of the same file "
          "(`benchmarks/real_photos.py`):", "",
          "- **Detail ratio**: display luma Y = 0.2126 R′ + 0.7152 G′ + 0.0722 B′ of the sRGB image, divided by its "
          "own mean (brightness matching); 3×3 Laplacian [[0, 1, 0], [1, −4, 1], [0, 1, 0]] (reflected edges); "
          "energy = mean squared response over the textured pixels, the 16×16 blocks whose AHD luma std is in "
          "the top 30 %; ratio = the rendering's energy / AHD's (1 = AHD's detail).",
          "- **Flat noise**: std of the high-pass luma (the normalised luma minus its 5×5 box blur) over the "
          "flat pixels: the 10 % of 16×16 blocks with the least AHD gradient energy (mean squared forward "
          "differences), among blocks with no clipped pixel (AHD channel ≥ 0.99) and a mean AHD luma in "
          "[0.05, 0.95]; reported / AHD's (< 1 = less noise than AHD).", ""]
    md += fmt_table(["file", "camera", "ISO", "measured (h×w)", "noise model (green, raw units)"], [
        [f"`{p.name}`", p.camera, f"{p.iso:g}" if p.iso else "?", f"{p.region[2]}×{p.region[3]}",
         _noise_text(p.noise)] for p in photos])
    md += [""]
    rows = []
    for p in photos:
        for label, m in p.measures.items():
            rows.append([f"`{p.name}`", label, f"{m.detail_ratio:.3f}", f"{m.noise_ratio:.3f}",
                         f"{m.detail:.3g}", f"{m.noise:.3g}"])
    md += fmt_table(["file", "rendering", "detail ratio", "flat noise / AHD", "detail energy", "flat noise"], rows)
    md += [""]
    if crops_dir is not None and any(p.picture for p in photos):
        md += [f"1:1 crops (the most textured {CROP}×{CROP} window of AHD) were written outside this repository, "
               f"to `{crops_dir}`; they stay out of docs/ to keep the files' CC BY-NC-SA licence out of this MIT "
               "repository.", ""]
    else:
        md += ["1:1 crops are not pictured here, to keep the files' CC BY-NC-SA licence out of this MIT repository: "
               "`python benchmarks/quality_report.py --real-raw-previews out/real-previews` writes them "
               "(`real-<file>.png`: AHD, DHT, each profile at each `--denoise`) locally.", ""]
    return md


def target_lines(photos: list[RealPhoto], methods: list, *, raw_dir: Path) -> list[tuple[bool | None, str]]:
    """The issue's real-file target per file and `default-lite`-like profile: with --denoise 1,
    detail ratio ≥ DETAIL_TARGET while the flat-region noise stays below AHD's."""
    want = f"detail ratio ≥ {DETAIL_TARGET} with --denoise 1 and flat noise < AHD's"
    profiles = [m for m in methods if is_lite_like(m)]
    if not profiles:
        return [(None, f"real files at base ISO: {want} — not measured (no `default-lite`-like profile in this run)")]
    if not photos:
        return [(None, f"real files at base ISO: {want} — not measured (no real RAWs in {raw_dir})")]
    lines = []
    for method in profiles:
        label = render_label(method, 1.0)
        for p in photos:
            m = p.measures[label]
            ok = m.detail_ratio >= DETAIL_TARGET and m.noise_ratio < 1.0
            lines.append((ok, f"`{label}` on `{p.name}` (ISO {p.iso or '?'}): {want}: detail {m.detail_ratio:.3f}, "
                              f"flat noise {m.noise_ratio:.3f} × AHD's"))
    return lines


def json_summary(photos: list[RealPhoto]) -> list[dict]:
    return [{"file": p.name, "camera": p.camera, "iso": p.iso, "region": list(p.region), "crop": list(p.crop),
             "noise": None if p.noise is None else {"a": p.noise.shot, "b": p.noise.read, "source": p.noise.source},
             "measures": {label: {"method": p.kinds[label][0], "denoise": p.kinds[label][1], **vars(m)}
                          for label, m in p.measures.items()}} for p in photos]
