"""Fine-tuning the base profile's G1 towards a camera's look: colour and tone, not detail.

Why not `Trainer`: its two-stage GAN loop has no place for what a look needs — a loss that
ignores what a JPEG gets wrong, a teacher that holds detail and noise handling, BatchNorm kept at
the base's statistics (G1 runs in eval mode here, so what is trained is exactly the function
`convert` runs) — and G2, D and the saliency attention add nothing to a colour change.

The loss, on crops of the pairs (`patches`), half of them with camera noise added:

- **colour**: squared error between the output and the camera JPEG after a Gaussian low-pass
  (σ = 1 pair pixel). JPEG blocks and ringing and the camera's sharpening live above that band;
  the look (curve, colour, local contrast) below it. (Tried: L1, 0.1–0.2 dB lower; a 2σ
  low-pass on chroma for the JPEG's half-size chroma, 0.35 dB lower against the clean look.)
- **detail** (× 0.1): squared error (scaled like the colour term) between the output's
  high-pass and the frozen base profile's on the same input, so what the low-pass leaves out —
  detail, and on noisy crops the base's denoising — stays the base's. Without it the fine-tune
  diverged into noise (Laplacian energy 16× the look's); without the noisy crops, noisy input
  kept 1.46× the base's Laplacian energy. But the student cannot recompute the base's finest
  detail exactly (the base takes much of it from the classical rendering through its gate, which
  `head` opens), and a pointwise loss on what cannot be predicted is minimised by predicting less
  of it: the stronger the term, the softer the result. Mean |Laplacian| vs the base's on held-out
  synthetic frames 4, 7, 9 — L1 × 2: 0.86, L1 × 0.5 (the old term): 0.89, squared × 2: 0.90,
  × 0.5: 0.96, × 0.25: 1.00; on frames 4, 7, 11 — L1 × 0.5: 0.95, squared × 0.25: 1.07, × 0.1:
  1.14, closer to the look's own spectrum at every frequency but the base's 2-px gate pattern's.
  On the Canon D30 preview (in-sample): 0.77, 0.82 (× 0.25), 0.84 (× 0.1), and its JPEG has
  0.84 itself. PSNR against the clean look did not drop (28.64 → 28.77 dB on 4, 7, 11), and noisy
  input kept about the base's detail (shot 1e-3: 0.99 → 1.03; 5e-3: 1.37 → 1.39).
  (No gain for the D30 from σ 0.7 or 1.5, the encoder at the full rate or no noisy crops: all
  0.81 ± 0.01; a term on local Laplacian energy instead overshot to 2.3× the base's.)

All of G1 learns (the encoder at 0.2 × the rate): decoder-only fine-tuning was 0.6 dB lower on
the synthetic look after the same 300 steps. Start: the least-squares head (`head`). Adam, warm-up, cosine
decay, gradient norm ≤ 0.05; a jump of the loss (2× the best checkpoint interval's) rolls back
to the best weights at half the rate. Batches come from a generator seeded by (seed, step), the
checkpoint holds weights, optimiser, schedule, step and the open interval's losses, and the guard
judges whole intervals only, so a resumed run ends with the uninterrupted run's weights, bit for
bit (with the same torch thread count: more threads sum in another order).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from raw2rgb_plugin.training.checkpoint import write_checkpoint
from raw2rgb_plugin.training.config import TrainingError
from raw2rgb_plugin.training.learn.options import FinetuneOptions
from raw2rgb_plugin.training.learn.pairs import LearnPair
from raw2rgb_plugin.training.learn.patches import batch, largest_patch

CHECKPOINT_FORMAT = "raw2rgb-learn-1"
CHECKPOINT_NAME = "finetune.pt"
#: which G1 blocks are trained; the rest stay the base profile's
ENCODER = ("e1", "e2", "e3", "e4", "bottleneck")
#: a fine-tune whose loss over a checkpoint interval exceeds this many times its best interval's
#: has jumped out of its basin (seen at 7e-4: colour loss 0.024 → 0.099 within 50 steps, never
#: recovering): it goes back to the best weights at half the learning rate
JUMP = 2.0
TRAINABLE = {
    "head": ("d4",),
    "decoder": ("d1", "d2", "d3", "d4"),
    "all": None,
}


def gaussian_lowpass(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W), reflect-padded (no dark border)."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    c = image.shape[1]
    padded = F.pad(image, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(padded, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(out, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def look_loss(out: torch.Tensor, target: torch.Tensor, base: torch.Tensor, options: FinetuneOptions) -> dict[str, torch.Tensor]:
    """The colour term on low-passed images and the detail term against the base's high-pass."""
    sigma = options.lowpass_sigma
    low_out = gaussian_lowpass(out, sigma)
    # Squared error, scaled to L1's magnitude on these images: PSNR is what the look is judged by,
    # and on the synthetic look it scored 0.1–0.2 dB above L1 for the same steps.
    colour = 10 * F.mse_loss(low_out, gaussian_lowpass(target, sigma))
    detail = 10 * F.mse_loss(out - low_out, base - gaussian_lowpass(base, sigma))
    return {"colour": colour, "detail": detail, "total": colour + options.detail_weight * detail}


