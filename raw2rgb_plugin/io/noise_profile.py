"""A Poisson–Gaussian noise model (variance = a·x + b, x levelled raw) for every RAW file.

Sources, best first; each result names its source:

1. darktable's calibrated profiles (`noiseprofiles.json`), where darktable is installed and has
   the camera: ISO interpolated linearly between the two nearest profiles, proportional outside.
2. An estimate from the image itself (`estimate_poisson_gaussian`), with the read term taken
   from the optical-black margins when the sensor has them.
3. An ISO prior: the median camera of darktable's profiles, log-log interpolated in ISO.
4. A default: that prior at ISO 400.

darktable's numbers are not raw-pixel variances. Its profiling tool (tools/noise) fits
variance = a·x + b to the squared MAD-sigma of the 1-level Haar HH band of a *demosaiced* export,
which for white noise holds a quarter of the pixel variance, less whatever demosaicing smooths.
Measured with darktable-cli 4.2 on synthetic DNGs of known raw noise through darktable's own
profiling history (/work/tools/dt_calib/calib.py): green a_dt / a_raw = 0.084 with PPG (its
long-time default demosaicer), 0.059 with RCD (the 4.x default), 0.115 with AMaZE. Raw values
here are darktable's × 1/0.084 (≈ 12). The check: darktable's median ISO-100 camera then has
a = 4.0e-5 (25 k electrons at white) and a read noise of 3 DN at 14 bits, where the raw numbers
as printed would mean 290 k electrons and 0.9 DN, beyond any sensor in that list. Only green is
used (as darktable's own denoiser does): its red/blue a exceed green by the white-balance
multipliers (median ratios 2.2 and 1.9), while before white balance all sites share one gain.
"""

from __future__ import annotations

import json
import logging
import os
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from raw2rgb_plugin.pipeline.noise import NoiseModel, estimate_poisson_gaussian

log = logging.getLogger(__name__)

#: darktable's profile (Haar HH of a PPG-demosaiced export) → raw per-pixel variance; see above.
DARKTABLE_TO_RAW = 1.0 / 0.084

#: Median green (a, b) of darktable's profiles at each ISO, in darktable's units
#: (../shared/docs/raw-io.md, "Real sensor noise"); ×DARKTABLE_TO_RAW gives raw units.
_MEDIAN_CAMERA_DT = ((100, 3.4e-6, 3.4e-9), (1600, 3.7e-5, 1.3e-7), (6400, 1.4e-4, 8.0e-7),
                     (12800, 2.5e-4, 1.8e-6), (25600, 4.2e-4, 3.8e-6))
#: ISO of the default model: the log-midpoint of ISO 100 and 1600, where most photographs are taken.
DEFAULT_ISO = 400.0
#: An image estimate more than this many times the ISO prior's a is texture, not noise: darktable's
#: 90th-percentile camera is ~4× the median at every ISO, so 16× is 4× beyond any profiled camera.
_MAX_OVER_PRIOR = 16.0
#: Without an ISO, an estimate whose shot term has a larger relative standard error is refused
#: (the ISO-400 default is used). Measured on 19 photographs (~1024 × 640) unprocessed clean and at
#: ISO 100, 1600 and 12800 (median camera): the estimates that read texture as noise, 2–27× the
#: true a, had 6–27 % from thousands of flat blocks; sound ones mostly 1–4 %. With the rule and
#: the lower 95 % bound: ISO 100 max 2.5× (one frame; 4 frames were over 2×, up to 17×, before),
#: ISO 1600 max 1.33× (was 3.1×), ISO 12800 18 of 19 estimated within 1.26× (issue 20).
_NO_ISO_MAX_RELATIVE_ERROR = 0.05
#: …or this over √(flat blocks), whichever is larger: a small frame (a 256-px tile: a few hundred
#: blocks) estimates sound noise less tightly, and refusing it cost 2 dB on the held-out set's
#: ISO-less "high" level (22.7 vs 24.9 dB) until the bound grew with 1/√blocks.
_NO_ISO_ERROR_PER_ROOT_BLOCK = 5.0


def _no_iso_max_relative_error(n_blocks: int) -> float:
    return max(_NO_ISO_MAX_RELATIVE_ERROR, _NO_ISO_ERROR_PER_ROOT_BLOCK / max(n_blocks, 1) ** 0.5)


