"""The trainer: both stages with every loss, learning-rate schedules, exact resume, DDP, export."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.models.g1 import G1, G1Config, plain_state_dict
from raw2rgb_plugin.profiles.store import load_profile, save_profile
from raw2rgb_plugin.training.trainer import TrainConfig, Trainer, TrainingError

from helpers import cuda_test
from train_helpers import PairDatasetInMemory, install_vgg_weights, make_vgg_state

ROOT = Path(__file__).resolve().parents[1]

#: width-8 networks, 32 packed px (64 px RGB) patches, 2 per batch: every step takes milliseconds.
TINY = TrainConfig(width=8, d_width=8, batch_size=2, stage1_epochs=1, stage2_epochs=1, perceptual=False, device="cpu")


# Tiny networks gain nothing from intra-op threads (see conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def profile_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "installed-profiles"
    monkeypatch.setenv("RAW2RGB_PROFILE_DIR", str(path))
    return path


@pytest.fixture(scope="module")
def vgg_state():
    return make_vgg_state()


def snapshot(trainer: Trainer) -> dict[str, dict[str, torch.Tensor]]:
    return {
        name: {k: v.detach().clone() for k, v in getattr(trainer, name).state_dict().items()}
        for name in ("g1", "g2", "d")
    }


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())


def test_both_stages_train_g1_g2_and_d_with_every_loss(tmp_path, monkeypatch, vgg_state, profile_dir):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    install_vgg_weights(vgg_state)
    config = dataclasses.replace(TINY, perceptual=True)
    trainer = Trainer(config, PairDatasetInMemory(), tmp_path / "run", profile_name="tiny", command_line="raw2rgb train test")
    events: list[dict] = []
    snapshots = [snapshot(trainer)]

    def on_event(event: dict) -> None:
        events.append(event)
        if event["event"] == "epoch":
            snapshots.append(snapshot(trainer))

    trainer.on_event = on_event
    result = trainer.run()
    start, after_stage1, after_stage2 = snapshots

    # Stage 1 (L1 + attention) trains G1 and G2 and leaves D alone; stage 2 steps D too.
    assert changed(start["g1"], after_stage1["g1"]) and changed(start["g2"], after_stage1["g2"])
    assert not changed(start["d"], after_stage1["d"])
    assert changed(after_stage1["d"], after_stage2["d"])
    assert changed(after_stage1["g1"], after_stage2["g1"]) and changed(after_stage1["g2"], after_stage2["g2"])

    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 9)) and result.global_step == 8 == trainer.total_steps
    stage1 = [e for e in steps if e["stage"] == 1]
    stage2 = [e for e in steps if e["stage"] == 2]
    assert len(stage1) == len(stage2) == 4
    assert all(set(e["losses"]) == {"l1", "attn", "g"} for e in stage1)
    assert all(set(e["losses"]) == {"l1", "attn", "perc", "gan", "d", "g"} for e in stage2)
    assert all(e["lr_g"] == 2e-4 and e["lr_d"] is None for e in stage1)
    assert all(e["lr_g"] == 1e-4 and e["lr_d"] == 4e-4 for e in stage2)
    for e in stage2:  # the generator's objective is the weighted sum of its four terms
        losses = e["losses"]
        assert losses["g"] == pytest.approx(
            losses["l1"] + 0.5 * losses["attn"] + losses["perc"] + 0.01 * losses["gan"], rel=1e-5)

    epochs = [e for e in events if e["event"] == "epoch"]
    assert [e["stage"] for e in epochs] == [1, 2]
    assert all(e["validation"]["count"] == 2 and 0 < e["validation"]["ssim"] < 1 for e in epochs)
    assert result.completed and result.validation == epochs[-1]["validation"]

    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["event"] for r in log if r["event"] != "step"] == ["start", "epoch", "epoch", "profile"]

    # The exported profile is installed where `convert --profile tiny` looks, and is this G1.
    assert result.installed_profile_path == profile_dir / "tiny.safetensors"
    profile = load_profile("tiny")
    meta = profile.metadata
    assert meta["input_normalization"] == "wb+ccm" and meta["architecture"]["width"] == 8
    training = meta["training"]
    assert training["perceptual"] is True and training["losses"] == {
        "l1": 1.0, "attention": 0.5, "perceptual_vgg16_conv4_3": 1.0, "lsgan": 0.01}
    assert training["steps"] == 8 and training["completed"] is True
    assert training["validation"] == result.validation and training["command_line"] == "raw2rgb train test"
    assert training["dataset"]["manifest"]["source"] == "in-memory test pairs"
    raw = torch.rand(1, 4, 32, 32)
    trainer.g1.eval()
    with torch.no_grad():
        assert torch.allclose(profile.model(raw), trainer.g1(raw), atol=1e-5)


def test_each_stage_and_network_keeps_its_own_learning_rate_schedule(tmp_path):
    config = dataclasses.replace(TINY, stage1_epochs=2, stage2_epochs=3, lr_decay_every=2)
    trainer = Trainer(config, PairDatasetInMemory(), tmp_path / "run", install_profile=False)
    events: list[dict] = []
    trainer.on_event = events.append
    trainer.run()
    by_epoch = {}
    for e in events:
        if e["event"] == "step":
            by_epoch.setdefault(e["epoch"], set()).add((e["stage"], e["lr_g"], e["lr_d"]))
    assert by_epoch == {
        0: {(1, 2e-4, None)},
        1: {(1, 2e-4, None)},
        # Stage 2 restarts its schedules: G at 1e-4, D at its own 4e-4, both halving every 2 epochs.
        2: {(2, 1e-4, 4e-4)},
        3: {(2, 1e-4, 4e-4)},
        4: {(2, 5e-5, 2e-4)},
    }


@pytest.mark.slow
def test_resume_continues_exactly_as_an_uninterrupted_run(tmp_path):
    config = dataclasses.replace(TINY, stage2_epochs=2, checkpoint_every=3, log_every=1)
    whole = Trainer(config, PairDatasetInMemory(), tmp_path / "whole", install_profile=False)
    whole.run()
    expected = snapshot(whole)
    # Interrupted mid-epoch in stage 1, at the end of stage 1 (before its epoch-end) and in stage 2.
    for stop in (3, 4, 9):
        run_dir = tmp_path / f"stopped{stop}"
        first = Trainer(dataclasses.replace(config, max_steps=stop), PairDatasetInMemory(), run_dir, install_profile=False)
        interrupted = first.run()
        assert interrupted.global_step == stop and not interrupted.completed
        torch.manual_seed(1234)  # a new process would start from other RNG states
        torch.rand(3)
        resumed = Trainer(config, PairDatasetInMemory(), run_dir, resume=True, install_profile=False)
        result = resumed.run()
        assert result.completed and result.global_step == 12
        got = snapshot(resumed)
        # Exact by construction, not by luck: both runs are in this process, on the same kernels
        # and thread count, and every random state comes back from the checkpoint; a tolerance
        # would hide a state the checkpoint forgot.
        for name in expected:
            for key, value in expected[name].items():
                assert torch.equal(value, got[name][key]), f"stop at {stop}: {name}.{key} differs"
        for opt in ("opt_g", "opt_d"):
            a, b = getattr(whole.gan, opt).state_dict(), getattr(resumed.gan, opt).state_dict()
            assert all(torch.equal(a["state"][i]["exp_avg_sq"], b["state"][i]["exp_avg_sq"]) for i in a["state"])
        # The log tells one story: every step once, in order, across the interruption.
        records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records if r["event"] == "step"] == list(range(1, 13))
        assert [r["step"] for r in records if r["event"] == "epoch"] == [4, 8, 12]


def test_a_crashed_run_resumes_from_its_last_checkpoint_with_a_consistent_log(tmp_path):
    config = dataclasses.replace(TINY, log_every=1, checkpoint_every=2)
    run_dir = tmp_path / "run"

    class Crash(Exception):
        pass

    def crash_after_step_3(event: dict) -> None:
        if event["event"] == "step" and event["step"] == 3:
            raise Crash  # step 3 is logged, the last checkpoint holds step 2

    crashed = Trainer(config, PairDatasetInMemory(), run_dir, install_profile=False, on_event=crash_after_step_3)
    with pytest.raises(Crash):
        crashed.run()
    assert '"step": 3' in (run_dir / "log.jsonl").read_text()
    result = Trainer(config, PairDatasetInMemory(), run_dir, resume=True, install_profile=False).run()
    assert result.completed and result.global_step == 8
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["event"] == "step"] == list(range(1, 9))
    assert [r["event"] for r in records if r["event"] != "step"] == ["start", "resume", "epoch", "epoch", "profile"]


def test_run_directory_guards(tmp_path):
    with pytest.raises(TrainingError, match="no checkpoint"):
        Trainer(TINY, PairDatasetInMemory(), tmp_path / "run", resume=True)
    Trainer(dataclasses.replace(TINY, max_steps=1), PairDatasetInMemory(), tmp_path / "run", install_profile=False).run()
    with pytest.raises(TrainingError, match="--resume"):
        Trainer(TINY, PairDatasetInMemory(), tmp_path / "run")
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TrainingError, match="cannot read"):
        Trainer(TINY, PairDatasetInMemory(), tmp_path / "run", resume=True)


def test_installed_profile_of_another_run_is_not_replaced_silently(tmp_path, profile_dir):
    save_profile(profile_dir / "mine.safetensors", G1(G1Config(width=8, spectral_norm=False)), {"input_normalization": "wb+ccm"})
    with pytest.raises(TrainingError, match="already installed"):
        Trainer(TINY, PairDatasetInMemory(), tmp_path / "run", profile_name="mine")
    with pytest.raises(TrainingError, match="plain file name"):
        Trainer(TINY, PairDatasetInMemory(), tmp_path / "run", profile_name="../escape")
    trainer = Trainer(dataclasses.replace(TINY, max_steps=1), PairDatasetInMemory(), tmp_path / "run",
                      profile_name="mine", overwrite_profile=True)
    trainer.run()
    assert load_profile("mine").metadata["training"]["run_id"] == trainer.run_id
    # The run that owns the installed profile may re-export it when resumed.
    Trainer(dataclasses.replace(TINY, max_steps=2), PairDatasetInMemory(), tmp_path / "run", resume=True).run()
    assert load_profile("mine").metadata["training"]["steps"] == 2


def test_init_from_a_profile_fine_tunes_its_weights(tmp_path):
    torch.manual_seed(5)
    trained = G1(G1Config(width=8))
    with torch.no_grad():  # as after training: the spectral-norm power iteration has converged
        for _ in range(30):
            trained(torch.rand(2, 4, 16, 16))
    path = save_profile(tmp_path / "start.safetensors", trained.eval(), {"input_normalization": "wb+ccm"})
    source = load_profile(path).model
    config = dataclasses.replace(TINY, width=None, variant="base", init_profile=str(path), max_steps=1)
    trainer = Trainer(config, PairDatasetInMemory(), tmp_path / "run", install_profile=False)
    assert trainer.config.width == 8 and trainer.g1.config.spectral_norm
    raw = torch.rand(1, 4, 32, 32)
    trainer.g1.eval()
    with torch.no_grad():
        # Equal up to how far the profile's own power iteration had converged (~1e-3 here).
        assert torch.allclose(trainer.g1(raw), source(raw), atol=5e-3)
        assert not torch.allclose(G1(G1Config(width=8)).eval()(raw), source(raw), atol=5e-2)
    trainer.g1.train()
    events: list[dict] = []
    trainer.on_event = events.append
    result = trainer.run()
    assert load_profile(result.profile_path).metadata["training"]["init_profile"] == "start"
    assert not [e for e in events if e["event"] == "note"]
    # Weights that never saw spectral norm cannot be reproduced under it: the run says so.
    plain = save_profile(tmp_path / "plain.safetensors", G1(G1Config(width=8, spectral_norm=False)),
                         {"input_normalization": "wb+ccm"})
    events.clear()
    Trainer(dataclasses.replace(config, init_profile=str(plain)), PairDatasetInMemory(), tmp_path / "plain-run",
            install_profile=False, on_event=events.append).run()
    assert any(e["event"] == "note" and "spectral" in e["message"] for e in events)
    with pytest.raises(TrainingError, match="expects 'wb\\+ccm' input"):
        Trainer(config, PairDatasetInMemory(input_normalization="raw"), tmp_path / "other", install_profile=False)


def test_bad_shapes_and_sizes_are_user_errors(tmp_path):
    with pytest.raises(TrainingError, match="too small for the discriminator"):
        Trainer(TINY, PairDatasetInMemory(packed=16), tmp_path / "a", install_profile=False)
    Trainer(dataclasses.replace(TINY, lambda_gan=0.0), PairDatasetInMemory(packed=16), tmp_path / "b", install_profile=False)
    with pytest.raises(TrainingError, match="fewer than one batch"):
        Trainer(dataclasses.replace(TINY, batch_size=16), PairDatasetInMemory(), tmp_path / "c", install_profile=False)
    with pytest.raises(Raw2RgbError, match="unknown variant"):
        Trainer(dataclasses.replace(TINY, width=None, variant="huge"), PairDatasetInMemory(), tmp_path / "d")
    with pytest.raises(Raw2RgbError, match="input normalisation"):
        Trainer(dataclasses.replace(TINY, input_normalization="srgb"), PairDatasetInMemory(), tmp_path / "e")


def test_the_seed_values_are_the_defaults():
    c = TrainConfig()
    assert (c.lambda_l1, c.lambda_attn, c.lambda_perc, c.lambda_gan) == (1.0, 0.5, 1.0, 0.01)
    assert c.betas == (0.5, 0.999) and c.batch_size == 8
    assert (c.lr_stage1, c.stage1_epochs, c.lr_g, c.lr_d, c.stage2_epochs) == (2e-4, 10, 1e-4, 4e-4, 30)
    assert (c.lr_decay_every, c.lr_decay_factor) == (10, 0.5) and c.perceptual and c.variant == "base"


def test_the_cli_and_the_shared_vocabulary_import_no_torch():
    done = subprocess.run([sys.executable, "-c", "import sys, raw2rgb_plugin.vocabulary; print('torch' in sys.modules)"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    done = subprocess.run([sys.executable, "-c", "import sys, raw2rgb_cli.main; print('torch' in sys.modules)"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"  # `raw2rgb --help` stays fast


@pytest.mark.slow
def test_ddp_two_processes_stay_in_sync(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(ROOT / "tests" / "train_helpers.py"), str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys() and len(rank0) > 50
    # Exact by construction: all-reduce gives both ranks the same gradients, on the same machine.
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    # 8 patches over 2 ranks at batch 2: 2 steps per epoch on each rank, 2 epochs.
    assert (tmp_path / "rank0.steps").read_text() == (tmp_path / "rank1.steps").read_text() == "4 2"
    torch.manual_seed(0)
    initial = dict(G1(G1Config(width=8)).named_parameters())
    assert any(not torch.equal(initial[k], rank0[f"g1.{k}"]) for k in initial)
    # Only rank 0 wrote the run's files.
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint.pt", "log.jsonl", "run.safetensors"]


def test_resume_refuses_a_changed_dataset(tmp_path):
    Trainer(dataclasses.replace(TINY, max_steps=1), PairDatasetInMemory(), tmp_path / "run", install_profile=False).run()
    with pytest.raises(TrainingError, match="run started with 8"):
        Trainer(TINY, PairDatasetInMemory(train=10), tmp_path / "run", resume=True, install_profile=False)


def test_keep_best_exports_the_epoch_with_the_best_validation_score(tmp_path, monkeypatch, profile_dir):
    from raw2rgb_plugin.models.g1 import plain_state_dict
    from raw2rgb_plugin.training.trainer import BEST_NAME

    # Scripted scores make the middle epoch the best one; training and export are real.
    scores = iter([20.0, 25.0, 22.0])
    monkeypatch.setattr(Trainer, "_validate", lambda self: {"psnr": next(scores), "ssim": 0.5, "count": 2})
    config = dataclasses.replace(TINY, stage1_epochs=3, stage2_epochs=0, keep_best=True)
    trainer = Trainer(config, PairDatasetInMemory(), tmp_path / "run", profile_name="best-of-three")
    weights: dict[int, dict[str, torch.Tensor]] = {}

    def keep_weights(event: dict) -> None:
        if event["event"] == "epoch":
            trainer.g1.eval()
            weights[event["epoch"]] = {k: v.clone() for k, v in plain_state_dict(trainer.g1).items()}
            trainer.g1.train()

    trainer.on_event = keep_weights
    result = trainer.run()

    assert result.validation["psnr"] == 25.0 and (tmp_path / "run" / BEST_NAME).is_file()
    profile = load_profile("best-of-three")
    training = profile.metadata["training"]
    assert training["selected"] == {"epoch": 1, "step": 8, "by": "validation PSNR"}
    assert training["validation"]["psnr"] == 25.0 and training["steps"] == 12 and training["completed"]
    exported = profile.model.state_dict()
    assert all(torch.allclose(exported[k].float(), v.float()) for k, v in weights[1].items())
    assert not all(torch.allclose(exported[k].float(), v.float()) for k, v in weights[2].items())


def test_linear_srgb_runs_learn_a_residual_over_the_classical_rendering(tmp_path, profile_dir):
    data = PairDatasetInMemory(input_normalization="linear-srgb")
    auto = Trainer(dataclasses.replace(TINY, stage2_epochs=0), data, tmp_path / "auto", install_profile=False)
    assert auto.g1.config.residual_base == "lsq-srgb-gated"  # auto, for linear-srgb input
    result = auto.run()
    assert load_profile(result.profile_path).model.config.residual_base == "lsq-srgb-gated"
    additive = Trainer(dataclasses.replace(TINY, stage2_epochs=0, residual_base="mhc-srgb"), data, tmp_path / "add",
                       install_profile=False)
    before = additive.g1.residual_gain.item()
    additive.run()
    assert before == 0.0 and additive.g1.residual_gain.item() != 0.0

    with pytest.raises(TrainingError, match="linear-srgb"):
        Trainer(dataclasses.replace(TINY, residual_base="mhc-srgb"), PairDatasetInMemory(), tmp_path / "wrong")
    plain = Trainer(dataclasses.replace(TINY, residual_base="none"), data, tmp_path / "plain", install_profile=False)
    assert plain.g1.config.residual_base == "none"


def test_init_can_add_a_residual_base_to_a_plain_profile(tmp_path):
    torch.manual_seed(4)
    start = G1(G1Config(width=8, spectral_norm=False)).eval()
    path = save_profile(tmp_path / "plain.safetensors", start, {"input_normalization": "linear-srgb"})
    data = PairDatasetInMemory(input_normalization="linear-srgb")

    def g1_from(base: str) -> G1:
        config = dataclasses.replace(TINY, init_profile=str(path), residual_base=base)
        return Trainer(config, data, tmp_path / f"run-{base}", install_profile=False).g1.eval()

    added, gated, kept = g1_from("mhc-srgb"), g1_from("mhc-srgb-gated"), g1_from("auto")
    assert added.config.residual_base == "mhc-srgb" and added.residual_gain.item() == 0.0
    assert gated.config.residual_base == "mhc-srgb-gated"
    assert kept.config.residual_base == "none"  # auto keeps the profile's own
    x = torch.rand(1, 4, 16, 16)
    with torch.no_grad():  # the same encoder/decoder weights either way
        for model in (added, gated):
            assert torch.allclose(model.forward_features(x)[1][-1], kept.forward_features(x)[1][-1], atol=1e-5)


def test_init_adds_fine_blocks_that_start_by_changing_nothing(tmp_path):
    """`train --init default-lite --fine-blocks 2`: the new blocks enter through zero gains, so the
    run starts from the profile's own rendering; asking for fewer than it has is refused."""
    torch.manual_seed(6)
    start = G1(G1Config(width=8, spectral_norm=False, residual_base="mhc-srgb-gated")).eval()
    path = save_profile(tmp_path / "start.safetensors", start, {"input_normalization": "linear-srgb"})
    data = PairDatasetInMemory(input_normalization="linear-srgb")
    config = dataclasses.replace(TINY, init_profile=str(path), fine_blocks=2, max_steps=2)
    trainer = Trainer(config, data, tmp_path / "run", install_profile=False)
    g1 = trainer.g1.eval()
    assert g1.config.fine_blocks == 2 and all(float(block.gain.detach()) == 0.0 for block in g1.fine)
    x = torch.rand(1, 4, 16, 16)
    with torch.no_grad():
        plain = G1(dataclasses.replace(g1.config, spectral_norm=False, fine_blocks=0)).eval()
        plain.load_state_dict({k: v for k, v in plain_state_dict(g1).items() if not k.startswith("fine.")})
        assert torch.allclose(g1(x), plain(x), atol=1e-6)
    g1.train()
    result = trainer.run()
    trained = load_profile(result.profile_path)
    assert trained.metadata["architecture"]["fine_blocks"] == 2
    assert any(float(block.gain) != 0.0 for block in trained.model.fine)  # the gains learn
    with pytest.raises(TrainingError, match="fine blocks"):
        Trainer(dataclasses.replace(TINY, init_profile=str(result.profile_path), fine_blocks=1), data,
                tmp_path / "fewer", install_profile=False)


