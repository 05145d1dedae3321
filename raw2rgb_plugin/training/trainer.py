"""Training RAW2RGB-GAN: G1 + G2 + D in two stages, resumable, single process or DDP.

This module is the loop — epochs, stages, validation, stop conditions, keep-best — over parts
that each do one thing:

- `sampling`: data order that depends only on (seed, epoch, index), and the loaders;
- `distributed`: the process group under `torchrun`, each rank's device, the collectives;
- `gan_step`: the networks' one optimisation step and each stage's optimisers;
- `checkpoint`: the exact-resume checkpoint, and where a run starts (checkpoint, --init, scratch);
- `run_log`: `log.jsonl`;
- `export`: the profile's metadata, export and installation.

Scale-out: under `torchrun` both generators and D are wrapped in DistributedDataParallel, each
rank reads its shard of every epoch, validation is sharded and summed, and only rank 0 writes
logs, checkpoints and the profile.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from raw2rgb_plugin.models.discriminator import MIN_PACKED_SIZE, PatchDiscriminator
from raw2rgb_plugin.models.g1 import PACKED_STRIDE
from raw2rgb_plugin.models.g2 import G2
from raw2rgb_plugin.models.vgg import load_vgg16_conv4_3
from raw2rgb_plugin.pipeline.metrics import psnr, ssim
from raw2rgb_plugin.training.checkpoint import (
    CHECKPOINT_NAME,
    initial_g1,
    open_run,
    pack_checkpoint,
    run_config,
    set_rng_state,
    starting_point,
    write_checkpoint,
)
from raw2rgb_plugin.training.config import TrainConfig, TrainingError
from raw2rgb_plugin.training.distributed import any_rank, init_distributed, leave_distributed, sum_over_ranks, training_device
from raw2rgb_plugin.training.export import (
    BEST_NAME,
    Provenance,
    best_record,
    check_installed_profile,
    checked_profile_name,
    export_profile,
    load_best,
    profile_metadata,
    save_best,
)
from raw2rgb_plugin.training.gan_step import GanStep, GeneratorPair, autocast_dtype, cpu_training_dtype
from raw2rgb_plugin.training.losses import PerceptualLoss, network_rendering, output_view
from raw2rgb_plugin.training.run_log import LOG_NAME, RunLog, StepRate, now
from raw2rgb_plugin.training.sampling import RankShard, ResumableSampler, SeededItems, make_loader

# The names callers have imported from here since before the split.
__all__ = ["BEST_NAME", "CHECKPOINT_NAME", "LOG_NAME", "TrainConfig", "TrainResult", "Trainer", "TrainingError"]


@dataclass
class TrainResult:
    global_step: int
    epoch: int
    completed: bool  # all epochs done (not stopped by --max-steps or a stop request)
    validation: dict | None
    profile_path: Path | None
    installed_profile_path: Path | None


class Trainer:
    """One training run in `run_dir` on `dataset` (an object with `.manifest` and `.split()`).

    `on_event(dict)` receives progress events on rank 0 (`start`, `step`, `epoch`,
    `checkpoint`, `stop`, `profile`); the CLI renders them.
    """

    def __init__(
        self,
        config: TrainConfig,
        dataset: Any,
        run_dir: str | os.PathLike,
        *,
        resume: bool = False,
        profile_name: str | None = None,
        overwrite_profile: bool = False,
        install_profile: bool = True,
        dataset_path: str | os.PathLike | None = None,
        command_line: str | None = None,
        on_event: Callable[[dict], None] | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.on_event = on_event
        self.install_profile = install_profile
        self._stop_requested = False
        self._deadline: float | None = None  # monotonic time of --max-minutes, set when run() starts
        checkpoint = open_run(self.run_dir, resume)
        progress = json.loads(checkpoint["progress"]) if checkpoint is not None else {}
        self.config = run_config(config, checkpoint)
        self.dist = init_distributed(self.config.device)
        self.device = training_device(self.config.device, self.dist)
        self.amp_dtype = autocast_dtype(self.device, self.config.amp)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed patch size: pick the fastest kernels once

        self.run_id: str = progress.get("run_id") or uuid.uuid4().hex
        self.started: str = progress.get("started") or now()
        self.profile_name = checked_profile_name(profile_name or progress.get("profile_name") or self.run_dir.name)
        if install_profile and self.dist.is_main:  # before the work, not when exporting it
            check_installed_profile(self.profile_name, self.run_id, overwrite=overwrite_profile)
        self._open_data(dataset, progress.get("train_patches"))
        self._build_networks(progress if checkpoint is not None else None)
        self.provenance = self._provenance(dataset_path, command_line)

        # Position: the next batch to train is batch `batch_in_epoch` of `epoch`.
        self.epoch = int(progress.get("epoch", 0))
        self.batch_in_epoch = int(progress.get("batch_in_epoch", 0))
        self.global_step = int(progress.get("global_step", 0))
        self.history: list[dict] = list(progress.get("history", []))
        self.resumed = checkpoint is not None
        offset = int(progress.get("log_offset", 0)) if self.resumed else None
        self.log = RunLog(self.run_dir, enabled=self.dist.is_main, resume_offset=offset)
        if checkpoint is not None:
            self._restore(checkpoint, progress)
        self._last_losses: dict[str, float] = {}
        self._val_loader: DataLoader | None = None

    # ---------------------------------------------------------------- set-up

    def _open_data(self, dataset: Any, saved_count: int | None) -> None:
        """The splits, the training sampler and the run's length in steps."""
        cfg = self.config
        self.manifest: dict = dict(getattr(dataset, "manifest", {}) or {})
        self.input_normalization: str = cfg.input_normalization or self.manifest.get("input_normalization", "wb+ccm")
        self.view = output_view(self.manifest.get("output", "display"))  # what losses and PSNR compare
        # A camera-space G1's output is rendered to display (per-sample matrices) before the view.
        self.network_space: str = self.manifest.get("network_space", "srgb")
        if self.network_space != cfg.space:
            raise TrainingError(f"this run trains G1 in {cfg.space} space, the data is made for {self.network_space}",
                                f"use --network-space {cfg.space} with --synthetic RGB_DIR (as the run started)")
        self.rendering = network_rendering(self.network_space)
        # A dataset keeps raw sensor integers and normalises on reading, so it can serve any mode.
        mode = {"input_normalization": cfg.input_normalization} if cfg.input_normalization else {}
        self.train_items = dataset.split("train", augment=True, **mode)
        self.val_items = dataset.split("val", augment=False, **mode)
        self.patch_size = self._check_patches()
        self.train_sampler = ResumableSampler(
            self.train_items, num_replicas=self.dist.world_size, rank=self.dist.rank, seed=cfg.seed
        )
        if self.train_sampler.num_samples < cfg.batch_size:
            raise TrainingError(
                f"the dataset has {len(self.train_items)} training patches, fewer than one batch of "
                f"{cfg.batch_size} per process",
                "lower --batch-size or build a larger dataset",
            )
        if saved_count is not None and saved_count != len(self.train_items):
            raise TrainingError(
                f"the dataset has {len(self.train_items)} training patches, the run started with {saved_count}",
                "resume with the dataset the run was started on, or start a new run (--init can reuse its profile)",
            )
        self.steps_per_epoch = self.train_sampler.num_samples // cfg.batch_size
        self.total_epochs = cfg.stage1_epochs + cfg.stage2_epochs
        planned = self.steps_per_epoch * self.total_epochs
        self.total_steps = min(planned, cfg.max_steps) if cfg.max_steps else planned

    def _check_patches(self) -> int:
        """The patches' packed size, once it is known G1 and D can take them."""
        if len(self.train_items) == 0:
            raise TrainingError("the dataset has no training patches", "build it from more pairs")
        raw = SeededItems(self.train_items)[(0, self.config.seed)]["raw"]
        self.input_channels = int(raw.shape[0])
        packed = int(raw.shape[-1])
        if packed % PACKED_STRIDE or int(raw.shape[-2]) % PACKED_STRIDE:
            raise TrainingError(
                f"patches of {tuple(raw.shape[-2:])} packed px are not multiples of {PACKED_STRIDE}",
                "rebuild the dataset with a patch size that is a multiple of 16 sensor px",
            )
        if self.config.uses_gan and packed < MIN_PACKED_SIZE:
            raise TrainingError(
                f"patches of {packed} packed px are too small for the discriminator (needs ≥ {MIN_PACKED_SIZE})",
                "rebuild the dataset with larger patches, or train without the GAN (--lambda-gan 0)",
            )
        return packed

    def _build_networks(self, progress: dict | None) -> None:
        """G1, G2 and D from the starting point (`progress` of a resumed run), on the device."""
        cfg = self.config
        # Same seed on every rank: identical initial weights (DDP would broadcast them anyway).
        # Seeded before an --init profile is loaded too: building its model draws from the RNG.
        torch.manual_seed(cfg.seed)
        start = starting_point(cfg, self.input_normalization, progress)
        self.g1_config, self.init_profile_name = start.g1_config, start.init_profile_name
        expected = start.g1_config.in_channels + start.g1_config.noise_channels
        if self.input_channels != expected:
            raise TrainingError(
                f"the data gives G1 {self.input_channels} input channels, this G1 reads {expected}"
                f" ({start.g1_config.noise_channels} of them a noise map)",
                "a noise-conditioned profile trains on pairs made on the fly (--synthetic RGB_DIR)",
            )
        self.g1, self._notes = initial_g1(start)
        self.g2 = G2(start.g1_config)
        # D reads the packed RAW the generator reads (noise map included) beside the RGB brought onto it.
        self.d = PatchDiscriminator(cfg.d_width, raw_channels=self.input_channels, period=start.g1_config.period)
        self.generators = GeneratorPair(self.g1, self.g2).to(self.device)
        self.d.to(self.device)
        if self.device.type == "cpu":
            block = {"name": "g1", **self.g1_config.to_dict()}
            self.amp_dtype = cpu_training_dtype(self.generators, cfg.amp, self.input_channels, block)
        perceptual: PerceptualLoss | None = None
        self.vgg_source: str | None = None
        if cfg.uses_perceptual:
            perceptual = PerceptualLoss(load_vgg16_conv4_3(cfg.vgg_weights)).to(self.device)
            self.vgg_source = cfg.vgg_weights or "torchvision vgg16-397923af (torch hub cache)"
        self.gan = GanStep(cfg, self.generators, self.d, device=self.device, amp_dtype=self.amp_dtype,
                           perceptual=perceptual, distributed=self.dist.enabled,
                           view=self.view, network_space=self.network_space)

    def _provenance(self, dataset_path: str | os.PathLike | None, command_line: str | None) -> Provenance:
        return Provenance(
            run_id=self.run_id, started=self.started, profile_name=self.profile_name,
            command_line=command_line if command_line is not None else " ".join(sys.argv),
            dataset_path=str(dataset_path) if dataset_path is not None else None,
            manifest=self.manifest, input_normalization=self.input_normalization,
            init_profile_name=self.init_profile_name, perceptual=self.gan.perceptual is not None,
            vgg_source=self.vgg_source, world_size=self.dist.world_size, device=str(self.device),
        )

    def stage_of(self, epoch: int) -> int:
        return 1 if epoch < self.config.stage1_epochs else 2

    def request_stop(self) -> None:
        """Stop after the current step, with a checkpoint (signal handlers call this)."""
        self._stop_requested = True

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    # ---------------------------------------------------------------- the loop

    def run(self) -> TrainResult:
        try:
            return self._run()
        finally:
            self.log.close()
            leave_distributed(self.dist)

    def _run(self) -> TrainResult:
        if self.config.max_minutes:
            self._deadline = time.monotonic() + 60.0 * self.config.max_minutes
        train_loader = self._train_loader()
        self.log.open()
        self._announce()
        self._train(train_loader)
        validation = self.history[-1]["validation"] if self.history else None
        completed = self.epoch >= self.total_epochs
        if not completed:
            self._save_checkpoint()
            self._emit("stop", step=self.global_step, epoch=self.epoch, reason=self._stop_reason())
            validation = self._validate()  # the exported weights' own scores
        profile_path = installed = None
        if self.dist.is_main:
            validation, profile_path, installed = self._export(validation, completed)
        return TrainResult(self.global_step, self.epoch, completed, validation, profile_path, installed)

    def _train_loader(self) -> Iterable[dict]:
        """Batches of the training split: made on the device (`--pairs-on-device`), or loaded."""
        if self.config.pairs_on_device:
            if not hasattr(self.train_items, "draws"):
                raise TrainingError("--pairs-on-device needs pairs made on the fly", "train with --synthetic RGB_DIR")
            from raw2rgb_plugin.training.data.device_pairs import DeviceBatches

            return DeviceBatches(self.train_items, self.train_sampler, self.config.batch_size, self.device)
        return make_loader(SeededItems(self.train_items), self.config, self.device, self.dist.world_size,
                           sampler=self.train_sampler, drop_last=True)

    def _announce(self) -> None:
        self._emit(
            "resume" if self.resumed else "start",
            run_id=self.run_id,
            steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps,
            total_epochs=self.total_epochs,
            step=self.global_step,
            device=str(self.device),
            amp=str(self.amp_dtype).removeprefix("torch.") if self.amp_dtype else "off",
            world_size=self.dist.world_size,
            perceptual=self.gan.perceptual is not None,
            train_patches=len(self.train_items),
            val_patches=len(self.val_items),
        )
        for note in self._notes:
            self._emit("note", message=note)

    def _train(self, train_loader: Iterable[dict]) -> None:
        """Train from the current position to the last epoch's end, or to a stop."""
        cfg = self.config
        self.generators.train()
        self.d.train()
        rate = StepRate()
        while self.epoch < self.total_epochs:
            if self.gan.stage != self.stage_of(self.epoch):
                self.gan.enter_stage(self.stage_of(self.epoch))
            self.train_sampler.set_position(self.epoch, self.batch_in_epoch * cfg.batch_size)
            for batch in train_loader:
                losses = self.gan.step(batch)
                self.global_step += 1
                self.batch_in_epoch += 1
                rate.tick()
                self._after_step(losses, rate.per_second)
                if self._should_stop():
                    return
                if cfg.checkpoint_every and self.global_step % cfg.checkpoint_every == 0:
                    self._save_checkpoint()
            self._end_epoch()

    def _after_step(self, losses: dict[str, torch.Tensor], per_second: float | None) -> None:
        to_log = self.global_step % max(1, self.config.log_every) == 0
        # Reading a loss waits for the GPU: on CUDA only for the steps that are logged.
        if to_log or self.device.type == "cpu" or self.global_step == 1:
            self._last_losses = {k: float(v) for k, v in losses.items()}
            # fp16 runs skip non-finite steps (the scaler backs off); elsewhere they are divergence.
            if not all(math.isfinite(v) for v in self._last_losses.values()) and self.amp_dtype != torch.float16:
                raise TrainingError(
                    f"training diverged at step {self.global_step} (losses {self._last_losses})",
                    "lower the learning rates, or resume from the last checkpoint with other settings",
                )
        if not self.dist.is_main:
            return
        lr_g, lr_d = self.gan.learning_rates()
        self._emit("step", to_log=to_log, stage=self.gan.stage, epoch=self.epoch, step=self.global_step,
                   losses=self._last_losses, lr_g=lr_g, lr_d=lr_d, it_per_s=per_second)

    def _should_stop(self) -> bool:
        if self.config.max_steps is not None and self.global_step >= self.config.max_steps:
            return True  # the same step on every rank
        if self._out_of_time():
            self._stop_requested = True  # ranks agree on it below, like a Ctrl-C on one of them
        if not self.dist.enabled:
            return self._stop_requested
        # A stop request may reach one rank only; all must stop after the same step. Agreeing
        # costs a GPU sync, so ranks compare notes every `log_every` steps.
        if self.global_step % max(1, self.config.log_every):
            return False
        return any_rank(self._stop_requested, self.dist, self.device)

    def _out_of_time(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _stop_reason(self) -> str:
        if self.config.max_steps is not None and self.global_step >= self.config.max_steps:
            return "max_steps"
        return "max_minutes" if self._out_of_time() else "requested"

    def _end_epoch(self) -> None:
        self.gan.end_epoch()
        validation = self._validate()
        record = {"epoch": self.epoch, "stage": self.gan.stage, "step": self.global_step, "validation": validation}
        earlier = [r["validation"]["psnr"] for r in self.history if r.get("validation")]
        self.history.append(record)
        best_so_far = validation and validation["psnr"] > max(earlier, default=float("-inf"))
        if self.config.keep_best and self.dist.is_main and best_so_far:
            save_best(self.g1, self.profile_metadata(validation, completed=False, selected=record), self.run_dir)
        self.epoch += 1
        self.batch_in_epoch = 0
        self._emit("epoch", epoch=record["epoch"], stage=record["stage"], step=record["step"], validation=validation)
        self._save_checkpoint()

    @torch.no_grad()
    def _validate(self) -> dict | None:
        """Mean PSNR/SSIM of G1 (eval mode) over the validation split, summed across ranks."""
        items = RankShard(self.val_items, self.dist.rank, self.dist.world_size)
        sums = torch.zeros(3, dtype=torch.float64)
        if len(items):
            self.g1.eval()
            try:
                if self._val_loader is None:
                    self._val_loader = make_loader(items, self.config, self.device, self.dist.world_size, drop_last=False)
                for batch in self._val_loader:
                    raw = batch["raw"].to(self.device)
                    target = batch["rgb"].to(self.device)
                    with self.gan.autocast():
                        out = self.g1(raw)
                    out = self.rendering(out.float(), batch)
                    out, target = self.view(out.clamp(0, 1)), self.view(target)
                    count = torch.tensor(float(len(out)), device=out.device)
                    sums += torch.stack([psnr(out, target).sum(), ssim(out, target).sum(), count]).cpu().double()
            finally:
                self.g1.train()
        sums = sum_over_ranks(sums, self.dist, self.device)
        if sums[2] == 0:
            return None
        return {"psnr": float(sums[0] / sums[2]), "ssim": float(sums[1] / sums[2]), "count": int(sums[2])}

    # ---------------------------------------------------------------- checkpoints

    def _progress_state(self) -> dict:
        return {
            "run_id": self.run_id,
            "started": self.started,
            "profile_name": self.profile_name,
            "g1_config": self.g1_config.to_dict(),
            "init_profile_name": self.init_profile_name,
            "stage": self.gan.stage,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "global_step": self.global_step,
            "train_patches": len(self.train_items),
            "history": self.history,
            "log_offset": self.log.size(),
        }

    def _save_checkpoint(self) -> None:
        if not self.dist.is_main:
            return
        self.log.flush()  # the recorded log offset must cover every record written so far
        networks = {"g1": self.g1, "g2": self.g2, "d": self.d}
        state = pack_checkpoint(self.config, self._progress_state(), networks, self.gan.state_dict())
        path = write_checkpoint(self.run_dir, state)
        self._emit("checkpoint", step=self.global_step, epoch=self.epoch, path=str(path), to_log=False)

    def _restore(self, state: dict, progress: dict) -> None:
        for name in ("g1", "g2", "d"):
            getattr(self, name).load_state_dict(state[name])
        self.gan.load_state_dict(state, stage=int(progress.get("stage") or 0))
        set_rng_state(state["rng"])  # last: restoring the rest must not move the saved RNGs

    # ---------------------------------------------------------------- events and export

    def _emit(self, event: str, *, to_log: bool = True, **fields: Any) -> None:
        if not self.dist.is_main:
            return
        record = {"event": event, "time": now(), **fields}
        if to_log:
            self.log.write(record)
        if self.on_event is not None:
            self.on_event(record)

    def profile_metadata(self, validation: dict | None, completed: bool, selected: dict | None = None) -> dict:
        """The profile's metadata; `selected` (epoch, step) marks weights chosen by validation."""
        return profile_metadata(self.config, self.provenance, steps=self.global_step, epochs=self.epoch,
                                history=self.history, validation=validation, completed=completed, selected=selected)

    def _export(self, validation: dict | None, completed: bool) -> tuple[dict | None, Path, Path | None]:
        """Export (and install) the run's profile: its last weights, or with `keep_best` the best
        epoch's if they score higher. Returns the exported weights' validation and the paths."""
        cfg = self.config
        best = best_record(self.history, self.run_dir) if cfg.keep_best else None
        selected: dict | None
        if best is not None and validation is not None and best["validation"]["psnr"] > validation["psnr"]:
            model, validation, selected = load_best(self.run_dir), best["validation"], best
        else:
            model = self.g1
            selected = {"epoch": self.epoch - 1 if completed else None, "step": self.global_step} if cfg.keep_best else None
        meta = self.profile_metadata(validation, completed, selected)
        path, installed = export_profile(model, meta, self.run_dir, install=self.install_profile)
        self._emit("profile", path=str(path), installed=str(installed) if installed else None, validation=validation)
        self.log.flush()
        return validation, path, installed
