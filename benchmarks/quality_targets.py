"""The issues' targets, each as (passed, text): passed is None when a side was not measured."""

from __future__ import annotations

from quality_common import AHD, DEMOSAICNET, Method, is_lite_like

TARGET_MARGIN_DB = 2.0

#: Issue "noise-aware rendering", on the held-out set, for each `default-lite`-like profile.
NOISE_FREE_DB = 36.0  # PSNR at noise "none" ≥ this
HIGH_NOISE_DB = 26.0  # PSNR at noise "high" ≥ this
OVERALL_OVER_DEMOSAICNET_DB = 1.0  # overall (the four synthetic levels) ≥ demosaicnet + this
ISO100_WITHIN_DB = 2.0  # at iso100, ≥ demosaicnet − this
AHEAD_AT = ("iso1600", "iso12800")  # at these, > demosaicnet

Target = tuple[bool | None, str]


def target_lines(overall: dict, methods: list[Method]) -> list[Target]:
    """Issue 4: mean PSNR over the synthetic levels against LibRaw AHD and demosaicnet."""
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


def _absolute(method: Method, by_noise: dict, level: str, floor: float) -> Target:
    label = f"`{method.info['profile']}` at noise {level}: target ≥ {floor:.1f} dB PSNR"
    got = by_noise.get((level, method.name))
    if got is None:
        return None, f"{label} — not measured (no {level} cases in this run)"
    return got[0] >= floor, f"{label}: {got[0]:.2f} dB"


def _versus_demosaicnet(method: Method, table: dict, key: str | None, label: str, margin: float,
                        strict: bool = False) -> Target:
    """PSNR(method) − PSNR(demosaicnet) at `key` of `table`, ≥ margin (> margin when strict)."""
    ours, theirs = table.get((key, method.name)), table.get((key, DEMOSAICNET))
    if ours is None or theirs is None:
        why = f"no {key} cases in this run" if ours is None else "demosaicnet is not in this run"
        return None, f"{label} — not measured ({why})"
    delta = ours[0] - theirs[0]
    ok = delta > margin if strict else delta >= margin
    return ok, f"{label}: {delta:+.2f} dB ({ours[0]:.2f} vs {theirs[0]:.2f})"


def noise_aware_lines(overall: dict, by_noise: dict, methods: list[Method]) -> list[Target]:
    """Issue "noise-aware rendering" on the held-out set, per `default-lite`-like profile.

    `overall` is {(None, method): (PSNR, …)} over the four synthetic levels, `by_noise`
    {(level, method): (PSNR, …)}."""
    profiles = [m for m in methods if is_lite_like(m)]
    if not profiles:
        return [(None, "noise-aware targets — not measured (no `default-lite`-like profile in this run)")]
    lines: list[Target] = []
    for method in profiles:
        name = f"`{method.info['profile']}`"
        lines.append(_absolute(method, by_noise, "none", NOISE_FREE_DB))
        lines.append(_absolute(method, by_noise, "high", HIGH_NOISE_DB))
        lines.append(_versus_demosaicnet(method, overall, None, f"{name} overall (none–high) vs demosaicnet: target "
                                         f"≥ {OVERALL_OVER_DEMOSAICNET_DB:+.1f} dB PSNR", OVERALL_OVER_DEMOSAICNET_DB))
        for level in AHEAD_AT:
            lines.append(_versus_demosaicnet(method, by_noise, level,
                                             f"{name} at {level} vs demosaicnet: target ahead (> 0 dB)", 0.0, strict=True))
        lines.append(_versus_demosaicnet(method, by_noise, "iso100", f"{name} at iso100 vs demosaicnet: target within "
                                         f"{ISO100_WITHIN_DB:.1f} dB (≥ {-ISO100_WITHIN_DB:+.1f} dB)", -ISO100_WITHIN_DB))
    return lines


#: Issue 20 (base-ISO quality), for each `default-lite`-like profile: {level: PSNR margin over
#: demosaicnet (negative: how far behind it may stay)} on the held-out set, and the clean
#: Kodak24 + McMaster18 floor.
BASE_ISO_VS_DEMOSAICNET = {"iso100": -1.0, "iso1600": 1.0, "iso12800": 3.0}
LITERATURE_FLOOR_DB = 38.5


def base_iso_lines(by_noise: dict, literature_means: dict | None, methods: list[Method]) -> list[Target]:
    """Issue 20 on the held-out set's camera levels and the literature's test sets.

    `literature_means` is `literature.summary`'s {method: {set: PSNR, "both": …}}, or None
    when the run left the literature protocol out."""
    profiles = [m for m in methods if is_lite_like(m)]
    if not profiles:
        return [(None, "base-ISO targets — not measured (no `default-lite`-like profile in this run)")]
    lines: list[Target] = []
    for method in profiles:
        name = f"`{method.info['profile']}`"
        for level, margin in BASE_ISO_VS_DEMOSAICNET.items():
            want = f"within {-margin:.1f} dB (≥ {margin:+.1f} dB)" if margin < 0 else f"≥ {margin:+.1f} dB ahead"
            lines.append(_versus_demosaicnet(method, by_noise, level, f"{name} at {level} vs demosaicnet: target {want}",
                                             margin))
        label = f"{name} on Kodak24 + McMaster18, clean (literature protocol): target ≥ {LITERATURE_FLOOR_DB:.1f} dB"
        both = (literature_means or {}).get(method.name, {}).get("both")
        lines.append((None, f"{label} — not measured (no literature run)") if both is None
                     else (both >= LITERATURE_FLOOR_DB, f"{label}: {both:.2f} dB"))
    return lines