def test_max_minutes_stops_with_a_checkpoint_and_a_profile(tmp_path):
    config = dataclasses.replace(TINY, stage1_epochs=50, max_minutes=1e-6)  # out of time after the first step
    events: list[dict] = []
    result = Trainer(config, PairDatasetInMemory(), tmp_path / "run", install_profile=False, on_event=events.append).run()
    assert result.global_step == 1 and not result.completed and result.profile_path.is_file()
    assert [e["reason"] for e in events if e["event"] == "stop"] == ["max_minutes"]
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


def test_a_display_profile_starts_a_scene_linear_run_keeping_its_gate(tmp_path):
    """`train --target scene-linear --init default-lite`: the linear base replaces the sRGB one,
    every weight (gate included) carries over, and the run only starts when asked for its input."""
    torch.manual_seed(5)
    start = G1(G1Config(width=8, spectral_norm=False, residual_base="mhc-srgb-gated")).eval()
    path = save_profile(tmp_path / "display.safetensors", start, {"input_normalization": "linear-srgb"})
    data = PairDatasetInMemory(input_normalization="wb-headroom")
    with pytest.raises(TrainingError, match="linear-srgb"):  # not asked for: a mismatch is refused
        Trainer(dataclasses.replace(TINY, init_profile=str(path)), data, tmp_path / "refused", install_profile=False)
    config = dataclasses.replace(TINY, init_profile=str(path), input_normalization="wb-headroom")
    g1 = Trainer(config, data, tmp_path / "run", install_profile=False).g1
    assert g1.config.residual_base == "mhc-linear-gated"
    display_data = PairDatasetInMemory(input_normalization="linear-srgb")
    display_run = Trainer(dataclasses.replace(TINY, init_profile=str(path)), display_data, tmp_path / "display",
                          install_profile=False).g1
    linear, display = plain_state_dict(g1), plain_state_dict(display_run)
    assert linear["d4.conv.weight"].shape[0] == 16  # 12 image channels + the 4 gates
    assert set(linear) == set(display) and all(torch.equal(linear[k], display[k]) for k in linear)