def prepare_student(base: nn.Module, trainable: str, encoder_lr_scale: float = 1.0) -> tuple[nn.Module, list[dict]]:
    """A copy of the base G1 in eval mode with only the `trainable` blocks' weights learning, and
    the optimiser's parameter groups (the encoder's at `encoder_lr_scale` of the rate)."""
    if trainable not in TRAINABLE:
        raise TrainingError(f"unknown trainable part {trainable!r}", f"use one of {', '.join(TRAINABLE)}")
    student = copy.deepcopy(base).float().eval()
    blocks = TRAINABLE[trainable]
    encoder: list[nn.Parameter] = []
    decoder: list[nn.Parameter] = []
    for name, param in student.named_parameters():
        block = name.split(".")[0]
        learn = blocks is None or block in blocks
        param.requires_grad_(learn)
        if learn:
            (encoder if block in ENCODER else decoder).append(param)
    groups = [{"params": decoder, "lr_scale": 1.0}]
    if encoder:
        groups.append({"params": encoder, "lr_scale": encoder_lr_scale})
    return student, groups


class Finetune:
    """The fine-tune of `base` (a G1 in eval mode) on `pairs`, checkpointed in `run_dir`."""

    def __init__(self, base: nn.Module, pairs: list[LearnPair], run_dir: Path, options: FinetuneOptions,
                 on_event: Callable[[dict], None] | None = None, start: nn.Module | None = None,
                 device: torch.device | str = "cpu", should_stop: Callable[[], bool] | None = None):
        self.options, self.pairs, self.run_dir = options, pairs, Path(run_dir)
        self.device = torch.device(device)
        self.should_stop = should_stop or (lambda: False)
        self.seconds_per_step: float | None = None
        self.teacher = base.float().eval().to(self.device)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.student, groups = prepare_student(start if start is not None else base, options.trainable,
                                               options.encoder_lr_scale)
        self.student.to(self.device)
        self.noise_channels = int(getattr(self.student.config, "noise_channels", 0))
        self.optimizer = torch.optim.Adam([{"params": g["params"], "lr": options.lr * g["lr_scale"]} for g in groups],
                                          betas=(0.9, 0.999))
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: _rate(step, options))
        self.on_event = on_event or (lambda event: None)
        self.step = 0
        self.stop_requested = False
        self._interval: list[float] = []  # colour losses since the last checkpoint
        self._best: dict | None = None  # {"loss", "step", "model", "optimizer"} of the best interval
        self._resume()

    def _resume(self) -> None:
        path = self.run_dir / CHECKPOINT_NAME
        if not path.is_file():
            return
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:
            raise TrainingError(f"cannot read {path} ({type(exc).__name__})", "delete it to start the fine-tune over") from None
        if state.get("format") != CHECKPOINT_FORMAT or json.loads(state["options"]) != self.options.to_dict():
            raise TrainingError(f"{path} is a fine-tune with other settings", "rerun with the same options, or use another -o")
        self.student.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.step = int(state["step"])
        self._best = state.get("best")
        self._interval = [float(v) for v in state.get("interval", [])]

    def save(self) -> None:
        write_checkpoint(self.run_dir, {"format": CHECKPOINT_FORMAT, "options": json.dumps(self.options.to_dict()),
                                        "model": self.student.state_dict(), "optimizer": self.optimizer.state_dict(),
                                        "schedule": self.schedule.state_dict(), "step": self.step, "best": self._best,
                                        "interval": list(self._interval)},
                         name=CHECKPOINT_NAME)

    @property
    def done(self) -> bool:
        return self.step >= self.options.steps

    def run(self) -> bool:
        """Train to the last step (True) or to a stop request (False); checkpoints on the way."""
        o = self.options
        patch = largest_patch(self.pairs, o.patch)
        self.on_event({"event": "finetune", "step": self.step, "steps": o.steps, "patch": patch})
        started, first = time.perf_counter(), self.step
        while not self.done and not self.stop_requested:
            rng = np.random.default_rng([o.seed, self.step])
            inputs, targets = batch(self.pairs, o.batch_size, patch, rng, noise_channels=self.noise_channels,
                                    clean_fraction=o.clean_fraction)
            inputs, targets = inputs.to(self.device), targets.to(self.device)
            with torch.no_grad():
                base = self.teacher(inputs)
            losses = look_loss(self.student(inputs), targets, base, o)
            self.optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            if o.clip:
                torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], o.clip)
            self.optimizer.step()
            self.schedule.step()
            self.step += 1
            values = {k: float(v.detach()) for k, v in losses.items()}
            if not all(math.isfinite(v) for v in values.values()):
                raise TrainingError(f"the fine-tune diverged at step {self.step}", "rerun with a lower --lr")
            rate = (self.step - first) / max(1e-9, time.perf_counter() - started)
            self.seconds_per_step = 1.0 / rate
            self.stop_requested = self.stop_requested or self.should_stop()
            self.on_event({"event": "step", "step": self.step, "steps": o.steps, "losses": values, "it_per_s": rate})
            self._interval.append(values["colour"])
            # The guard judges whole intervals only: judged at a stop, a resumed run would have
            # taken its decisions on other intervals than an uninterrupted one (and the
            # unfinished interval's losses travel in the checkpoint).
            on_interval = self.step % o.checkpoint_every == 0 or self.done
            if on_interval:
                self._guard()
            if on_interval or self.stop_requested:
                self.save()
        return self.done

    def _guard(self) -> None:
        """Remember the best interval's weights; after a jump, go back to them at half the rate."""
        if not self._interval:
            return
        loss = float(np.mean(self._interval))
        self._interval = []
        best = self._best
        if best is None or loss < best["loss"]:
            self._best = {"loss": loss, "step": self.step, "model": copy.deepcopy(self.student.state_dict()),
                          "optimizer": copy.deepcopy(self.optimizer.state_dict())}
        elif loss > JUMP * best["loss"]:
            self.student.load_state_dict(best["model"])
            self.optimizer.load_state_dict(best["optimizer"])
            self.schedule.base_lrs = [lr * 0.5 for lr in self.schedule.base_lrs]
            self.on_event({"event": "note", "message": f"the fine-tune jumped at step {self.step} (colour loss {loss:.3g}, "
                                                       f"best {best['loss']:.3g}): back to step {best['step']}'s weights at "
                                                       "half the learning rate"})


def _rate(step: int, options: FinetuneOptions) -> float:
    """Linear warm-up (a fresh Adam's first steps are its largest), then cosine decay to 5 %."""
    if step < options.warmup:
        return (step + 1) / options.warmup
    done = min(step, options.steps) / options.steps
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * done))
