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
    images = tmp_path / "rgb"
    images.mkdir()
    for i in range(3):
        Image.fromarray((smooth_scene(80, 80, seed=i) * 255).astype(np.uint8)).save(images / f"im{i}.png")
    env = {**os.environ, "RAW2RGB_SMOKE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(ROOT / "tools" / "train_default_gpu.sh"), str(images), str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    trained = json.loads((tmp_path / "out" / "train.json").read_text())
    assert trained["steps"] >= 1 and trained["profile"]
    converted = json.loads((tmp_path / "out" / "convert.json").read_text())
    assert converted["converted"] == 1 and converted["denoise"] == 1.0
    assert "trained:" in done.stdout