DARKTABLE_PROFILE_PATHS = (
    "/usr/share/darktable/noiseprofiles.json",
    "/usr/local/share/darktable/noiseprofiles.json",
    "/opt/homebrew/share/darktable/noiseprofiles.json",
    "/app/share/darktable/noiseprofiles.json",  # flatpak
    "/Applications/darktable.app/Contents/Resources/share/darktable/noiseprofiles.json",
    "C:/Program Files/darktable/share/darktable/noiseprofiles.json",
)
#: EXIF makers whose darktable name is not a substring of them.
_MAKER_ALIASES = {"om digital solutions": "om system", "lg electronics": "lge", "raspberry": "raspberrypi"}


def darktable_profiles_path() -> Path | None:
    """The first noiseprofiles.json found ($RAW2RGB_DARKTABLE_NOISEPROFILES first), or None."""
    env = os.environ.get("RAW2RGB_DARKTABLE_NOISEPROFILES")
    for candidate in ([env] if env else []) + list(DARKTABLE_PROFILE_PATHS):
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def _compact(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


@lru_cache(maxsize=4)
def _load_darktable(path: str, mtime: float) -> dict[str, list[tuple[str, str, list[tuple[float, float, float]]]]]:
    """maker (lower case) → [(model, model key, [(iso, a_green, b_green) sorted by ISO])]."""
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    makers: dict[str, list] = {}
    for maker in data.get("noiseprofiles", []):
        name = str(maker.get("maker", "")).lower()
        for model in maker.get("models", []):
            rows = sorted((float(p["iso"]), float(p["a"][1]), float(p["b"][1]))
                          for p in model.get("profiles", []) if not p.get("skip"))
            if rows:
                makers.setdefault(name, []).append((model["model"], _model_key(model["model"], name), rows))
    return makers


def _model_key(model: str, maker: str) -> str:
    """Model without a leading maker word, alphanumerics only: "Canon EOS 5D Mark II" → "eos5dmarkii"."""
    maker_words = {_compact(maker), _compact(maker.split()[0])} if maker.strip() else set()
    words = model.split()
    while words and _compact(words[0]) in maker_words:
        words = words[1:]
    return _compact(" ".join(words))


def _find_darktable_camera(makers: dict, make: str, model: str):
    make_l, model_l = make.lower(), model.lower()
    for alias, name in _MAKER_ALIASES.items():
        if alias in make_l:
            make_l = f"{make_l} {name}"
    for maker, models in makers.items():
        # darktable: its maker name within the camera's ("NIKON CORPORATION" ⊃ "nikon"); Pentax
        # bodies by Ricoh say "RICOH IMAGING COMPANY, LTD." with the maker in the model.
        if maker and (maker in make_l or model_l.startswith(maker)):
            key = _model_key(model, maker)
            for name, model_key, rows in models:
                if model_key == key:
                    return maker, name, rows
    return None


def _interpolate_iso(rows: list[tuple[float, float, float]], iso: float) -> tuple[float, float]:
    isos = [r[0] for r in rows]
    if iso <= isos[0] or iso >= isos[-1]:
        edge = rows[0] if iso <= isos[0] else rows[-1]
        scale = iso / edge[0]  # proportional outside darktable's range, as the gain scales
        return edge[1] * scale, edge[2] * scale
    k = int(np.searchsorted(isos, iso))
    (i0, a0, b0), (i1, a1, b1) = rows[k - 1], rows[k]
    t = (iso - i0) / (i1 - i0) if i1 > i0 else 0.0
    return a0 + t * (a1 - a0), b0 + t * (b1 - b0)


def darktable_noise_model(make: str | None, model: str | None, iso: float | None,
                          path: str | Path | None = None) -> NoiseModel | None:
    """The camera's darktable profile at `iso`, in raw units, or None (no file, camera or ISO)."""
    path = Path(path) if path else darktable_profiles_path()
    if not (make and model and iso and iso > 0) or path is None or not path.is_file():
        return None
    try:
        makers = _load_darktable(str(path), path.stat().st_mtime)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        log.warning("cannot read darktable noise profiles %s: %s", path, exc)
        return None
    found = _find_darktable_camera(makers, make, model)
    if found is None:
        return None
    maker, name, rows = found
    a_dt, b_dt = _interpolate_iso(rows, float(iso))
    a = a_dt * DARKTABLE_TO_RAW
    # 13 % of darktable's green b are ≤ 0 (its unweighted fit is ruled by the bright end).
    b = b_dt * DARKTABLE_TO_RAW if b_dt > 0 else read_term_for_shot(a)
    isos = f"{rows[0][0]:g}–{rows[-1][0]:g}" if len(rows) > 1 else f"{rows[0][0]:g}"
    return NoiseModel(a=(a,), b=(b,), source="darktable profile", iso=float(iso),
                      detail=f"darktable {maker} {name} (ISO {isos}), green a={a_dt:.3g} b={b_dt:.3g} ×{DARKTABLE_TO_RAW:.1f}")


def _prior_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.array(_MEDIAN_CAMERA_DT, dtype=np.float64)
    return np.log(t[:, 0]), np.log(t[:, 1] * DARKTABLE_TO_RAW), np.log(t[:, 2] * DARKTABLE_TO_RAW)


def _loglog(x: float, xs: np.ndarray, ys: np.ndarray) -> float:
    """Piecewise-linear in log-log, extended with the end segments' slopes."""
    lx = np.log(x)
    if lx <= xs[0]:
        k = 0
    elif lx >= xs[-1]:
        k = len(xs) - 2
    else:
        k = int(np.searchsorted(xs, lx)) - 1
    slope = (ys[k + 1] - ys[k]) / (xs[k + 1] - xs[k])
    return float(np.exp(ys[k] + slope * (lx - xs[k])))


def iso_prior(iso: float) -> NoiseModel:
    """darktable's median camera at `iso` (raw units), log-log interpolated; monotonic in ISO."""
    log_iso, log_a, log_b = _prior_table()
    iso = float(min(max(iso, 6.0), 1.0e6))
    return NoiseModel(a=(_loglog(iso, log_iso, log_a),), b=(_loglog(iso, log_iso, log_b),), source="ISO prior",
                      iso=iso, detail="median of darktable's cameras at this ISO")


def read_term_for_shot(a: float) -> float:
    """The read term b darktable's median camera has where its shot term is `a` (raw units)."""
    _, log_a, log_b = _prior_table()
    return _loglog(max(a, 1e-12), log_a, log_b)


def optical_black_read_variance(raw, frame) -> float | None:
    """Read-noise variance (levelled units) from the masked margins of `raw.raw_image`, or None.

    The separable second difference (1,−2,1)⊗(1,−2,1)/6 on each site cancels row and column
    offsets (banding: on the Canon D30 the left margin's plain std is 2.3 DN, its noise 1.2 DN);
    samples beyond 5 MAD-sigmas (hot pixels) are dropped. A margin whose median is not at the
    black level is not optical black (some are active pixels or padding) and is skipped.
    """
    bayer = np.shape(frame.black_level_per_site) == (2, 2)
    try:
        full = np.asarray(raw.raw_image)
        # X-Trans: rawpy's raw_colors is unreliable past a 6-pixel margin (io/xtrans.py), and a
        # 2×2 sub-image mixes colours anyway: its margins serve only when every site's black is
        # one, so every site may be taken as red.
        colours = np.asarray(raw.raw_colors) if bayer else np.zeros(full.shape, dtype=np.uint8)
        sizes = raw.sizes
        blacks = np.asarray(raw.black_level_per_channel, dtype=np.float64)
    except Exception:  # LibRaw raises several types for files without a raw plane
        return None
    if not bayer and np.ptp(np.asarray(frame.black_level_per_site)) > 0:
        return None
    top, left = int(sizes.top_margin), int(sizes.left_margin)
    h, w = frame.height, frame.width
    regions = [(slice(None), slice(0, left)), (slice(None), slice(left + w, None)),
               (slice(0, top), slice(None)), (slice(top + h, None), slice(None))]
    best: tuple[int, float] | None = None
    scale = float(frame.white_level) - float(np.mean(frame.black_level_per_site))
    for rows, cols in regions:
        region, cmap = full[rows, cols], colours[rows, cols]
        if min(region.shape) < 6:
            continue
        residuals, ok = [], True
        for i in range(2):
            for j in range(2):
                sub = region[i::2, j::2].astype(np.float64)
                black = blacks[int(cmap[i, j])] if cmap.size else 0.0
                r = (sub[:-2] - 2 * sub[1:-1] + sub[2:])
                r = (r[:, :-2] - 2 * r[:, 1:-1] + r[:, 2:]) / 6.0
                sigma = 1.4826 * float(np.median(np.abs(r)))
                ok &= abs(float(np.median(sub)) - black) <= max(4.0 * max(sigma, 1.0), 0.002 * scale)
                residuals.append(r.ravel() if sigma == 0 else r.ravel()[np.abs(r.ravel()) < 5 * sigma])
        r = np.concatenate(residuals)
        variance = float(np.mean(r * r)) if r.size else 0.0
        if ok and r.size >= 1000 and variance > 0 and (best is None or r.size > best[0]):
            best = (r.size, variance)
    return None if best is None else best[1] / scale**2


def image_noise_model(frame, raw=None, iso: float | None = None) -> tuple[NoiseModel | None, str]:
    """(model, "") from the frame's own pixels, or (None, why not)."""
    b_black = optical_black_read_variance(raw, frame) if raw is not None else None
    xtrans = np.shape(frame.black_level_per_site) == (6, 6)
    est = estimate_poisson_gaussian(frame.mosaic, black_level_per_site=frame.black_level_per_site,
                                    white_level=frame.white_level, fixed_b=b_black, cfa=frame.cfa if xtrans else None)
    if not est.usable:
        return None, est.reason
    if iso and est.a > _MAX_OVER_PRIOR * iso_prior(iso).shot:
        return None, f"a = {est.a:.3g} is implausible at ISO {iso:g} (texture mistaken for noise?)"
    a, a_note = est.a, ""
    if not iso:
        # Nothing to check the estimate against: take it only when it is tight, and at its lower
        # 95 % bound (texture only ever adds variance). See _NO_ISO_MAX_RELATIVE_ERROR.
        if est.a_stderr > _no_iso_max_relative_error(est.n_blocks) * est.a:
            return None, (f"a = {est.a:.3g} ± {est.a_stderr / est.a:.0%} is too uncertain to trust without an ISO "
                          "(texture mistaken for noise?)")
        a, a_note = est.a - 2.0 * est.a_stderr, " (lower 95 % bound: no ISO to check it against)"
    if b_black is not None:
        b, how = b_black, "b from the optical black"
    else:
        # Where few blocks are dark, b is loose; within its ±2σ take the value nearest the median camera's.
        b = float(np.clip(read_term_for_shot(a), est.b - 2 * est.b_stderr, est.b + 2 * est.b_stderr))
        how = "b from flat regions" if est.b_stderr < 0.5 * max(est.b, 1e-30) else "b near the median camera's"
    detail = (f"{est.n_blocks} flat blocks, {int(est.bin_used.sum())} intensity bins, a ± {est.a_stderr / est.a:.0%}"
              f"{a_note}; {how}")
    return NoiseModel(a=(a,), b=(max(b, 0.0),), source="image estimate", iso=iso, detail=detail), ""


def noise_model_for(frame, metadata=None, raw=None, *, darktable_path: str | Path | None = None,
                    use_darktable: bool = True) -> NoiseModel:
    """The best noise model for `frame` (a `BayerFrame`); `metadata` a `PhotoMetadata` (or None)
    for make/model/ISO, `raw` the still-open rawpy object (for the optical-black margins)."""
    make = getattr(metadata, "make", None)
    model = getattr(metadata, "model", None)
    iso = getattr(metadata, "iso", None)
    iso = float(iso) if iso and iso > 0 else None
    if use_darktable:
        found = darktable_noise_model(make, model, iso, darktable_path)
        if found is not None:
            return found
    estimate, why_not = image_noise_model(frame, raw, iso)
    if estimate is not None:
        return estimate
    if iso is not None:
        prior = iso_prior(iso)
        return NoiseModel(a=prior.a, b=prior.b, source="ISO prior", iso=iso,
                          detail=f"median of darktable's cameras at ISO {iso:g}; image estimate unusable: {why_not}")
    prior = iso_prior(DEFAULT_ISO)
    return NoiseModel(a=prior.a, b=prior.b, source="default", iso=None,
                      detail=f"median camera at ISO {DEFAULT_ISO:g} (no ISO in the file); image estimate unusable: {why_not}")
