"""Whether a freshly trained profile beats a shipped one on the held-out set, from one report.

    python tools/pick_winner.py REPORT.json CANDIDATE BASELINE    # exit 0: ship it; 1: keep BASELINE
    python tools/pick_winner.py --xtrans REPORT.json xtrans xtrans-lite

REPORT.json is `benchmarks/quality_report.py --json` (or `develop_report.py --json`) run on both
profiles in the same call. The candidate wins only if its mean PSNR is higher at every noise level
of the report: a GPU profile that is better on average but worse at base ISO would make GPU users'
clean photographs worse than a CPU user's.

--xtrans reads the report's X-Trans section, on the basis the candidate is scored on (display or
scene-linear); a BASELINE profile the report does not hold (none shipped yet) is replaced by
LibRaw's X-Trans rendering on that basis, so a first X-Trans profile ships only where it beats it.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

LIBRAW_XTRANS = "LibRaw X-Trans (Markesteijn 3-pass)"


def mean_psnr_by_level(rows: list[dict], method: str, basis: str | None = None) -> dict[str, float]:
    sums: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if row["method"] == method and (basis is None or row.get("basis") == basis):
            sums[row["noise"]].append(float(row["psnr"]))
    return {level: sum(v) / len(v) for level, v in sums.items()}


def xtrans_levels(report: dict, candidate: str, baseline: str) -> tuple[dict, dict, str]:
    """The candidate's and the baseline's X-Trans means on the candidate's basis, and the baseline's name."""
    rows = [r for r in report["xtrans"]["scores"] if r["cfa"].startswith("X-Trans")]
    bases = {r["basis"] for r in rows if r["method"] == f"raw2rgb {candidate}"}
    basis = bases.pop() if len(bases) == 1 else None
    other = f"raw2rgb {baseline}" if any(r["method"] == f"raw2rgb {baseline}" for r in rows) else LIBRAW_XTRANS
    return mean_psnr_by_level(rows, f"raw2rgb {candidate}", basis), mean_psnr_by_level(rows, other, basis), other


def main(argv: list[str]) -> int:
    xtrans = argv[:1] == ["--xtrans"]
    report_path, candidate, baseline = argv[1:] if xtrans else argv
    report = json.loads(Path(report_path).read_text())
    if xtrans:
        ours, theirs, baseline = xtrans_levels(report, candidate, baseline)
    else:
        ours = mean_psnr_by_level(report["scores"], f"raw2rgb {candidate}")
        theirs = mean_psnr_by_level(report["scores"], f"raw2rgb {baseline}")
    if not ours or ours.keys() != theirs.keys():
        print(f"pick_winner: {candidate} and {baseline} are not both scored at the same levels in {report_path}")
        return 2
    wins = all(ours[level] > theirs[level] for level in ours)
    for level in sorted(ours):
        print(f"{level:>10}: {candidate} {ours[level]:.2f} dB, {baseline} {theirs[level]:.2f} dB")
    print(f"{candidate} {'wins at every level: ship it' if wins else 'does not win everywhere: keep ' + baseline}")
    return 0 if wins else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
