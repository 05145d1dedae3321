"""Dataset building on a real camera RAW (skipped without ../shared/data)."""

import shutil

import numpy as np
import pytest
import rawpy

from raw2rgb_plugin.training.data.build import BuildOptions, build_dataset
from raw2rgb_plugin.training.data.sources import find_pairs
from raw2rgb_plugin.training.data.store import open_dataset

from scene_images import save_srgb


@pytest.mark.slow
def test_a_cropped_libraw_rendering_aligns_to_its_canon_raw(shared_data, tmp_path):
    source = shared_data / "raw" / "RAW_CANON_D30_SRGB.CRW"
    (tmp_path / "raw").mkdir()
    shutil.copy(source, tmp_path / "raw" / "d30.crw")
    with rawpy.imread(str(source)) as raw:
        rendering = raw.postprocess(demosaic_algorithm=rawpy.DemosaicAlgorithm.LINEAR, output_bps=8)
    # What a same-camera JPEG after cropping in an editor looks like: 70 rows, 90 columns off.
    save_srgb(tmp_path / "rgb" / "d30.png", rendering[70:1370, 90:2090] / 255.0)
    pairs, _ = find_pairs(tmp_path / "raw", tmp_path / "rgb")
    report = build_dataset(pairs, tmp_path / "ds", BuildOptions(patch_size=128, align="crop", val_fraction=0, previews=0))
    assert report["counts"]["pairs_kept"] == 1 and report["counts"]["patches"] >= 20
    shard = open_dataset(tmp_path / "ds").manifest["shards"][0]
    assert shard["cfa_pattern"] == "RGGB" and shard["levels"]["black_per_channel"] == [126.0] * 4
    matrix = np.array(shard["alignment"]["matrix"])
    np.testing.assert_allclose(matrix, [[1, 0, 90], [0, 1, 70], [0, 0, 1]], atol=0.05)  # ≈0.01 px measured
    assert shard["alignment"]["score"] > 0.95
    item = open_dataset(tmp_path / "ds").split("train")[0]
    assert item["raw"].shape == (4, 128, 128) and item["rgb"].shape == (3, 256, 256)
