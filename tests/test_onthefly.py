"""Pairs made on the fly equal what the engine makes of the same synthetic RAW written as a DNG."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from raw2rgb_plugin.io.raw_file import decode_raw
from raw2rgb_plugin.pipeline.noise import NoiseModel
from raw2rgb_plugin.pipeline.normalization import network_input
from raw2rgb_plugin.training.data.onthefly import OnTheFlyDataset, OnTheFlyOptions, synthesize_pair
from raw2rgb_plugin.training.data.unprocess import random_params, write_synthetic_dng
from raw2rgb_plugin.training.sampling import SeededItems, seeded_rngs

from helpers import smooth_scene


def _engine_and_pair(folder, noise: tuple[float, float], seed: int, mode: str, *, linear_target: bool = False):
    """The engine's input for a synthetic RAW written as a DNG, and `synthesize_pair`'s item for the
    same scene, camera and noise draw (unprocess adds the noise with the same formula)."""
    rng = np.random.default_rng(seed)
    srgb = smooth_scene(64, 96, seed=seed)
    params = random_params(rng, cfa_pattern="RGGB", noise=False)
    dng_params = params.__class__(**{**params.__dict__, "shot_noise": noise[0], "read_noise": noise[1]})
    write_synthetic_dng(srgb, folder / "s.dng", np.random.default_rng(7), params=dng_params)
    engine = network_input(decode_raw(folder / "s.dng"), mode, noise=NoiseModel.of(*noise)).packed[0]
    item = synthesize_pair(srgb, params, noise, np.random.default_rng(7), with_noise_map=True, linear_target=linear_target,
                           sample_normal=lambda shape: _unprocess_normals(np.random.default_rng(7), shape))
    return srgb, engine, item


@pytest.mark.parametrize("noise", [(0.0, 0.0), (2.5e-4, 1.8e-6)])
def test_synthesized_input_matches_the_engine_on_the_same_raw(tmp_path, noise):
    srgb, engine, item = _engine_and_pair(tmp_path, noise, 3, "linear-srgb")
    assert item["raw"].shape == engine.shape == (8, 32, 48)
    assert torch.allclose(item["raw"], engine, atol=2e-3), (item["raw"] - engine).abs().max()
    assert torch.equal(item["rgb"], torch.from_numpy(srgb.transpose(2, 0, 1)).float())


@pytest.mark.parametrize("noise", [(0.0, 0.0), (2.5e-4, 1.8e-6)])
def test_scene_linear_pairs_match_the_engine_and_target_the_clean_camera_image(tmp_path, noise):
    """`wb-headroom` input as the engine makes it; the target is the clean image the mosaic sampled."""
    _, engine, item = _engine_and_pair(tmp_path, noise, 5, "wb-headroom", linear_target=True)
    assert torch.allclose(item["raw"], engine, atol=2e-3), (item["raw"] - engine).abs().max()
    target = item["rgb"]
    assert target.shape == (3, 64, 96) and float(target.max()) <= 1.0
    # Each site of the clean input is the target's own colour there, up to quantisation.
    if noise == (0.0, 0.0):
        sites = torch.stack([target[0, 0::2, 0::2], target[1, 0::2, 1::2], target[1, 1::2, 0::2], target[2, 1::2, 1::2]])
        assert float((sites - item["raw"][:4]).abs().max()) < 1e-3


def _unprocess_normals(rng: np.random.Generator, packed_shape: tuple[int, ...]) -> np.ndarray:
    """The normals unprocess draws for its (H, W) mosaic, rearranged into packed order."""
    c, h, w = packed_shape
    full = rng.normal(size=(2 * h, 2 * w))
    return np.stack([full[0::2, 0::2], full[0::2, 1::2], full[1::2, 0::2], full[1::2, 1::2]])


def test_dataset_splits_by_image_and_validation_is_fixed(tmp_path):
    from PIL import Image

    for i in range(5):
        Image.fromarray((smooth_scene(80, 96, seed=i) * 255).astype(np.uint8)).save(tmp_path / f"img{i}.png")
    data = OnTheFlyDataset(tmp_path, OnTheFlyOptions(patch_size=64, patches_per_image=3, val_fraction=0.2))
    train, val = data.split("train", augment=True), data.split("val")
    assert len(train) == 12 and len(val) == 3
    assert set(data.manifest["scenes"]["train"]).isdisjoint(data.manifest["scenes"]["val"])
    a, b = val[1], val[1]
    assert torch.equal(a["raw"], b["raw"]) and a["raw"].shape == (8, 32, 32)
    seeded = SeededItems(train)
    assert torch.equal(seeded[(4, 11)]["raw"], seeded[(4, 11)]["raw"])
    assert not torch.equal(seeded[(4, 11)]["raw"], seeded[(4, 12)]["raw"])


@pytest.mark.slow
def test_train_synthetic_makes_a_noise_aware_profile_that_convert_uses(tmp_path, isolated_profile_dir):
    """train --synthetic → a profile whose G1 reads a noise map; convert --denoise changes its output."""
    import json

    import tifffile
    from PIL import Image
    from typer.testing import CliRunner

    from raw2rgb_cli.main import app
    from raw2rgb_plugin.profiles.store import load_profile

    images = tmp_path / "rgb"
    images.mkdir()
    for i in range(3):
        Image.fromarray((smooth_scene(96, 96, seed=i) * 255).astype(np.uint8)).save(images / f"im{i}.png")
    runner = CliRunner()
    trained = runner.invoke(app, ["train", "--synthetic", str(images), "-o", str(tmp_path / "run"), "--variant", "lite",
                                  "--profile-name", "nc", "--no-perceptual", "--stage1-epochs", "1", "--stage2-epochs", "0",
                                  "--patch-size", "64", "--patches-per-image", "2", "--batch-size", "2", "--max-steps", "2",
                                  "--json"])
    assert trained.exit_code == 0, trained.output
    profile = load_profile("nc")
    assert profile.metadata["architecture"]["noise_channels"] == 4
    assert profile.metadata["training"]["dataset"]["manifest"]["kind"] == "synthetic-on-the-fly"

    rng = np.random.default_rng(1)
    params = random_params(rng, cfa_pattern="RGGB", noise=False)
    params = params.__class__(**{**params.__dict__, "shot_noise": 1e-3, "read_noise": 1e-5})
    write_synthetic_dng(smooth_scene(64, 64, seed=9), tmp_path / "noisy.dng", rng, params=params)
    outputs = {}
    for strength in ("0", "2"):
        done = runner.invoke(app, ["convert", str(tmp_path / "noisy.dng"), "-o", str(tmp_path / strength),
                                   "--profile", "nc", "--denoise", strength, "--json", "-q"])
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout)["denoise"] == float(strength)
        outputs[strength] = tifffile.imread(tmp_path / strength / "noisy.tif")
    assert not np.array_equal(outputs["0"], outputs["2"])

    # --resume alone reopens it: the pairs are made with the run's saved settings (the patch size
    # and patches per image above), not with the options' defaults, which would count other
    # patches and be refused. (Its one epoch was done: it stays at step 2.)
    resumed = runner.invoke(app, ["train", "--synthetic", str(images), "-o", str(tmp_path / "run"), "--resume",
                                  "--max-steps", "3", "--json", "-q"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["steps"] == 2


def test_balanced_sources_get_the_same_patches_per_epoch(tmp_path):
    from collections import Counter

    from PIL import Image

    for folder, count in (("clothing", 6), ("wallpapers", 1)):
        (tmp_path / folder).mkdir()
        for i in range(count):
            Image.fromarray((smooth_scene(80, 96, seed=i) * 255).astype(np.uint8)).save(tmp_path / folder / f"{i}.png")
    options = OnTheFlyOptions(patch_size=64, patches_per_image=2, val_fraction=0.0)
    plain = OnTheFlyDataset(tmp_path, options).split("train", augment=True)
    balanced = OnTheFlyDataset(tmp_path, dataclasses.replace(options, balance_sources=True)).split("train", augment=True)
    assert len(plain) == len(balanced) == 14
    def per_source(split):
        sources = Counter()
        for i in range(len(split)):
            with seeded_rngs(i):
                sources[split.images[split.draws(i).image].parent.name] += 1
        return sources

    assert per_source(plain) == {"clothing": 12, "wallpapers": 2}
    assert per_source(balanced) == {"clothing": 7, "wallpapers": 7}