@cuda_test
def test_both_stages_train_on_cuda_resume_and_export_a_profile_the_cpu_runs(tmp_path, monkeypatch, vgg_state):
    """The GAN on the GPU with its mixed precision: every loss finite, an interrupted run resumes from
    its checkpoint, and the exported profile renders on the CPU what the trained G1 renders on CUDA."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    install_vgg_weights(vgg_state)
    config = dataclasses.replace(TINY, perceptual=True, device="cuda", checkpoint_every=3)
    run_dir = tmp_path / "run"
    first = Trainer(dataclasses.replace(config, max_steps=3), PairDatasetInMemory(), run_dir, profile_name="tiny-cuda")
    assert first.amp_dtype in (torch.bfloat16, torch.float16)
    assert first.run().global_step == 3
    resumed = Trainer(config, PairDatasetInMemory(), run_dir, resume=True, profile_name="tiny-cuda")
    events: list[dict] = []
    resumed.on_event = events.append
    result = resumed.run()
    assert result.completed and result.global_step == 8
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(4, 9))
    assert all(torch.isfinite(torch.tensor(list(e["losses"].values()))).all() for e in steps)
    profile = load_profile("tiny-cuda")
    raw = torch.rand(1, 4, 32, 32)
    resumed.g1.eval()
    with torch.no_grad():
        on_gpu = resumed.g1(raw.cuda()).float().cpu()
        assert torch.allclose(profile.model(raw), on_gpu, atol=2e-3)  # TF32 convolutions on the GPU
