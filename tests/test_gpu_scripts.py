"""The GPU scripts run their exact commands at a tiny size on the CPU (no GPU in CI)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import smooth_scene

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("cfa,names", [("bayer", ("default", "develop")), ("xtrans", ("xtrans", "xtrans-develop"))])
def test_train_default_gpu_script_smoke(tmp_path, cfa, names):
    """Both profiles trained with pairs made on the device, scored against the shipped ones (for
    X-Trans, LibRaw's X-Trans rendering where none ships) in one report each, and the winner picked
    (nothing is shipped from a smoke run)."""
    images = tmp_path / "rgb"
    images.mkdir()
    side = 200 if cfa == "xtrans" else 80  # X-Trans patches are multiples of 48, at least 96
    for i in range(3):
        Image.fromarray((smooth_scene(side, side, seed=i) * 255).astype(np.uint8)).save(images / f"im{i}.png")
    env = {**os.environ, "RAW2RGB_SMOKE": "1", "OMP_NUM_THREADS": "1", "RAW2RGB_CFA": cfa}
    done = subprocess.run(["bash", str(ROOT / "tools" / "train_default_gpu.sh"), str(images), str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    for name in names:
        trained = json.loads((tmp_path / "out" / f"train-{name}.json").read_text())
        assert trained["steps"] >= 1 and trained["profile"]
        assert f"trained {name}:" in done.stdout
        pick = (tmp_path / "out" / f"pick-{name}.txt").read_text()
        assert f"{name}-smoke" in pick and ("ship it" in pick or "keep " in pick)
    if cfa == "xtrans":
        shipped = (ROOT / "raw2rgb_plugin" / "profiles" / "shipped" / "xtrans-lite.safetensors").is_file()
        # the shipped lite profile is the baseline; where none ships, LibRaw's X-Trans rendering
        assert ("xtrans-lite " if shipped else "LibRaw X-Trans") in (tmp_path / "out" / "pick-xtrans.txt").read_text()
    else:
        converted = json.loads((tmp_path / "out" / "convert.json").read_text())
        assert converted["converted"] == 1 and converted["denoise"] == 1.0
    assert not list((ROOT / "raw2rgb_plugin" / "profiles" / "shipped").glob("*-smoke.safetensors"))
