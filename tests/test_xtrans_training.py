"""Training X-Trans profiles: `train --synthetic RGB_DIR --cfa xtrans` makes pairs in the 6×6 X-Trans
pattern that equal what the engine makes of the same mosaic written to an X-Trans DNG (LibRaw
decodes it), on the CPU workers and on the training device alike, and trains a period-6 G1 that
`convert` then renders X-Trans files with."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from raw2rgb_plugin.io.raw_file import RawFile
from raw2rgb_plugin.models.discriminator import PatchDiscriminator
from raw2rgb_plugin.models.g1 import G1
from raw2rgb_plugin.models.g2 import G2
from raw2rgb_plugin.pipeline.cfa import XTRANS
from raw2rgb_plugin.pipeline.noise import NoiseModel
from raw2rgb_plugin.pipeline.normalization import network_input
from raw2rgb_plugin.training.config import TrainConfig, TrainingError
from raw2rgb_plugin.training.data.device_pairs import Cameras, DeviceBatches, synthesize_batch
from raw2rgb_plugin.training.data.onthefly import OnTheFlyDataset, OnTheFlyOptions, synthesize_pair
from raw2rgb_plugin.training.data.store import DatasetError
from raw2rgb_plugin.training.data.unprocess import mosaic_rgb, random_params, write_synthetic_dng
from raw2rgb_plugin.training.sampling import ResumableSampler, SeededItems

from helpers import folder_of_smooth_images, smooth_scene

NOISE = [(0.0, 0.0), (1.0e-4, 1.0e-7), (2.0e-3, 1.5e-5)]


def _packed(full: np.ndarray) -> np.ndarray:
    """An (H, W) array in the 36-channel packed order (channel 6·row + column of the site)."""
    h, w = full.shape[0] // 6, full.shape[1] // 6
    return full.reshape(h, 6, w, 6).transpose(1, 3, 0, 2).reshape(36, h, w)


@pytest.mark.parametrize("kind", ["display", "camera", "scene-linear"])
@pytest.mark.parametrize("noise", [(0.0, 0.0), (2.5e-4, 1.8e-6)])
def test_a_pair_is_the_engines_input_for_the_same_mosaic_in_an_xtrans_dng(tmp_path, kind, noise):
    """The same scene, camera and noise draw (unprocess adds the noise with the same formula) written
    as an X-Trans DNG and decoded by LibRaw: the engine's input is the pair's, to one quantisation."""
    rng = np.random.default_rng(3)
    srgb = smooth_scene(96, 144, seed=3)
    params = random_params(rng, cfa_pattern=XTRANS, noise=False)
    noisy = params.__class__(**{**params.__dict__, "shot_noise": noise[0], "read_noise": noise[1]})
    write_synthetic_dng(srgb, tmp_path / "s.dng", np.random.default_rng(7), params=noisy)
    with RawFile(tmp_path / "s.dng") as raw:
        frame = raw.mosaic_frame
    assert frame.cfa_pattern == XTRANS
    mode = "linear-srgb" if kind == "display" else "wb-headroom"
    engine = network_input(frame, mode, noise=NoiseModel.of(*noise)).packed[0]
    item = synthesize_pair(srgb, params, noise, np.random.default_rng(7), with_noise_map=True,
                           linear_target=kind == "scene-linear", camera_input=kind == "camera",
                           sample_normal=lambda shape: _packed(np.random.default_rng(7).normal(size=(96, 144))))
    assert item["raw"].shape == engine.shape == (72, 16, 24)
    assert torch.allclose(item["raw"], engine, atol=2e-3), (item["raw"] - engine).abs().max()
    assert ("to_srgb" in item) == (kind == "camera")
    if kind == "scene-linear" and noise == (0.0, 0.0):
        # each site of the clean input is the target's own colour there, up to quantisation
        sites = _packed(mosaic_rgb(item["rgb"].permute(1, 2, 0).numpy(), XTRANS))
        assert float(np.abs(sites - item["raw"][:36].numpy()).max()) < 1e-3
    elif kind != "scene-linear":
        assert torch.equal(item["rgb"], torch.from_numpy(srgb.transpose(2, 0, 1)).float())


@pytest.mark.parametrize("kind", ["display", "scene-linear", "camera"])
def test_a_device_batch_is_the_cpu_pairs_up_to_one_quantisation_step(kind):
    linear_target, camera_input = kind == "scene-linear", kind == "camera"
    rng = np.random.default_rng(4)
    crops = [smooth_scene(48, 48, seed=s).astype(np.float32) for s in range(3)]
    params = [random_params(rng, cfa_pattern=XTRANS, noise=False, inverse_tone_curve=bool(k % 2)) for k in range(3)]
    normals = [rng.standard_normal((36, 8, 8)) for _ in range(3)]
    expected = [synthesize_pair(c, p, n, rng, with_noise_map=True, linear_target=linear_target, camera_input=camera_input,
                                sample_normal=lambda shape, z=z: z) for c, p, n, z in zip(crops, params, NOISE, normals)]
    srgb = torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2).copy())
    got = synthesize_batch(srgb, Cameras.of(params, "cpu"), torch.tensor(NOISE), torch.from_numpy(np.stack(normals)).float(),
                           with_noise_map=True, linear_target=linear_target, camera_input=camera_input)
    assert got["raw"].shape == (3, 72, 8, 8)
    for k, item in enumerate(expected):
        step = 1.0 / (params[k].white_level - params[k].black_level)
        # float32 here, float64 in numpy: a value on a rounding boundary may land one step over,
        # which the colour normalisation scales by its gains and matrix (as for Bayer)
        assert float((got["raw"][k] - item["raw"]).abs().max()) <= 6 * step + 1e-5
        assert float((got["raw"][k] - item["raw"]).abs().mean()) < 1e-5
        assert torch.allclose(got["rgb"][k], item["rgb"], atol=2e-6)
        if camera_input:
            assert torch.equal(got["to_srgb"][k], item["to_srgb"])


def test_device_batches_cut_what_the_workers_would(tmp_path):
    options = OnTheFlyOptions(patch_size=96, patches_per_image=3, val_fraction=0.25, clean_fraction=1.0,
                              hard_fraction=0.5, cfa="xtrans")
    data = OnTheFlyDataset(folder_of_smooth_images(tmp_path / "rgb", size=(100, 110)), options)
    assert data.manifest["cfa"] == "xtrans"
    train = data.split("train", augment=True)
    sampler = ResumableSampler(train, num_replicas=1, rank=0, seed=3)
    batch = next(iter(DeviceBatches(train, sampler, batch_size=4, device=torch.device("cpu"))))
    assert batch["raw"].shape == (4, 72, 16, 16) and batch["rgb"].shape == (4, 3, 96, 96)
    for k, key in enumerate(list(iter(sampler))[:4]):
        item = SeededItems(train)[key]  # what a loader worker makes for this key (all clean here)
        assert torch.allclose(batch["rgb"][k], item["rgb"], atol=1e-6)
        assert float((batch["raw"][k] - item["raw"]).abs().max()) < 2e-3
    with pytest.raises(DatasetError, match="multiple of 48"):
        OnTheFlyDataset(tmp_path / "rgb", OnTheFlyOptions(patch_size=64, cfa="xtrans"))


def test_the_xtrans_networks_and_their_settings():
    config = TrainConfig(variant="lite", cfa="xtrans", synthetic_patch_size=96).for_data(synthetic=True)
    g1_config = config.g1_config("xtrans-srgb-gated")
    assert (g1_config.period, g1_config.in_channels, g1_config.noise_channels) == (6, 36, 36)
    assert TrainConfig(variant="lite").for_data(synthetic=True).g1_config("none").period == 2
    g1 = G1(g1_config)
    rgb, features = g1.forward_features(torch.rand(2, 72, 16, 16))
    assert rgb.shape == (2, 3, 96, 96) and G2(g1_config)(features).shape == (2, 1, 96, 96)
    d = PatchDiscriminator(8, raw_channels=72, period=6)
    assert d(torch.rand(2, 72, 24, 24), torch.rand(2, 3, 144, 144)).shape[:2] == (2, 1)
    for bad, message in ((dict(synthetic_patch_size=64), "multiple of 48"), (dict(synthetic_patch_size=48), "≥ 96"),
                         (dict(input_normalization="wb+ccm"), "wb\\+ccm"),
                         (dict(residual_base="mhc-srgb-gated"), "not one of xtrans's"),
                         (dict(cfa="foveon"), "unknown --cfa")):
        with pytest.raises(TrainingError, match=message):
            TrainConfig(**{**dict(cfa="xtrans", synthetic_patch_size=96), **bad}).validate()
    with pytest.raises(TrainingError, match="pairs made on the fly"):
        TrainConfig(cfa="xtrans").for_data(synthetic=False)


def test_an_init_profile_of_the_other_sensor_is_refused(tmp_path, tiny_profile):
    from raw2rgb_plugin.training.checkpoint import starting_point

    config = TrainConfig(variant="lite", cfa="xtrans", init_profile=str(tiny_profile)).for_data(synthetic=True)
    with pytest.raises(TrainingError, match="renders bayer sensors, this run trains xtrans"):
        starting_point(config, "wb+ccm", None)


@pytest.mark.slow
def test_train_cfa_xtrans_makes_a_profile_that_convert_renders_xtrans_files_with(tmp_path, isolated_profile_dir):
    """A few steps of `train --synthetic --cfa xtrans` on tiny images → an X-Trans profile (period 6,
    36 noise channels) that `convert` uses on a synthetic X-Trans DNG; --resume keeps the sensor."""
    from typer.testing import CliRunner

    from raw2rgb_cli.main import app
    from raw2rgb_plugin.profiles.store import load_profile

    images = folder_of_smooth_images(tmp_path / "rgb", count=3, size=(100, 110))
    runner = CliRunner()
    common = ["--no-perceptual", "--stage1-epochs", "2", "--stage2-epochs", "0", "--patch-size", "96",
              "--patches-per-image", "2", "--batch-size", "2", "--json", "-q"]
    trained = runner.invoke(app, ["train", "--synthetic", str(images), "-o", str(tmp_path / "run"), "--cfa", "xtrans",
                                  "--variant", "lite", "--profile-name", "xt", "--hard-fraction", "0.5",
                                  "--max-steps", "2", *common])
    assert trained.exit_code == 0, trained.output
    profile = load_profile("xt")
    assert profile.cfa == "xtrans" and profile.reads_noise and profile.input_normalization == "linear-srgb"
    assert profile.metadata["architecture"]["residual_base"] == "xtrans-srgb-gated"
    assert profile.metadata["training"]["dataset"]["manifest"]["cfa"] == "xtrans"

    rng = np.random.default_rng(2)
    params = random_params(rng, cfa_pattern=XTRANS, noise=True)
    write_synthetic_dng(smooth_scene(66, 90, seed=2), tmp_path / "fuji.dng", rng, params=params)
    converted = runner.invoke(app, ["convert", str(tmp_path / "fuji.dng"), "-o", str(tmp_path / "out"), "--profile", "xt",
                                    "--json", "-q"])
    assert converted.exit_code == 0, converted.output
    import tifffile

    assert tifffile.imread(tmp_path / "out" / "fuji.tif").shape == (66, 90, 3)

    # --resume alone (no --cfa): the run's saved sensor makes its pairs, or G1 would be fed 8 channels
    resumed = runner.invoke(app, ["train", "--synthetic", str(images), "-o", str(tmp_path / "run"), "--resume",
                                  "--max-steps", "3", "--json", "-q"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["steps"] == 3 and load_profile("xt").cfa == "xtrans"
