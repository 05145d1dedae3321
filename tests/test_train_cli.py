"""End to end: `dataset synth` → `train` (with and without the perceptual loss) → `convert` and
`evaluate` with the exported profile, all through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from typer.testing import CliRunner

from raw2rgb_cli.main import app
from raw2rgb_plugin.profiles.store import load_profile

from train_helpers import install_vgg_weights, make_vgg_state

TRAIN = ["--variant", "lite", "--max-steps", "5", "--batch-size", "2", "--stage1-epochs", "1",
         "--stage2-epochs", "1", "--d-width", "8", "--device", "cpu"]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("RAW2RGB_PROFILE_DIR", str(tmp_path / "profiles"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks; spinning threads only slow a shared CPU down
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Four blocky sRGB images (sharp edges: a one-pixel misregistration would show) → synth."""
    root = tmp_path_factory.mktemp("synth")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        blocks = rng.uniform(0.15, 0.85, (32, 40, 3))
        Image.fromarray((np.kron(blocks, np.ones((4, 4, 1))) * 255).astype(np.uint8)).save(images / f"img{i}.png")
    out = root / "dataset"
    result = CliRunner().invoke(app, ["dataset", "synth", str(images), "-o", str(out), "--patch-size", "32",
                                      "--patches-per-image", "3", "--val-fraction", "0.25", "--previews", "0",
                                      "--no-noise", "--no-tone-curve", "-q"])
    assert result.exit_code == 0, result.output
    return out


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_train_options_take_their_defaults_from_train_config():
    import dataclasses
    import inspect

    from raw2rgb_cli import train_cmd
    from raw2rgb_plugin.training.config import TrainConfig

    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    field_of = {"init": "init_profile", "patch_size": "synthetic_patch_size",  # options named unlike their field
                "patches_per_image": "synthetic_patches_per_image", "clean_fraction": "synthetic_clean_fraction",
                "hard_fraction": "synthetic_hard_fraction", "balance_sources": "synthetic_balance_sources",
                "target": "synthetic_output"}
    options = {field_of.get(name, name): p.default.default for name, p in inspect.signature(train_cmd.train).parameters.items()}
    mirrored = {name: value for name, value in options.items() if name in defaults}
    # --variant auto resolves per device (lite on a CPU); TrainConfig keeps the seed's base for scripts.
    assert mirrored.pop("variant") == "auto" and defaults["variant"] == "base"
    assert mirrored == {name: defaults[name] for name in mirrored}
    # not CLI options (noise_map follows from --synthetic)
    assert set(defaults) - set(mirrored) == {"width", "betas", "lr_decay_factor", "noise_map", "variant"}


