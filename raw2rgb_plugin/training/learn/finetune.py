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
- **detail** (× 0.1): squared error (scaled like the colour term) between the output's high-pass
  and the frozen base profile's on the same input, so what the low-pass leaves out — detail, and
  on noisy crops the base's denoising — stays the base's. Without it the fine-tune diverged into
  noise (Laplacian energy 16× the look's); without the noisy crops, noisy input kept 1.46× the
  base's Laplacian energy. But the student cannot recompute the base's finest detail exactly
  (the base takes much of it from the classical rendering through its gate, which the
  fine-tune's former least-squares start opened), and a pointwise loss on what cannot be
  predicted is minimised by predicting less of it: the stronger the term, the softer the result.
  Mean |Laplacian| vs the base's on held-out synthetic frames 4, 7, 9 — L1 × 2: 0.86, L1 × 0.5
  (the old term): 0.89, squared × 2: 0.90, × 0.5: 0.96, × 0.25: 1.00; on frames 4, 7, 11 — L1 ×
  0.5: 0.95, squared × 0.25: 1.07, × 0.1: 1.14, closer to the look's own spectrum at every
  frequency but the base's 2-px gate pattern's. On the Canon D30 preview (in-sample): 0.77, 0.82
  (× 0.25), 0.84 (× 0.1), and its JPEG has 0.84 itself (measured before the look table was in
  the loop). PSNR against the clean look did not drop (28.64 → 28.77 dB on 4, 7, 11), and noisy
  input kept about the base's detail (shot 1e-3: 0.99 → 1.03; 5e-3: 1.37 → 1.39). (No gain for
  the D30 from σ 0.7 or 1.5, the encoder at the full rate or no noisy crops: all 0.81 ± 0.01; a
  term on local Laplacian energy instead overshot to 2.3× the base's.)

**Through the look table.** The profile's curve + 3D LUT (fitted first, `lut`) is applied to
the student's and the teacher's images inside the loss, so the network starts from the base's
weights at the table's score and learns only what a global map leaves to do. Two more terms:

- **colour as seen** (× 1): the mean OKLab distance of the low-passed images, beside the sRGB
  squared error that weighs a hue shift in a dark green like one in a bright grey;
- **fixed pattern** (× 30): the 2×2-cell repeat (`cell_pattern`) held to the target's. Without
  it a look that raises local contrast raised the base's faint per-site gate pattern to a
  visible grid in saturated flat areas (clarity look: detail 2.6× the base's, 32.4 dB; × 3:
  1.22×, 33.5 dB; × 30: 1.14×, 33.6 dB on the held-out frames).

**Chosen on validation frames.** Training frames set aside (`run.validation_count`) score the
start and every checkpoint interval; the profile gets the best (the start when nothing beats it),
so it is never worse than its own table on frames the fine-tune never saw.

All of G1 learns (the encoder at 0.2 × the rate): decoder-only fine-tuning was 0.6 dB lower on
the synthetic look after the same 300 steps. Adam, warm-up, cosine decay, gradient norm ≤ 0.05;
a jump of the loss (2× the best checkpoint interval's) rolls back to the best weights at half
the rate. Batches come from a generator seeded by (seed, step), the checkpoint holds weights,
optimiser, schedule, step and the open interval's losses, and the guard judges whole intervals
only, so a resumed run ends with the uninterrupted run's weights, bit for bit (with the same
torch thread count: more threads sum in another order).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from raw2rgb_plugin.pipeline.look import Look, apply_look
from raw2rgb_plugin.pipeline.metrics import image_psnr
from raw2rgb_plugin.training.checkpoint import write_checkpoint
from raw2rgb_plugin.training.config import TrainingError
from raw2rgb_plugin.training.learn.options import FinetuneOptions
from raw2rgb_plugin.training.learn.pairs import LearnPair
from raw2rgb_plugin.training.learn.patches import batch, largest_patch, padded16, pair_input
from raw2rgb_plugin.training.losses import oklab_distance

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
    """The colour terms on low-passed images (squared error in sRGB, distance in OKLab) and the
    detail term against the base's high-pass."""
    sigma = options.lowpass_sigma
    low_out, low_target = gaussian_lowpass(out, sigma), gaussian_lowpass(target, sigma)
    # Squared error, scaled to L1's magnitude on these images: PSNR is what the look is judged by,
    # and on the synthetic look it scored 0.1–0.2 dB above L1 for the same steps.
    colour = 10 * F.mse_loss(low_out, low_target)
    # Colour as seen: sRGB error weighs a hue shift in a dark green like one in a bright grey.
    perceptual = oklab_distance(low_out, low_target)
    detail = 10 * F.mse_loss(out - low_out, base - gaussian_lowpass(base, sigma))
    pattern = 10 * F.mse_loss(cell_pattern(out), cell_pattern(target))
    total = (colour + options.oklab_weight * perceptual + options.detail_weight * detail
             + options.pattern_weight * pattern)
    return {"colour": colour, "oklab": perceptual, "detail": detail, "pattern": pattern, "total": total}


def cell_pattern(image: torch.Tensor) -> torch.Tensor:
    """The part of (N, 3, H, W) that repeats every 2×2 Bayer cell, averaged over a neighbourhood:
    each cell's left−right, top−bottom and diagonal differences (crops start on a cell, turned
    as a whole), low-passed over cells (σ = 2 cells).

    A demosaicker's fixed-pattern error is such a repeat (the base profile's per-site gate leaves
    one in saturated flat areas); real detail changes sign from cell to cell and averages out. The
    colour terms cannot see it (σ = 1 px removes 99 % of a 2-px period) and the detail term holds
    it at the base's level, so a look that raises contrast raised it too, to a visible grid.
    """
    tl, tr = image[..., 0::2, 0::2], image[..., 0::2, 1::2]
    bl, br = image[..., 1::2, 0::2], image[..., 1::2, 1::2]
    parts = torch.cat([tl - tr + bl - br, tl + tr - bl - br, tl - tr - bl + br], dim=1) / 4
    return gaussian_lowpass(parts, 2.0)


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
                 device: torch.device | str = "cpu", should_stop: Callable[[], bool] | None = None,
                 look: Look | None = None, validation: list[LearnPair] | None = None):
        self.options, self.pairs, self.run_dir = options, pairs, Path(run_dir)
        self.device = torch.device(device)
        #: the profile's look table, in the loop: the network learns what it leaves to do
        self.look = look.to(self.device) if look is not None else None
        #: frames that choose the weights: the start (the look alone) unless training beats it
        self.validation = list(validation or [])
        self._chosen: dict | None = None  # {"psnr", "step", "model"} best on the validation frames
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
        self._chosen = state.get("chosen")
        self._interval = [float(v) for v in state.get("interval", [])]

    def save(self) -> None:
        write_checkpoint(self.run_dir, {"format": CHECKPOINT_FORMAT, "options": json.dumps(self.options.to_dict()),
                                        "model": self.student.state_dict(), "optimizer": self.optimizer.state_dict(),
                                        "schedule": self.schedule.state_dict(), "step": self.step, "best": self._best,
                                        "chosen": self._chosen, "interval": list(self._interval)},
                         name=CHECKPOINT_NAME)

    def styled(self, image: torch.Tensor) -> torch.Tensor:
        """A rendering as the profile will show it: through the look table when there is one."""
        return apply_look(image, self.look) if self.look is not None else image

    @torch.no_grad()
    def validation_psnr(self) -> float:
        """Mean PSNR of the student (with the look) against the validation frames' targets."""
        scores = []
        for pair in self.validation:
            h, w = pair.target.shape[:2]  # any size: padded to G1's stride, cropped back
            x = pair_input(pair, padded16(pair.linear), noise_channels=self.noise_channels)[None].to(self.device)
            out = self.styled(self.student(x).clamp(0, 1))[0, :, :h, :w].permute(1, 2, 0).cpu().numpy()
            scores.append(image_psnr(out, pair.target))
        return float(np.mean(scores))

    def _choose(self) -> None:
        """Keep the weights that score best on the validation frames (the start counts)."""
        if not self.validation:
            return
        psnr = self.validation_psnr()
        if self._chosen is None or psnr > self._chosen["psnr"]:
            self._chosen = {"psnr": psnr, "step": self.step, "model": copy.deepcopy(self.student.state_dict())}
        self.on_event({"event": "validation", "step": self.step, "psnr": psnr, "chosen_step": self._chosen["step"]})

    @property
    def chosen_step(self) -> int | None:
        """The step whose weights the profile gets (0: the start), or None without validation frames."""
        return None if self._chosen is None else int(self._chosen["step"])

    @property
    def done(self) -> bool:
        return self.step >= self.options.steps

    def run(self) -> bool:
        """Train to the last step (True) or to a stop request (False); checkpoints on the way."""
        o = self.options
        patch = largest_patch(self.pairs, o.patch)
        self.on_event({"event": "finetune", "step": self.step, "steps": o.steps, "patch": patch})
        started, first = time.perf_counter(), self.step
        if self.step == 0 and self._chosen is None:
            self._choose()  # the start: the base with the look
        with closing(self._prefetched(patch)) as batches:
            while not self.done and not self.stop_requested:
                values = self._train_step(*next(batches))
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
                    self._choose()
                if on_interval or self.stop_requested:
                    self.save()
        if self.done and self._chosen is not None:
            self.student.load_state_dict(self._chosen["model"])
        return self.done

    def _prefetched(self, patch: int) -> Generator[tuple[torch.Tensor, torch.Tensor, torch.Tensor], None, None]:
        """Each step's batch from this one on, with the teacher's rendering of it, prepared one
        step ahead on a helper thread of one torch thread.

        The student's step does not use the second core (a step took 0.24 s on one torch thread
        and 0.26 s on two, load ~2.3), and the batch and the teacher are a fifth of it. The batch
        depends only on its step and the teacher is frozen, so where it is computed changes nothing.
        """
        threads = torch.get_num_threads()
        helper = ThreadPoolExecutor(1, thread_name_prefix="raw2rgb-learn-batch", initializer=torch.set_num_threads,
                                    initargs=(1,))
        try:
            step = self.step
            ahead = helper.submit(self._prepared, patch, step)
            while True:
                current = ahead.result()
                step += 1
                if step < self.options.steps:
                    ahead = helper.submit(self._prepared, patch, step)
                yield current
        finally:
            helper.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(threads)  # the helper's setting is also torch's default for new threads

    @torch.no_grad()
    def _prepared(self, patch: int, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step `step`'s inputs and targets (from a generator seeded by it) and the teacher's styled output."""
        o = self.options
        inputs, targets = batch(self.pairs, o.batch_size, patch, np.random.default_rng([o.seed, step]),
                                noise_channels=self.noise_channels, clean_fraction=o.clean_fraction)
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        return inputs, targets, self.styled(self.teacher(inputs))

    def _train_step(self, inputs: torch.Tensor, targets: torch.Tensor, base: torch.Tensor) -> dict[str, float]:
        """One optimiser step of the student on a prepared batch; its losses."""
        o = self.options
        losses = look_loss(self.styled(self.student(inputs)), targets, base, o)
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
        return values

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
