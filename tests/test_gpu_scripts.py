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
def test_train_default_gpu_script_smoke(tmp_path):
    """Both profiles trained with pairs made on the device, scored against the shipped ones in one
    report each, and the winner picked (nothing is shipped from a smoke run)."""
    images = tmp_path / "rgb"
    images.mkdir()
    for i in range(3):
        Image.fromarray((smooth_scene(80, 80, seed=i) * 255).astype(np.uint8)).save(images / f"im{i}.png")
    env = {**os.environ, "RAW2RGB_SMOKE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(ROOT / "tools" / "train_default_gpu.sh"), str(images), str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    for name in ("default", "develop"):
        trained = json.loads((tmp_path / "out" / f"train-{name}.json").read_text())
        assert trained["steps"] >= 1 and trained["profile"]
        assert f"trained {name}:" in done.stdout
        pick = (tmp_path / "out" / f"pick-{name}.txt").read_text()
        assert f"{name}-smoke" in pick and ("ship it" in pick or "keep " in pick)
    converted = json.loads((tmp_path / "out" / "convert.json").read_text())
    assert converted["converted"] == 1 and converted["denoise"] == 1.0
    assert not (ROOT / "raw2rgb_plugin" / "profiles" / "shipped" / "default-smoke.safetensors").exists()
