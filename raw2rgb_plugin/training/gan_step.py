"""One optimisation step of RAW2RGB-GAN, and the optimiser state of the stage it belongs to.

Stage 1 trains G1 and G2 with L1 + attention; stage 2 adds the VGG perceptual loss and the LSGAN
game, stepping D at its own (faster) learning rate — the two-time-scale rule the seed describes
but its reference code never ran. Each stage starts fresh Adam optimisers (as the seed's
stage-2 run did from the stage-1 weights); each optimiser has its own step schedule.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from raw2rgb_plugin.models.g1 import G1
from raw2rgb_plugin.models.g2 import G2
from raw2rgb_plugin.runtime.precision import TRAINING_TIMING_SIDE, choose_cpu_training_precision
from raw2rgb_plugin.training.config import TrainConfig, TrainingError
from raw2rgb_plugin.training.losses import (
    PerceptualLoss,
    attention_loss,
    l1_loss,
    lsgan_d_loss,
    lsgan_g_loss,
    network_rendering,
    output_view,
)


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


def cpu_training_dtype(generators: nn.Module, amp: str, channels: int, architecture_block: dict) -> torch.dtype | None:
    """bf16 autocast on a CPU where it is measured faster for this G1 (cached per CPU), else fp32.

    `--amp bf16` forces it, `off` or $RAW2RGB_CPU_PRECISION=fp32 refuse it. Measured here (AMD EPYC
    with AVX512-BF16, lite G1): 5.53 it/s against fp32's 3.59; convergence: README "CPU precision".
    """
    if amp == "off":
        return None
    if amp == "fp16":
        raise TrainingError("--amp fp16 is for CUDA GPUs", "use --amp auto or bf16 on a CPU")
    if amp == "bf16":
        return torch.bfloat16
    side = TRAINING_TIMING_SIDE // 2
    x = torch.rand(2, channels, side, side, generator=torch.Generator().manual_seed(0))

    def step_for(dtype: torch.dtype | None):
        def step() -> None:
            with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                fake, saliency = generators(x)
                loss = fake.float().mean() + saliency.float().mean()
            loss.backward()
            generators.zero_grad(set_to_none=True)

        return step

    # Eval mode: timing must not move BatchNorm statistics or spectral-norm vectors (a rerun of
    # the same seed trains the same weights).
    was_training = generators.training
    generators.eval()
    try:
        choice = choose_cpu_training_precision(step_for, architecture_block)
    finally:
        generators.train(was_training)
    return torch.bfloat16 if choice.precision == "bf16" else None


class GeneratorPair(nn.Module):
    """G1 and its G2 head as one module, so DDP sees one forward for both."""

    def __init__(self, g1: G1, g2: G2):
        super().__init__()
        self.g1, self.g2 = g1, g2

    def forward(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rgb, features = self.g1.forward_features(raw)
        return rgb, self.g2(features)


class GanStep:
    """G1+G2 (`generators`) and D on `device`, the current stage's optimisers, and the step.

    `stage` is 0 until `enter_stage`; the optimisers and schedulers are None outside the stage
    that uses them (D's exist only in a stage 2 with the GAN loss on).
    """

    def __init__(
        self,
        config: TrainConfig,
        generators: GeneratorPair,
        d: nn.Module,
        *,
        device: torch.device,
        amp_dtype: torch.dtype | None,
        perceptual: PerceptualLoss | None,
        distributed: bool,
        view: Callable[[torch.Tensor], torch.Tensor] | None = None,
        network_space: str = "srgb",
    ):
        self.config = config
        self.view = view or output_view("display")  # what the losses and D compare
        self.rendering = network_rendering(network_space)  # G1's output → the image `view` sees
        self.generators, self.d = generators, d
        self.device, self.amp_dtype, self.perceptual = device, amp_dtype, perceptual
        if distributed:
            ids = [device.index] if device.type == "cuda" else None
            self.gen_train: nn.Module = DistributedDataParallel(generators, device_ids=ids)
            self.d_train: nn.Module = DistributedDataParallel(d, device_ids=ids)
        else:
            self.gen_train, self.d_train = generators, d
        self.stage = 0
        self.opt_g: torch.optim.Optimizer | None = None
        self.opt_d: torch.optim.Optimizer | None = None
        self.sched_g: torch.optim.lr_scheduler.LRScheduler | None = None
        self.sched_d: torch.optim.lr_scheduler.LRScheduler | None = None
        # Only fp16 needs loss scaling; bf16 has fp32's range.
        scaler_on = amp_dtype == torch.float16
        self.scaler_g = torch.amp.GradScaler(device.type, enabled=scaler_on)
        self.scaler_d = torch.amp.GradScaler(device.type, enabled=scaler_on)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def enter_stage(self, stage: int) -> None:
        """Fresh optimisers and schedules for `stage` (the seed restarted Adam for stage 2)."""
        cfg = self.config
        lr = cfg.lr_stage1 if stage == 1 else cfg.lr_g
        self.opt_g = torch.optim.Adam(list(self.generators.parameters()), lr=lr, betas=cfg.betas)
        self.sched_g = torch.optim.lr_scheduler.StepLR(self.opt_g, cfg.lr_decay_every, cfg.lr_decay_factor)
        self.opt_d = self.sched_d = None
        if stage == 2 and cfg.uses_gan:
            self.opt_d = torch.optim.Adam(self.d.parameters(), lr=cfg.lr_d, betas=cfg.betas)
            self.sched_d = torch.optim.lr_scheduler.StepLR(self.opt_d, cfg.lr_decay_every, cfg.lr_decay_factor)
        self.stage = stage

    def learning_rates(self) -> tuple[float | None, float | None]:
        """(G's, D's) current learning rate; None for a network not being trained."""
        return (
            self.opt_g.param_groups[0]["lr"] if self.opt_g else None,
            self.opt_d.param_groups[0]["lr"] if self.opt_d else None,
        )

    def end_epoch(self) -> None:
        for scheduler in (self.sched_g, self.sched_d):
            if scheduler is not None:
                with warnings.catch_warnings():
                    # A run resumed exactly at an epoch's end steps its scheduler before this
                    # process stepped the optimiser; the schedule is right, the warning is not.
                    warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
                    scheduler.step()

    def step(self, batch: dict) -> dict[str, torch.Tensor]:
        """Train on `batch` (D first in an adversarial stage, then G1+G2); the losses, detached."""
        raw = batch["raw"].to(self.device, non_blocking=True)
        rgb = batch["rgb"].to(self.device, non_blocking=True)
        saliency = batch["saliency"].to(self.device, non_blocking=True)
        assert self.opt_g is not None, "enter_stage() first"
        with self.autocast():
            fake, predicted_saliency = self.gen_train(raw)
        fake, rgb = self.view(self.rendering(fake, batch)), self.view(rgb)
        losses: dict[str, torch.Tensor] = {}
        adversarial = self.stage == 2 and self.opt_d is not None
        if adversarial:
            losses["d"] = self._step_d(raw, fake, rgb)
        total = self._generator_loss(losses, raw, rgb, saliency, fake, predicted_saliency, adversarial)
        losses["g"] = total
        self.opt_g.zero_grad(set_to_none=True)
        # `inputs=` keeps the adversarial term's gradient out of D's .grad.
        self.scaler_g.scale(total).backward(inputs=list(self.generators.parameters()))
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        return {k: v.detach() for k, v in losses.items()}

    def _step_d(self, raw: torch.Tensor, fake: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        # D on the detached output: one forward over real and fake (InstanceNorm keeps them
        # independent), so DDP sees one forward per backward.
        assert self.opt_d is not None
        with self.autocast():
            scores = self.d_train(torch.cat([raw, raw]), torch.cat([fake.detach(), rgb]))
            score_fake, score_real = scores.float().chunk(2)
            loss = lsgan_d_loss(score_fake, score_real)
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler_d.scale(loss).backward()
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()
        return loss

    def _generator_loss(
        self, losses: dict, raw: torch.Tensor, rgb: torch.Tensor, saliency: torch.Tensor,
        fake: torch.Tensor, predicted_saliency: torch.Tensor, adversarial: bool,
    ) -> torch.Tensor:
        """G1+G2's weighted objective; records each term in `losses`."""
        cfg = self.config
        with self.autocast():
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
        return total

    # ---------------------------------------------------------------- checkpoint state

    def state_dict(self) -> dict:
        """Its checkpoint entries (None for an optimiser or schedule the current stage does not have)."""
        def state(obj):
            return obj.state_dict() if obj else None

        return {
            "opt_g": state(self.opt_g), "opt_d": state(self.opt_d),
            "sched_g": state(self.sched_g), "sched_d": state(self.sched_d),
            "scaler_g": self.scaler_g.state_dict(), "scaler_d": self.scaler_d.state_dict(),
        }

    def load_state_dict(self, state: dict, stage: int) -> None:
        """Re-enter `stage` (if any) with the optimiser, schedule and scaler states in `state`."""
        if stage:
            self.enter_stage(stage)
            assert self.opt_g is not None and self.sched_g is not None
            self.opt_g.load_state_dict(state["opt_g"])
            self.sched_g.load_state_dict(state["sched_g"])
            if self.opt_d is not None and state["opt_d"] is not None:
                self.opt_d.load_state_dict(state["opt_d"])
                self.sched_d.load_state_dict(state["sched_d"])  # type: ignore[union-attr]
        for scaler, saved in ((self.scaler_g, state["scaler_g"]), (self.scaler_d, state["scaler_d"])):
            if saved and scaler.is_enabled():  # a run may resume on other hardware (fp32 ↔ fp16)
                scaler.load_state_dict(saved)
