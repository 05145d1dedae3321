"""Training RAW2RGB-GAN: G1 + G2 + D in two stages, resumable, single process or DDP.

Stage 1 trains G1 and G2 with L1 + attention; stage 2 adds the VGG perceptual loss and the LSGAN
game, stepping D at its own (faster) learning rate — the two-time-scale rule the seed describes
but its reference code never ran. Each stage starts fresh Adam optimisers (as the seed's
stage-2 run did from the stage-1 weights); each optimiser has its own step schedule.

Exact resume. A checkpoint holds every piece of state that decides what happens next: weights
and buffers of the three networks (spectral-norm vectors and BatchNorm statistics included),
optimiser and scheduler states, AMP scaler states, the torch/CUDA/numpy/python RNG states and the
position (stage, epoch, batch within the epoch, step). Data order does not depend on any
process-global RNG: each epoch's permutation is a function of (seed, epoch), and each sample is
loaded under RNGs seeded from (seed, epoch, index), so augmentation is the same whichever worker
or rank loads it and whether or not the run was interrupted.

Scale-out: under `torchrun` (RANK/WORLD_SIZE/LOCAL_RANK in the environment) both generators and
D are wrapped in DistributedDataParallel, each rank reads its shard of every epoch, validation
is sharded and summed, and only rank 0 writes logs, checkpoints and the profile.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import itertools
import json
import math
import os
import random
import re
import sys
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from raw2rgb_plugin.runtime.device import choose_device
from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.training.config import TrainConfig, TrainingError
from raw2rgb_plugin.training.losses import PerceptualLoss, attention_loss, l1_loss, lsgan_d_loss, lsgan_g_loss
from raw2rgb_plugin.training.metrics import psnr, ssim
from raw2rgb_plugin.models.discriminator import MIN_PACKED_SIZE, PatchDiscriminator
from raw2rgb_plugin.models.g1 import G1, G1Config, PACKED_STRIDE, VARIANT_WIDTHS, adapt_plain_state, load_plain_state_dict
from raw2rgb_plugin.models.g2 import G2
from raw2rgb_plugin.models.vgg import load_vgg16_conv4_3
from raw2rgb_plugin.profiles.store import load_profile, read_profile_metadata, save_profile, user_profile_dir

CHECKPOINT_NAME = "checkpoint.pt"
#: with `keep_best`: G1 of the best epoch so far, as a loadable profile.
BEST_NAME = "best.safetensors"
LOG_NAME = "log.jsonl"
CHECKPOINT_FORMAT = 1

#: settings a resumed run may change: they steer the run, not what it computes.
RUN_CONTROL_FIELDS = ("max_steps", "device", "workers", "checkpoint_every", "log_every")

_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass
class TrainResult:
    global_step: int
    epoch: int
    completed: bool  # all epochs done (not stopped by --max-steps or a stop request)
    validation: dict | None
    profile_path: Path | None
    installed_profile_path: Path | None


# --------------------------------------------------------------------------------------------
# Data order


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The RNG seed a sample is loaded under: a function of the run seed, epoch and index only."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


class ResumableSampler(DistributedSampler):
    """DistributedSampler (shuffled per epoch from `seed`, even shards) that can start part-way
    through an epoch and hands out `(index, sample_seed)` pairs for `SeededItems`."""

    def __init__(self, dataset: Dataset, *, num_replicas: int, rank: int, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.skip = 0

    def set_position(self, epoch: int, skip: int) -> None:
        self.set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        for index in itertools.islice(super().__iter__(), self.skip, None):
            yield index, sample_seed(self.seed, self.epoch, index)

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)


class SeededItems(Dataset):
    """Loads item `index` with torch, numpy and python RNGs seeded for that sample, then restores
    the caller's RNG states (loading in the main process must not disturb training's RNG)."""

    def __init__(self, items: Dataset):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                np.random.seed(seed % 2**32)
                random.seed(seed)
                return self.items[index]
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


class _Shard(Dataset):
    """Every `world`-th item from `rank`: a rank's part of the validation split (no padding)."""

    def __init__(self, items: Dataset, rank: int, world: int):
        self.items, self.indices = items, list(range(rank, len(items), world))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.items[self.indices[i]]


