"""benchmarks/ablate_formulation.py: both network spaces see the same samples, and a tiny run works."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from raw2rgb_plugin.pipeline.metrics import psnr  # noqa: E402
from raw2rgb_plugin.training.data.onthefly import OnTheFlyDataset, OnTheFlyOptions  # noqa: E402
from raw2rgb_plugin.training.losses import camera_display  # noqa: E402

import ablate_formulation as ablation  # noqa: E402


@pytest.fixture
def photos(tmp_path) -> Path:
    """Smooth colour images (a camera matrix turns noise-free random pixels into out-of-gamut ones)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:96] / 96.0
    for k in range(12):
        phase = rng.uniform(0, 6, 3)
        image = 0.5 + 0.4 * np.sin(np.stack([x * 5 + y * 3 + p for p in phase], axis=-1) * (1 + k % 3))
        Image.fromarray(np.uint8(np.clip(image, 0, 1) * 255)).save(folder / f"{k}.png")
    return folder


def test_both_spaces_render_the_same_target(photos):
    split = OnTheFlyDataset(photos, OnTheFlyOptions(patch_size=64, patches_per_image=1)).split("val")
    batch = ablation.Batches(split, torch.device("cpu")).make([(k, 7 + k) for k in range(len(split))])
    assert batch["srgb"].shape == batch["camera"].shape == (len(split), 8, 32, 32)
    assert torch.equal(batch["srgb"][:, 4:], batch["camera"][:, 4:])  # one noise level, one noise map
    # What the camera space learns, rendered by its fixed matrix + curves, is the display target
    # (bar the highlights, where unprocessing fades the white balance out).
    rendered = camera_display(batch["camera_target"], batch["to_srgb"])
    assert float(psnr(rendered.clamp(0, 1), batch["target"]).min()) >= 40
    again = ablation.Batches(split, torch.device("cpu")).make([(k, 7 + k) for k in range(len(split))])
    assert torch.equal(again["camera"], batch["camera"])  # the same keys, the same samples


@pytest.mark.slow  # ~20 s: it also times each variant's forward on a 1.5 MP frame
def test_a_tiny_run_prints_its_table(photos, tmp_path, capsys):
    out = tmp_path / "ablation.json"
    code = ablation.main(["--corpus", str(photos), "--steps", "2", "--validate-every", "1", "--batch-size", "2",
                          "--patch-size", "32", "--val-patch-size", "64", "--val-items", "4",
                          "--variants", "srgb-gated,camera-gated-fine2", "--hard-fraction", "0", "--json", str(out)])
    assert code == 0
    table = capsys.readouterr().out
    assert "| srgb-gated |" in table and "| camera-gated-fine2 |" in table and "| MHC |" in table
    report = json.loads(out.read_text())
    assert [row["variant"] for row in report["rows"]] == ["srgb-gated", "camera-gated-fine2", "MHC"]
    assert len(report["history"]) == 2


def test_max_minutes_ends_the_training_then_validates(photos, tmp_path):
    out = tmp_path / "ablation.json"
    assert ablation.main(["--corpus", str(photos), "--steps", "50", "--max-minutes", "1e-6", "--batch-size", "2",
                          "--patch-size", "32", "--val-patch-size", "64", "--val-items", "2",
                          "--variants", "srgb-gated", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["steps"] == 1 and [h["step"] for h in report["history"]] == [1]
