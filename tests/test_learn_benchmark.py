"""benchmarks/learn_card.py runs its exact steps on a tiny card (the 100 × 24 MP figure is its default)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_learn_card_benchmark_times_a_tiny_card(tmp_path, shared_data):
    if not (shared_data / "rgb").is_dir():
        pytest.skip("../shared/data/rgb is absent")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "learn_card.py"), "--frames", "4", "--megapixels", "0.1",
                           "--card", str(tmp_path / "card"), "--rgb", str(shared_data / "rgb"), "--threads", "1",
                           "--looks", "global,film", "--", "--steps", "4"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| **whole command**" in done.stdout and "| curve + LUT fit |" in done.stdout
    assert "4 used / 1 held out" in done.stdout
    assert "| global |" in done.stdout and "| film |" in done.stdout  # the summary, one row per look
    for look in ("global", "film"):  # sidecars on even frames, embedded previews on odd ones
        card = tmp_path / "card" / f"{look}-4x0.1MP"
        assert len(list(card.glob("*.JPG"))) == 2 and len(list(card.glob("*.dng"))) == 4