# --------------------------------------------------------------------------------------------
# Processes and devices


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_name: str) -> DistributedContext:
    """Join the process group torchrun describes in the environment; a no-op for one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if dist.is_initialized():
        return DistributedContext(rank, world, local_rank, initialized_here=False)
    use_cuda = device_name != "cpu" and not device_name.startswith("mps") and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistributedContext(rank, world, local_rank, initialized_here=True)


def _training_device(name: str, ctx: DistributedContext) -> torch.device:
    device = choose_device(name)
    if device.type == "cuda" and ctx.enabled and device.index is None:
        device = torch.device("cuda", ctx.local_rank)
    return device


def autocast_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """Mixed precision only on CUDA that does it natively: bf16 on sm_80+, fp16 (+ scaler) on sm_70+."""
    if amp == "off" or device.type != "cuda":
        return None
    major, _ = torch.cuda.get_device_capability(device)
    if amp == "bf16" or (amp == "auto" and major >= 8):
        if not torch.cuda.is_bf16_supported():
            raise TrainingError("--amp bf16 needs a GPU with bfloat16 support (sm_80+)", "use --amp fp16 or auto")
        return torch.bfloat16
    if amp == "fp16" or (amp == "auto" and major >= 7):
        return torch.float16
    return None


class GeneratorPair(nn.Module):
    """G1 and its G2 head as one module, so DDP sees one forward for both."""

    def __init__(self, g1: G1, g2: G2):
        super().__init__()
        self.g1, self.g2 = g1, g2

    def forward(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rgb, features = self.g1.forward_features(raw)
        return rgb, self.g2(features)


# --------------------------------------------------------------------------------------------
# The trainer


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
        self.checkpoint_path = self.run_dir / CHECKPOINT_NAME
        self.log_path = self.run_dir / LOG_NAME
        self.dataset = dataset
        self.dataset_path = str(dataset_path) if dataset_path is not None else None
        self.command_line = command_line if command_line is not None else " ".join(sys.argv)
        self.on_event = on_event
        self.install_profile = install_profile
        self.overwrite_profile = overwrite_profile
        self._stop_requested = False

        config = dataclasses.replace(config)  # the run may fill in fields (width from --init)
        checkpoint = self._read_checkpoint() if resume else None
        if checkpoint is None and self.checkpoint_path.exists():
            raise TrainingError(
                f"{self.run_dir} already holds a training run",
                "pass --resume to continue it, or choose another -o directory",
            )
        if checkpoint is not None:
            saved = TrainConfig.from_dict(json.loads(checkpoint["config"]))
            for name in RUN_CONTROL_FIELDS:
                setattr(saved, name, getattr(config, name))
            config = saved
        config.validate()
        self.config = config

        self.dist = init_distributed(config.device)
        self.device = _training_device(config.device, self.dist)
        self.amp_dtype = autocast_dtype(self.device, config.amp)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed patch size: pick the fastest kernels once

        progress = json.loads(checkpoint["progress"]) if checkpoint is not None else {}
        self.run_id: str = progress.get("run_id") or uuid.uuid4().hex
        self.started: str = progress.get("started") or _now()
        self.profile_name = profile_name or progress.get("profile_name") or self.run_dir.name
        if not _PROFILE_NAME.match(self.profile_name):
            raise TrainingError(
                f"profile name {self.profile_name!r} is not a plain file name",
                "use letters, digits, '.', '_' and '-' (--profile-name)",
            )
        self._check_installed_profile()

        self.manifest: dict = dict(getattr(dataset, "manifest", {}) or {})
        self.input_normalization = config.input_normalization or self.manifest.get("input_normalization", "wb+ccm")
        # A dataset keeps raw sensor integers and normalises on reading, so it can serve any mode.
        mode = {"input_normalization": config.input_normalization} if config.input_normalization else {}
        self.train_items = dataset.split("train", augment=True, **mode)
        self.val_items = dataset.split("val", augment=False, **mode)
        self._check_data()
        saved_count = progress.get("train_patches")
        if saved_count is not None and saved_count != len(self.train_items):
            raise TrainingError(
                f"the dataset has {len(self.train_items)} training patches, the run started with {saved_count}",
                "resume with the dataset the run was started on, or start a new run (--init can reuse its profile)",
            )

        # Same seed on every rank: identical initial weights (DDP would broadcast them anyway).
        torch.manual_seed(config.seed)
        init_state = None
        if checkpoint is not None:
            g1_config = G1Config(**progress["g1_config"])
            self.init_profile_name = progress.get("init_profile_name")
        elif config.init_profile:
            profile = load_profile(config.init_profile)
            if profile.input_normalization != self.input_normalization:
                raise TrainingError(
                    f"--init profile {profile.name} expects {profile.input_normalization!r} input, "
                    f"the dataset holds {self.input_normalization!r}",
                    "rebuild the dataset with that normalisation or start from scratch",
                )
            base = profile.model.config.residual_base if config.residual_base == "auto" else config.residual_base
            g1_config = dataclasses.replace(profile.model.config, spectral_norm=True, residual_base=base)
            config.width = g1_config.width
            if profile.variant in VARIANT_WIDTHS:
                config.variant = profile.variant
            init_state = adapt_plain_state(profile.model.state_dict(), profile.model.config.residual_base, base,
                                           profile.model.config.out_channels)
            self.init_profile_name = profile.name
        else:
            auto = "mhc-srgb-gated" if self.input_normalization == "linear-srgb" else "none"
            g1_config = config.g1_config(auto if config.residual_base == "auto" else config.residual_base)
            self.init_profile_name = None
        if g1_config.residual_base != "none" and self.input_normalization != "linear-srgb":
            raise TrainingError(
                f"the {g1_config.residual_base} residual base renders linear-srgb input, this run's is {self.input_normalization!r}",
                "use --input-normalization linear-srgb or --residual-base none",
            )
        self.g1_config = g1_config
        self.g1 = G1(g1_config)
        self._notes: list[str] = []
        if init_state is not None:
            load_plain_state_dict(self.g1, init_state)
            deviation = _spectral_norm_deviation(self.g1)
            if deviation > 0.01:
                self._notes.append(
                    f"--init profile {self.init_profile_name}: its weights were not trained under spectral norm "
                    f"(largest singular value off 1 by {deviation:.2f}), so training starts from their normalised version"
                )
        self.g2 = G2(g1_config)
        self.d = PatchDiscriminator(config.d_width)
        self.generators = GeneratorPair(self.g1, self.g2).to(self.device)
        self.d.to(self.device)

        self.perceptual: PerceptualLoss | None = None
        self.vgg_source: str | None = None
        if config.uses_perceptual:
            self.perceptual = PerceptualLoss(load_vgg16_conv4_3(config.vgg_weights)).to(self.device)
            self.vgg_source = config.vgg_weights or "torchvision vgg16-397923af (torch hub cache)"

        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.gen_train: nn.Module = DistributedDataParallel(self.generators, device_ids=ids)
            self.d_train: nn.Module = DistributedDataParallel(self.d, device_ids=ids)
        else:
            self.gen_train, self.d_train = self.generators, self.d

        self.steps_per_epoch = self.train_sampler.num_samples // config.batch_size
        self.total_epochs = config.stage1_epochs + config.stage2_epochs
        planned = self.steps_per_epoch * self.total_epochs
        self.total_steps = min(planned, config.max_steps) if config.max_steps else planned

        # Position: the next batch to train is batch `batch_in_epoch` of `epoch`.
        self.epoch = int(progress.get("epoch", 0))
        self.batch_in_epoch = int(progress.get("batch_in_epoch", 0))
        self.global_step = int(progress.get("global_step", 0))
        self.history: list[dict] = list(progress.get("history", []))
        self.stage = 0
        self.opt_g: torch.optim.Optimizer | None = None
        self.opt_d: torch.optim.Optimizer | None = None
        self.sched_g: torch.optim.lr_scheduler.LRScheduler | None = None
        self.sched_d: torch.optim.lr_scheduler.LRScheduler | None = None
        scaler_on = self.amp_dtype == torch.float16
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=scaler_on)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=scaler_on)
        if checkpoint is not None:
            self._restore(checkpoint, progress)
        self.resumed = checkpoint is not None
        self._last_losses: dict[str, float] = {}
        self._val_loader: DataLoader | None = None

    # ---------------------------------------------------------------- setup helpers

    def _check_data(self) -> None:
        cfg = self.config
        if len(self.train_items) == 0:
            raise TrainingError("the dataset has no training patches", "build it from more pairs")
        sample = SeededItems(self.train_items)[(0, cfg.seed)]
        packed = int(sample["raw"].shape[-1])
        if packed % PACKED_STRIDE or int(sample["raw"].shape[-2]) % PACKED_STRIDE:
            raise TrainingError(
                f"patches of {tuple(sample['raw'].shape[-2:])} packed px are not multiples of {PACKED_STRIDE}",
                "rebuild the dataset with a patch size that is a multiple of 16 sensor px",
            )
        if cfg.uses_gan and packed < MIN_PACKED_SIZE:
            raise TrainingError(
                f"patches of {packed} packed px are too small for the discriminator (needs ≥ {MIN_PACKED_SIZE})",
                "rebuild the dataset with larger patches, or train without the GAN (--lambda-gan 0)",
            )
        self.patch_size = packed
        self.train_sampler = ResumableSampler(
            self.train_items, num_replicas=self.dist.world_size, rank=self.dist.rank, seed=cfg.seed
        )
        if self.train_sampler.num_samples < cfg.batch_size:
            raise TrainingError(
                f"the dataset has {len(self.train_items)} training patches, fewer than one batch of "
                f"{cfg.batch_size} per process",
                "lower --batch-size or build a larger dataset",
            )

    def _check_installed_profile(self) -> None:
        if not self.install_profile or not self.dist.is_main:
            return
        path = user_profile_dir() / f"{self.profile_name}.safetensors"
        if not path.exists() or self.overwrite_profile:
            return
        try:
            owner = read_profile_metadata(path).get("training", {}).get("run_id")
        except Raw2RgbError:
            owner = None
        if owner != self.run_id:
            raise TrainingError(
                f"a profile named {self.profile_name!r} is already installed ({path})",
                "choose another --profile-name, or pass --overwrite to replace it",
            )

    def _loader(self, items: Dataset, *, sampler: Any = None, drop_last: bool) -> DataLoader:
        workers = self.config.workers
        if workers is None:
            workers = 0 if self.device.type == "cpu" else min(8, max(1, (os.cpu_count() or 2) // self.dist.world_size))
        extra: dict = {}
        if workers > 0:
            # rawpy/LibRaw use OpenMP, which deadlocks in forked children: start workers fresh.
            extra = {"multiprocessing_context": "spawn", "persistent_workers": True, "prefetch_factor": 4}
        return DataLoader(
            items,
            batch_size=self.config.batch_size,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            # Own generator: creating an iterator must not draw from the global torch RNG.
            generator=torch.Generator().manual_seed(self.config.seed),
            **extra,
        )

    def _enter_stage(self, stage: int) -> None:
        cfg = self.config
        g_params = list(self.generators.parameters())
        lr = cfg.lr_stage1 if stage == 1 else cfg.lr_g
        self.opt_g = torch.optim.Adam(g_params, lr=lr, betas=cfg.betas)
        self.sched_g = torch.optim.lr_scheduler.StepLR(self.opt_g, cfg.lr_decay_every, cfg.lr_decay_factor)
        self.opt_d = self.sched_d = None
        if stage == 2 and cfg.uses_gan:
            self.opt_d = torch.optim.Adam(self.d.parameters(), lr=cfg.lr_d, betas=cfg.betas)
            self.sched_d = torch.optim.lr_scheduler.StepLR(self.opt_d, cfg.lr_decay_every, cfg.lr_decay_factor)
        self.stage = stage

    def stage_of(self, epoch: int) -> int:
        return 1 if epoch < self.config.stage1_epochs else 2

    def request_stop(self) -> None:
        """Stop after the current step, with a checkpoint (signal handlers call this)."""
        self._stop_requested = True

    # ---------------------------------------------------------------- the loop

    def run(self) -> TrainResult:
        try:
            return self._run()
        finally:
            self._close()

    def _run(self) -> TrainResult:
        cfg = self.config
        train_loader = self._loader(SeededItems(self.train_items), sampler=self.train_sampler, drop_last=True)
        self._open_log()
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
            perceptual=self.perceptual is not None,
            train_patches=len(self.train_items),
            val_patches=len(self.val_items),
        )
        for note in self._notes:
            self._emit("note", message=note)
        self.generators.train()
        self.d.train()
        stopped_early = False
        rate = _Rate()
        while self.epoch < self.total_epochs and not stopped_early:
            if self.stage != self.stage_of(self.epoch):
                self._enter_stage(self.stage_of(self.epoch))
            self.train_sampler.set_position(self.epoch, self.batch_in_epoch * cfg.batch_size)
            for batch in train_loader:
                losses = self._train_step(batch)
                self.global_step += 1
                self.batch_in_epoch += 1
                rate.tick()
                self._after_step(losses, rate.per_second)
                if self._should_stop():
                    stopped_early = True
                    break
                if cfg.checkpoint_every and self.global_step % cfg.checkpoint_every == 0:
                    self._save_checkpoint()
            if stopped_early:
                break
            self._end_epoch()
        validation = self.history[-1]["validation"] if self.history else None
        completed = self.epoch >= self.total_epochs
        if not completed:
            self._save_checkpoint()
            self._emit("stop", step=self.global_step, epoch=self.epoch, reason=self._stop_reason())
            validation = self._validate()  # the exported weights' own scores
        profile_path = installed = None
        if self.dist.is_main:
            best = self._best_record() if cfg.keep_best else None
            if best is not None and validation is not None and best["validation"]["psnr"] > validation["psnr"]:
                validation = best["validation"]
                chosen = load_profile(self.run_dir / BEST_NAME).model
                profile_path, installed = self._export_profile(validation, completed, model=chosen, selected=best)
            else:
                selected = {"epoch": self.epoch - 1 if completed else None, "step": self.global_step} if cfg.keep_best else None
                profile_path, installed = self._export_profile(validation, completed, selected=selected)
        return TrainResult(self.global_step, self.epoch, completed, validation, profile_path, installed)

    def _best_record(self) -> dict | None:
        """The history record with the best validation PSNR whose weights are in BEST_NAME."""
        scored = [r for r in self.history if r.get("validation")]
        if not scored or not (self.run_dir / BEST_NAME).is_file():
            return None
        return max(scored, key=lambda r: r["validation"]["psnr"])

    def _save_best(self, record: dict) -> None:
        meta = self.profile_metadata(record["validation"], completed=False, selected=record)
        self.g1.eval()
        try:
            save_profile(self.run_dir / BEST_NAME, self.g1, meta)
        finally:
            self.g1.train()

    def _train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        cfg = self.config
        raw = batch["raw"].to(self.device, non_blocking=True)
        rgb = batch["rgb"].to(self.device, non_blocking=True)
        saliency = batch["saliency"].to(self.device, non_blocking=True)
        assert self.opt_g is not None
        with self._autocast():
            fake, predicted_saliency = self.gen_train(raw)
        losses: dict[str, torch.Tensor] = {}

        adversarial = self.stage == 2 and self.opt_d is not None
        if adversarial:
            # D first, on the detached output: one forward over real and fake (InstanceNorm keeps
            # them independent), so DDP sees one forward per backward.
            with self._autocast():
                scores = self.d_train(torch.cat([raw, raw]), torch.cat([fake.detach(), rgb]))
                score_fake, score_real = scores.float().chunk(2)
                losses["d"] = lsgan_d_loss(score_fake, score_real)
            self.opt_d.zero_grad(set_to_none=True)
            self.scaler_d.scale(losses["d"]).backward()
            self.scaler_d.step(self.opt_d)
            self.scaler_d.update()

        with self._autocast():
            losses["l1"] = l1_loss(fake.float(), rgb)
            losses["attn"] = attention_loss(fake.float(), predicted_saliency.float(), rgb, saliency)
            total = cfg.lambda_l1 * losses["l1"] + cfg.lambda_attn * losses["attn"]
            if self.stage == 2 and self.perceptual is not None:
                losses["perc"] = self.perceptual(fake, rgb).float()
                total = total + cfg.lambda_perc * losses["perc"]
            if adversarial:
                # The plain module, not the DDP wrapper: this pass only carries gradients to G.
                losses["gan"] = lsgan_g_loss(self.d(raw, fake))
                total = total + cfg.lambda_gan * losses["gan"]
        losses["g"] = total
        self.opt_g.zero_grad(set_to_none=True)
        # `inputs=` keeps the adversarial term's gradient out of D's .grad.
        self.scaler_g.scale(total).backward(inputs=list(self.generators.parameters()))
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        return {k: v.detach() for k, v in losses.items()}

    def _after_step(self, losses: dict[str, torch.Tensor], per_second: float | None) -> None:
        to_log = self.global_step % max(1, self.config.log_every) == 0
        # Reading a loss waits for the GPU: on CUDA only for the steps that are logged.
        if to_log or self.device.type == "cpu" or self.global_step == 1:
            self._last_losses = {k: float(v) for k, v in losses.items()}
            if not all(math.isfinite(v) for v in self._last_losses.values()) and self.amp_dtype != torch.float16:
                raise TrainingError(
                    f"training diverged at step {self.global_step} (losses {self._last_losses})",
                    "lower the learning rates, or resume from the last checkpoint with other settings",
                )
        if not self.dist.is_main:
            return
        record = {
            "stage": self.stage,
            "epoch": self.epoch,
            "step": self.global_step,
            "losses": self._last_losses,
            "lr_g": self.opt_g.param_groups[0]["lr"] if self.opt_g else None,
            "lr_d": self.opt_d.param_groups[0]["lr"] if self.opt_d else None,
            "it_per_s": per_second,
        }
        self._emit("step", to_log=to_log, **record)

    def _should_stop(self) -> bool:
        if self.config.max_steps is not None and self.global_step >= self.config.max_steps:
            return True  # the same step on every rank
        if not self.dist.enabled:
            return self._stop_requested
        # A stop request may reach one rank only; all must stop after the same step. Agreeing
        # costs a GPU sync, so ranks compare notes every `log_every` steps.
        if self.global_step % max(1, self.config.log_every):
            return False
        flag = torch.tensor([1.0 if self._stop_requested else 0.0], device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def _stop_reason(self) -> str:
        if self.config.max_steps is not None and self.global_step >= self.config.max_steps:
            return "max_steps"
        return "requested"

    def _end_epoch(self) -> None:
        for scheduler in (self.sched_g, self.sched_d):
            if scheduler is not None:
                with warnings.catch_warnings():
                    # A run resumed exactly at an epoch's end steps its scheduler before this
                    # process stepped the optimiser; the schedule is right, the warning is not.
                    warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
                    scheduler.step()
        validation = self._validate()
        record = {"epoch": self.epoch, "stage": self.stage, "step": self.global_step, "validation": validation}
        earlier = [r["validation"]["psnr"] for r in self.history if r.get("validation")]
        self.history.append(record)
        if self.config.keep_best and self.dist.is_main and validation and validation["psnr"] > max(earlier, default=float("-inf")):
            self._save_best(record)
        self.epoch += 1
        self.batch_in_epoch = 0
        self._emit("epoch", **record)
        self._save_checkpoint()

    @torch.no_grad()
    def _validate(self) -> dict | None:
        """Mean PSNR/SSIM of G1 (eval mode) over the validation split, summed across ranks."""
        items = _Shard(self.val_items, self.dist.rank, self.dist.world_size)
        sums = torch.zeros(3, dtype=torch.float64)
        if len(items):
            self.g1.eval()
            try:
                if self._val_loader is None:
                    self._val_loader = self._loader(items, drop_last=False)
                for batch in self._val_loader:
                    raw = batch["raw"].to(self.device)
                    target = batch["rgb"].to(self.device)
                    with self._autocast():
                        out = self.g1(raw)
                    out = out.float().clamp(0, 1)
                    sums += torch.stack([psnr(out, target).sum(), ssim(out, target).sum(), torch.tensor(float(len(out)))]).cpu().double()
            finally:
                self.g1.train()
        if self.dist.enabled:
            reduced = sums.to(self.device if self.device.type == "cuda" else "cpu")
            dist.all_reduce(reduced)
            sums = reduced.cpu()
        if sums[2] == 0:
            return None
        return {"psnr": float(sums[0] / sums[2]), "ssim": float(sums[1] / sums[2]), "count": int(sums[2])}

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # ---------------------------------------------------------------- checkpoints

    def _progress_state(self) -> dict:
        return {
            "run_id": self.run_id,
            "started": self.started,
            "profile_name": self.profile_name,
            "g1_config": self.g1_config.to_dict(),
            "init_profile_name": self.init_profile_name,
            "stage": self.stage,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "global_step": self.global_step,
            "train_patches": len(self.train_items),
            "history": self.history,
            "log_offset": self.log_path.stat().st_size if self.log_path.exists() else 0,
        }

    def _save_checkpoint(self) -> None:
        if not self.dist.is_main:
            return
        self._flush_log()
        state = {
            "format": CHECKPOINT_FORMAT,
            "config": json.dumps(self.config.to_dict()),
            "progress": json.dumps(self._progress_state()),
            "g1": self.g1.state_dict(),
            "g2": self.g2.state_dict(),
            "d": self.d.state_dict(),
            "opt_g": self.opt_g.state_dict() if self.opt_g else None,
            "opt_d": self.opt_d.state_dict() if self.opt_d else None,
            "sched_g": self.sched_g.state_dict() if self.sched_g else None,
            "sched_d": self.sched_d.state_dict() if self.sched_d else None,
            "scaler_g": self.scaler_g.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
            "rng": _rng_state(),
        }
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_path.with_name(f".{CHECKPOINT_NAME}.{os.getpid()}.partial")
        try:
            torch.save(state, tmp)
            os.replace(tmp, self.checkpoint_path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._emit("checkpoint", step=self.global_step, epoch=self.epoch, path=str(self.checkpoint_path), to_log=False)

    def _read_checkpoint(self) -> dict:
        if not self.checkpoint_path.is_file():
            raise TrainingError(f"no checkpoint to resume in {self.run_dir}", "check -o, or start without --resume")
        try:
            # Our own format: tensors, numbers, strings and containers only; nothing is unpickled into code.
            state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise TrainingError(
                f"cannot read the checkpoint {self.checkpoint_path} ({type(exc).__name__})",
                "it is damaged; start a new run in another -o directory",
            ) from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise TrainingError(f"{self.checkpoint_path} is not a raw2rgb checkpoint of a known format", "start a new run")
        return state

    def _restore(self, state: dict, progress: dict) -> None:
        self.g1.load_state_dict(state["g1"])
        self.g2.load_state_dict(state["g2"])
        self.d.load_state_dict(state["d"])
        if progress.get("stage"):
            self._enter_stage(int(progress["stage"]))
            assert self.opt_g is not None and self.sched_g is not None
            self.opt_g.load_state_dict(state["opt_g"])
            self.sched_g.load_state_dict(state["sched_g"])
            if self.opt_d is not None and state["opt_d"] is not None:
                self.opt_d.load_state_dict(state["opt_d"])
                self.sched_d.load_state_dict(state["sched_d"])  # type: ignore[union-attr]
        for scaler, saved in ((self.scaler_g, state["scaler_g"]), (self.scaler_d, state["scaler_d"])):
            if saved and scaler.is_enabled():  # a run may resume on other hardware (fp32 ↔ fp16)
                scaler.load_state_dict(saved)
        _set_rng_state(state["rng"])
        self._log_offset = int(progress.get("log_offset", 0))

    # ---------------------------------------------------------------- log, events, export

    def _open_log(self) -> None:
        self._log = None
        if not self.dist.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        offset = getattr(self, "_log_offset", None)
        if offset is not None and self.log_path.exists():
            # Drop what an interrupted run logged after its last checkpoint: the log then
            # tells one consistent story, the steps being trained again.
            with open(self.log_path, "r+b") as f:
                f.truncate(offset)
        # Line-buffered: `tail -f log.jsonl` shows each record as it happens.
        self._log = open(self.log_path, "a", encoding="utf-8", buffering=1)

    def _flush_log(self) -> None:
        if getattr(self, "_log", None) is not None:
            self._log.flush()

    def _close(self) -> None:
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None
        if self.dist.initialized_here and dist.is_initialized():
            dist.destroy_process_group()

    def _emit(self, event: str, *, to_log: bool = True, **fields: Any) -> None:
        if not self.dist.is_main:
            return
        record = {"event": event, "time": _now(), **fields}
        if to_log and getattr(self, "_log", None) is not None:
            self._log.write(json.dumps(record) + "\n")
        if self.on_event is not None:
            self.on_event(record)

    def profile_metadata(self, validation: dict | None, completed: bool, selected: dict | None = None) -> dict:
        """The profile's metadata; `selected` (epoch, step) marks weights chosen by validation."""
        cfg = self.config
        losses = {"l1": cfg.lambda_l1, "attention": cfg.lambda_attn}
        if self.perceptual is not None:
            losses["perceptual_vgg16_conv4_3"] = cfg.lambda_perc
        if cfg.uses_gan:
            losses["lsgan"] = cfg.lambda_gan
        # The per-shard list (source paths, crop boxes) stays in the dataset; counts, options,
        # cameras and saliency source travel with the profile.
        provenance = {k: v for k, v in self.manifest.items() if k != "shards"}
        meta = {
            "name": self.profile_name,
            "variant": cfg.variant if cfg.width is None or cfg.width == VARIANT_WIDTHS.get(cfg.variant) else f"width{cfg.width}",
            "input_normalization": self.input_normalization,
            "output_color_space": self.manifest.get("output_color_space", "srgb"),
            "description": f"trained by raw2rgb train on {Path(self.dataset_path).name if self.dataset_path else 'a dataset'}",
            "training": {
                "run_id": self.run_id,
                "dataset": {"path": self.dataset_path, "manifest": provenance},
                "losses": losses,
                "perceptual": self.perceptual is not None,
                "vgg_weights": self.vgg_source,
                "steps": self.global_step,
                "epochs_completed": self.epoch,
                "completed": completed,
                "validation": validation,
                "history": self.history,
                "init_profile": self.init_profile_name,
                "config": cfg.to_dict(),
                "world_size": self.dist.world_size,
                "device": str(self.device),
                "command_line": self.command_line,
                "started": self.started,
                "finished": _now(),
            },
        }
        if selected is not None:
            meta["training"]["selected"] = {"epoch": selected["epoch"], "step": selected["step"], "by": "validation PSNR"}
        return meta

    def _export_profile(
        self, validation: dict | None, completed: bool, *, model: G1 | None = None, selected: dict | None = None
    ) -> tuple[Path, Path | None]:
        """Write the profile of `model` (default: the current G1) and install it."""
        meta = self.profile_metadata(validation, completed, selected)
        model = self.g1 if model is None else model
        model.eval()  # reading an SN weight in train mode would run a power-iteration step
        try:
            path = save_profile(self.run_dir / f"{self.profile_name}.safetensors", model, meta)
            installed = None
            if self.install_profile:
                installed = save_profile(user_profile_dir() / f"{self.profile_name}.safetensors", model, meta)
        finally:
            self.g1.train()
        self._emit("profile", path=str(path), installed=str(installed) if installed else None, validation=validation)
        self._flush_log()
        return path, installed


# --------------------------------------------------------------------------------------------
# helpers


class _Rate:
    """Steps per second, smoothed over the last few seconds."""

    def __init__(self) -> None:
        self._times: list[float] = []

    def tick(self) -> None:
        now = time.perf_counter()
        self._times.append(now)
        self._times = [t for t in self._times if now - t <= 10.0][-200:]

    @property
    def per_second(self) -> float | None:
        if len(self._times) < 2:
            return None
        return (len(self._times) - 1) / max(1e-9, self._times[-1] - self._times[0])


@torch.no_grad()
def _spectral_norm_deviation(model: nn.Module) -> float:
    """max |σ(W) − 1| over spectrally normalised convs, from their converged power iteration."""
    worst = 0.0
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and parametrize.is_parametrized(module, "weight"):
            sn = module.parametrizations.weight[0]
            matrix = sn._reshape_weight_to_matrix(module.parametrizations.weight.original)
            sigma = torch.dot(sn._u, torch.mv(matrix, sn._v)).item()
            worst = max(worst, abs(sigma - 1.0))
    return worst


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
