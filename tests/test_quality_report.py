"""The quality report's measuring side: one quick run, the classical colour path, the helpers."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import classical  # noqa: E402
import quality_report  # noqa: E402
import real_mosaic  # noqa: E402
import skimage_wheel  # noqa: E402

from raw2rgb_plugin.pipeline.colour import camera_to_srgb_from_xyz_to_camera  # noqa: E402
from raw2rgb_plugin.io.raw_file import decode_raw  # noqa: E402


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory, tiny_profile):
    """`quality_report.py --quick` on one 64×64 procedural image (offline: no scikit-image wheel).

    demosaicnet is left out here to keep this fast; its own test below checks it in every order."""
    from scene_images import save_srgb, textured_scene

    tmp_path = tmp_path_factory.mktemp("quality")
    images = tmp_path / "heldout"
    save_srgb(images / "scene.png", textured_scene(64, 64, seed=3))
    out = tmp_path / "docs" / "QUALITY.md"
    rc = quality_report.main(["--quick", "--profiles", str(tiny_profile), "--images", str(images), "--device", "cpu",
                              "--out", str(out), "--shared", str(tmp_path / "no-shared"), "--no-demosaicnet",
                              "--json", str(tmp_path / "results.json")])
    assert rc == 0
    return out, json.loads((tmp_path / "results.json").read_text())


def test_quick_report_scores_every_method(quick_report):
    out, results = quick_report
    text = out.read_text()
    methods = ["raw2rgb tiny", "LibRaw AHD", "LibRaw DHT"]
    assert "demosaicnet was left out" in text
    assert [m["name"] for m in results["methods"]] == methods
    overall = text.split("### Overall", 1)[1].split("###", 1)[0]
    for name in methods:
        assert f"| {name} |" in overall or f"| **{name}** |" in overall, name
    assert "## Targets" in text and "not measured (no `default` profile" in text

    scores = results["scores"]
    assert len(scores) == len(methods) * 2 * 4  # quick: noise none/high × four Bayer orders
    for row in scores:
        assert 3.0 < row["psnr"] < 80.0 and -1.0 <= row["ssim"] <= 1.0, row
        assert row["seconds"] >= 0
    assert (out.parent / "quality" / "heldout-scene.png").is_file()


def test_classical_pipelines_match_the_ground_truth_colour_path(quick_report):
    """Noise-free, LibRaw + our matrix and tone curve land close to the truth:
    the classical pipeline inverts the unprocessing, so the comparison is about rendering alone."""
    _, results = quick_report
    clean = [r for r in results["scores"] if r["noise"] == "none"]
    for name in ("LibRaw AHD", "LibRaw DHT"):
        rows = [r for r in clean if r["method"] == name]
        assert {r["cfa"] for r in rows} == {"RGGB", "BGGR", "GRBG", "GBRG"}
        for r in rows:
            assert r["psnr"] > 30.0, r  # ~34 dB; a missing tone curve or wrong WB lands below 25
    noisy = [r for r in results["scores"] if r["noise"] == "high" and r["method"] == "LibRaw AHD"]
    assert max(r["psnr"] for r in noisy) < min(r["psnr"] for r in clean if r["method"] == "LibRaw AHD")


@pytest.mark.skipif(not classical.demosaicnet_available(),
                    reason="demosaicnet is an optional extra (pip install '.[quality]')")
def test_demosaicnet_output_is_aligned_in_every_bayer_order():
    from raw2rgb_plugin.io.raw_file import BayerFrame
    from raw2rgb_plugin.training.data.unprocess import mosaic_rgb

    y, x = np.mgrid[0:64, 0:66] / 64.0
    scene = np.stack([0.5 + 0.3 * np.sin(5 * x), 0.5 + 0.3 * np.cos(4 * y), 0.4 + 0.2 * np.sin(3 * (x + y))], axis=-1)
    net = classical.DemosaicNet()
    for cfa in ("RGGB", "BGGR", "GRBG", "GBRG"):
        frame = BayerFrame(path=Path("scene"), mosaic=np.rint(mosaic_rgb(scene, cfa) * 4095).astype(np.uint16),
                           cfa_pattern=cfa, black_level_per_site=np.zeros((2, 2), np.float32), white_level=4095.0,
                           wb_gains_rgb=np.ones(3, np.float32), wb_source="as-shot",
                           camera_to_srgb=np.eye(3, dtype=np.float32), matrix_source="identity", flip=0)
        rgb = net.camera_rgb(frame)
        assert rgb.shape == scene.shape
        err = np.abs(rgb - scene)[4:-4, 4:-4].mean()
        assert err < 0.01, (cfa, err)


def test_missing_demosaicnet_is_reported_not_fatal(monkeypatch):
    monkeypatch.setattr(classical, "demosaicnet_available", lambda: False)
    methods, note = quality_report.classical_methods("cpu", True)
    assert [m.name for m in methods] == ["LibRaw AHD", "LibRaw DHT"]
    assert "demosaicnet is not installed" in note and "[quality]" in note


def test_wheel_images_are_checked_against_their_hash(tmp_path):
    fake = tmp_path / f"scikit_image-{skimage_wheel.SKIMAGE_VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("skimage/data/chelsea.png", b"not the photograph")
    with pytest.raises(skimage_wheel.WheelError, match="SHA-256"):
        skimage_wheel.read_sample_bytes(fake, "chelsea")
    with pytest.raises(skimage_wheel.WheelError, match="cannot read"):
        skimage_wheel.read_sample_bytes(fake, "coffee")
    assert skimage_wheel.find_or_download_wheel(fake) == fake


def test_tiles_stay_inside_the_image():
    for h, w in ((512, 512), (300, 451), (427, 640), (80, 120)):
        for count in (1, 2, 9):
            boxes = quality_report.tile_boxes(h, w, 256, count)
            assert 1 <= len(boxes) <= count
            for top, left, bh, bw in boxes:
                assert top >= 0 and left >= 0 and top + bh <= h and left + bw <= w


def test_real_mosaic_matrix_splits_into_white_balance_and_color_matrix(shared_data):
    sensor = shared_data / "sensor"
    stored = real_mosaic.read_mat_v5(sensor / "matrix_7000.mat")["matrix_7000"]
    assert stored.shape == (4, 3) and stored[0, 0] == pytest.approx(2.2997, abs=1e-4)
    matrix = real_mosaic.halide_matrix(sensor)
    xyz_to_camera, neutral = real_mosaic.split_white_balance(matrix)
    assert neutral[1] == 1.0 and all(v > 0 for v in neutral)
    # The engine rebuilds camera→sRGB from ColorMatrix1; with the white balance it is Halide's matrix.
    rebuilt = camera_to_srgb_from_xyz_to_camera(xyz_to_camera) @ np.diag(1 / np.asarray(neutral))
    ratio = matrix / rebuilt
    assert np.allclose(ratio, ratio[0, 0], rtol=1e-6)


def test_example_raw_decodes_with_its_metadata():
    from raw2rgb_plugin.io.exif_read import read_photo_metadata

    path = ROOT / "examples" / "astronaut.dng"
    assert path.stat().st_size < 1_000_000
    frame = decode_raw(path)
    assert (frame.width, frame.height, frame.cfa_pattern, frame.flip) == (512, 512, "GRBG", 0)
    assert frame.wb_source == "as-shot" and frame.matrix_source != "identity"
    meta = read_photo_metadata(path)
    assert (meta.make, meta.model, meta.artist, meta.copyright) == (
        "raw2rgb", "Example (unprocessed astronaut)", "NASA", "Public domain")
