"""Whether a freshly trained profile beats a shipped one on the held-out set, from one report.

    python tools/pick_winner.py REPORT.json CANDIDATE BASELINE    # exit 0: ship it; 1: keep BASELINE

REPORT.json is `benchmarks/quality_report.py --json` (or `develop_report.py --json`) run on both
profiles in the same call. The candidate wins only if its mean PSNR is higher at every noise level
of the report: a GPU profile that is better on average but worse at base ISO would make GPU users'
clean photographs worse than a CPU user's.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path


def mean_psnr_by_level(report: dict, profile: str) -> dict[str, float]:
    sums: dict[str, list[float]] = defaultdict(list)
    for row in report["scores"]:
        if row["method"] == f"raw2rgb {profile}":
            sums[row["noise"]].append(float(row["psnr"]))
    return {level: sum(v) / len(v) for level, v in sums.items()}


def main(argv: list[str]) -> int:
    report_path, candidate, baseline = argv
    report = json.loads(Path(report_path).read_text())
    ours, theirs = mean_psnr_by_level(report, candidate), mean_psnr_by_level(report, baseline)
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
