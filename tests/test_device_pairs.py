"""Pairs made on the training device equal the CPU workers' pairs (`onthefly.synthesize_pair`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from raw2rgb_plugin.training.data.device_pairs import Cameras, DeviceBatches, synthesize_batch
from raw2rgb_plugin.training.data.onthefly import OnTheFlyDataset, OnTheFlyOptions, synthesize_pair
from raw2rgb_plugin.training.data.unprocess import random_params
from raw2rgb_plugin.training.sampling import ResumableSampler, SeededItems, seeded_rngs

from helpers import CUDA_PARAM, folder_of_smooth_images, smooth_scene

NOISE = [(0.0, 0.0), (1.0e-4, 1.0e-7), (2.0e-3, 1.5e-5)]
DEVICES = ["cpu", CUDA_PARAM]  # CUDA: run by `pytest -m cuda` on a GPU machine (tools/gpu_session.sh)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["display", "scene-linear", "camera"])
def test_a_device_batch_is_the_cpu_pairs_up_to_one_quantisation_step(device, kind):
    # camera: a camera-space display profile's pairs (wb-headroom input, sRGB target, to_srgb)
    linear_target, camera_input = kind == "scene-linear", kind == "camera"
    rng = np.random.default_rng(4)
    crops = [smooth_scene(48, 48, seed=s).astype(np.float32) for s in range(3)]
    params = [random_params(rng, cfa_pattern="RGGB", noise=False, inverse_tone_curve=bool(k % 2)) for k in range(3)]
    normals = [rng.standard_normal((4, 24, 24)) for _ in range(3)]
    expected = [synthesize_pair(c, p, n, rng, with_noise_map=True, linear_target=linear_target, camera_input=camera_input,
                                sample_normal=lambda shape, z=z: z) for c, p, n, z in zip(crops, params, NOISE, normals)]

    srgb = torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2).copy()).to(device)
    got = synthesize_batch(srgb, Cameras.of(params, device), torch.tensor(NOISE, device=device),
                           torch.from_numpy(np.stack(normals)).float().to(device), with_noise_map=True,
                           linear_target=linear_target, camera_input=camera_input)
    assert ("to_srgb" in got) == camera_input

    for k, item in enumerate(expected):
        step = 1.0 / (params[k].white_level - params[k].black_level)
        raw = got["raw"][k].cpu()
        # float32 here, float64 in numpy: a value on a rounding boundary may land one step over,
        # which the colour normalisation scales by its gains and matrix (≤ ~5 steps).
        assert float((raw - item["raw"]).abs().max()) <= 6 * step + 1e-5
        assert float((raw - item["raw"]).abs().mean()) < 1e-5
        assert torch.allclose(got["rgb"][k].cpu(), item["rgb"], atol=2e-6)
        assert torch.equal(got["noise"][k].cpu(), item["noise"])
        if camera_input:
            assert torch.equal(got["to_srgb"][k].cpu(), item["to_srgb"])


def test_device_batches_cut_the_crops_and_cameras_the_workers_would(tmp_path):
    """Same sampler keys → the same crops, turns, cameras and noise levels as the CPU items."""
    data = OnTheFlyDataset(folder_of_smooth_images(tmp_path / "rgb"),
                           OnTheFlyOptions(patch_size=64, patches_per_image=3, val_fraction=0.25, clean_fraction=1.0))
    train = data.split("train", augment=True)
    sampler = ResumableSampler(train, num_replicas=1, rank=0, seed=3)
    batches = DeviceBatches(train, sampler, batch_size=4, device=torch.device("cpu"))
    first = next(iter(batches))
    again = next(iter(batches))
    assert first["raw"].shape == (4, 8, 32, 32) and first["rgb"].shape == (4, 3, 64, 64)
    assert first["saliency"].shape == (4, 1, 64, 64) and float(first["saliency"].max()) <= 1.0
    assert all(torch.equal(first[k], again[k]) for k in first)  # resumable: the same keys, the same batch

    keys = list(iter(sampler))[:4]
    for k, key in enumerate(keys):
        item = SeededItems(train)[key]  # what a loader worker makes for this key (all clean here)
        assert torch.allclose(first["rgb"][k], item["rgb"], atol=1e-6)
        assert float((first["raw"][k] - item["raw"]).abs().max()) < 2e-3
        assert torch.equal(first["noise"][k], item["noise"])


@pytest.mark.slow
def test_train_with_pairs_on_device(tmp_path, isolated_profile_dir):
    from typer.testing import CliRunner

    from raw2rgb_cli.main import app

    images = folder_of_smooth_images(tmp_path / "rgb", count=3, size=(96, 96))
    done = CliRunner().invoke(app, ["train", "--synthetic", str(images), "-o", str(tmp_path / "run"), "--variant", "lite",
                                    "--profile-name", "dev", "--no-perceptual", "--stage1-epochs", "1",
                                    "--stage2-epochs", "0", "--patch-size", "64", "--patches-per-image", "2",
                                    "--batch-size", "2", "--max-steps", "2", "--pairs-on-device", "--device", "cpu"])
    assert done.exit_code == 0, done.output
    assert (isolated_profile_dir / "dev.safetensors").is_file()


def test_hard_examples_are_cut_where_a_classical_demosaic_errs(tmp_path):
    """Half the image flat, half fine stripes: mined crops land on the stripes."""
    folder = tmp_path / "rgb"
    folder.mkdir()
    image = np.full((96, 400, 3), 120, np.uint8)
    image[:, 200:, :][:, :, 0] = np.where(np.arange(200) % 3 == 0, 250, 20)[None, :]  # red stripes: MHC's worst case
    for i in range(2):
        Image.fromarray(image).save(folder / f"img{i}.png")

    def stripe_share(hard: float) -> float:
        data = OnTheFlyDataset(folder, OnTheFlyOptions(patch_size=64, patches_per_image=40, val_fraction=0.5,
                                                       hard_fraction=hard))
        train = data.split("train", augment=True)
        xs = []
        for index in range(len(train)):
            with seeded_rngs(index):
                xs.append(train.draws(index).x)
        return float(np.mean([x + 32 > 200 for x in xs]))

    # One draw lands on the stripes about half the time; the worst of four misses only if all four do.
    assert stripe_share(0.0) < 0.65 and stripe_share(1.0) > 0.8