@pytest.mark.slow
def test_synth_train_convert_evaluate(tmp_path, dataset):
    install_vgg_weights(make_vgg_state())
    trained = invoke("train", dataset, "-o", tmp_path / "run", "--profile-name", "mine", "--json", *TRAIN)
    assert trained.exit_code == 0, trained.output
    summary = json.loads(trained.stdout)
    assert summary["steps"] == 5 and not summary["completed"]
    assert summary["installed"] == str(tmp_path / "profiles" / "mine.safetensors")
    assert "stage 2" in trained.stderr or "--max-steps reached" in trained.stderr

    meta = load_profile("mine").metadata
    training = meta["training"]
    assert training["perceptual"] is True and "perceptual_vgg16_conv4_3" in training["losses"]
    assert training["dataset"]["manifest"]["kind"] == "synthetic" and training["steps"] == 5
    assert training["command_line"].startswith("raw2rgb ") and meta["variant"] == "lite"
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[0]["event"] == "start" and log[-1]["event"] == "profile"

    # Without the perceptual loss (and no VGG weights anywhere): asked for explicitly, recorded.
    shutil.rmtree(tmp_path / "torch")
    plain = invoke("train", dataset, "-o", tmp_path / "run2", "--profile-name", "plain", "--no-perceptual", "-q", *TRAIN)
    assert plain.exit_code == 0, plain.output
    training = load_profile("plain").metadata["training"]
    assert training["perceptual"] is False and "perceptual_vgg16_conv4_3" not in training["losses"]

    # The profile converts a DNG through `raw2rgb convert --profile NAME`.
    dng = sorted((dataset / "synthetic_raw").glob("*.dng"))[0]
    converted = invoke("convert", dng, "-o", tmp_path / "tiffs", "--profile", "mine", "--json")
    assert converted.exit_code == 0, converted.output
    assert json.loads(converted.stdout)["converted"] == 1
    image = tifffile.imread(tmp_path / "tiffs" / f"{dng.stem}.tif")
    assert image.shape == (128, 160, 3) and image.dtype == np.uint16

    # evaluate: the profile and, in the same run, LibRaw's rendering of the same RAWs.
    evaluated = invoke("evaluate", "mine", dataset, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    scores = json.loads(evaluated.stdout)
    assert scores["patches"] == 3 and scores["baseline_kinds"] == {"libraw": 3}
    assert len(scores["images"]) == 1 and scores["images"][0]["patches"] == 3
    assert 0 < scores["ssim"] < 1 and np.isfinite(scores["psnr"])
    # Registered to the pixel: ~19 dB here; one pixel off measures below 17 dB on these edges.
    assert scores["baseline_psnr"] > 18
    table = invoke("evaluate", "mine", dataset)
    assert table.exit_code == 0 and "baseline" in table.stderr and "libraw" in table.stderr

    # Without the source RAWs the baseline falls back to bilinear demosaicking, and says so.
    (dataset / "synthetic_raw").rename(dataset / "moved")
    try:
        fallback = json.loads(invoke("evaluate", "mine", dataset, "--json").stdout)
    finally:
        (dataset / "moved").rename(dataset / "synthetic_raw")
    assert fallback["baseline_kinds"] == {"bilinear": 3}
    assert fallback["images"][0]["note"] == "source RAW not found"
    assert abs(fallback["baseline_psnr"] - scores["baseline_psnr"]) < 3


def test_train_without_vgg_weights_stops_before_training_and_names_both_ways(tmp_path, dataset, monkeypatch):
    from raw2rgb_plugin.models import vgg

    # As offline: the official URL cannot be fetched and the hub cache is empty.
    monkeypatch.setattr(vgg, "VGG16_URL", (tmp_path / "offline" / "vgg16-397923af.pth").as_uri())
    result = invoke("train", dataset, "-o", tmp_path / "run", *TRAIN)
    assert result.exit_code == 2
    assert "--vgg-weights" in result.stderr and "--no-perceptual" in result.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    # --vgg-weights with a file works the same as the cache.
    weights = tmp_path / "vgg.pth"
    torch.save(make_vgg_state(), weights)
    result = invoke("train", dataset, "-o", tmp_path / "run", "--vgg-weights", weights, "--max-steps", "1", "-q",
                    *TRAIN[:2], *TRAIN[4:])
    assert result.exit_code == 0, result.output
    assert load_profile("run").metadata["training"]["vgg_weights"] == str(weights)


def test_resume_through_the_cli(tmp_path, dataset):
    first = invoke("train", dataset, "-o", tmp_path / "run", "--no-perceptual", "-q", *TRAIN)
    assert first.exit_code == 0, first.output
    again = invoke("train", dataset, "-o", tmp_path / "run", "--no-perceptual", "-q", *TRAIN)
    assert again.exit_code == 2 and "--resume" in again.stderr
    resumed = invoke("train", dataset, "-o", tmp_path / "run", "--resume", "--json", "-q", "--max-steps", "8")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["steps"] == 8
    assert load_profile("run").metadata["training"]["steps"] == 8


@pytest.mark.slow
def test_worker_processes_change_nothing(tmp_path, dataset):
    """Spawned loader workers (LibRaw-safe) stream the on-disk shards; because every sample is
    loaded under its own seed, the run is the same as loading in the main process."""
    from raw2rgb_plugin.training.data.store import open_dataset
    from raw2rgb_plugin.training.trainer import TrainConfig, Trainer

    weights = {}
    for workers in (0, 2):
        config = TrainConfig(width=8, d_width=8, batch_size=2, stage1_epochs=1, stage2_epochs=1, perceptual=False,
                             device="cpu", workers=workers)
        trainer = Trainer(config, open_dataset(dataset), tmp_path / f"w{workers}", install_profile=False)
        trainer.run()
        weights[workers] = trainer.g1.state_dict()
    # Exact by construction: the steps run in this process either way; workers only read samples.
    assert all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])
