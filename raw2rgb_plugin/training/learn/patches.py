"""Training crops of the learn pairs, as the network input `convert` would make of their RAW.

A crop of the pair's linear camera RGB and of its target is turned (90° steps, mirrored) as one,
then mosaicked in RGGB order — after the turn, so every orientation keeps the Bayer phase — and
normalised exactly as the engine normalises a decoded RAW: white balance, `linear-srgb` (the
camera matrix at every site, Malvar–He–Cutler for the colours a site lacks) and the noise map of
the pair's own (area-reduced) noise. Crops are drawn from a generator seeded by (seed, step), so
a resumed fine-tune sees exactly the batches it would have seen.

Pairs are clean (area-reduced, or synthetic), the photographs `convert` will meet are not: some
crops get camera-realistic Poisson–Gaussian noise (`camera_noise`, base ISO to ISO 25600) with
its noise map, so the fine-tune also sees the noisy inputs on which the base denoises, and the
detail term (`finetune`) holds it to the base's rendering of them.
"""

from __future__ import annotations

import numpy as np
import torch

from raw2rgb_plugin.pipeline.noise import NoiseModel
from raw2rgb_plugin.pipeline.normalization import normalized_input
from raw2rgb_plugin.pipeline.packing import rggb_samples
from raw2rgb_plugin.training.data.camera_noise import sample_camera_noise_np
from raw2rgb_plugin.training.learn.pairs import LearnPair

INPUT_NORMALIZATION = "linear-srgb"
#: share of training crops left as clean as their pair
CLEAN_FRACTION = 0.5


def mosaic_packed(linear: np.ndarray) -> torch.Tensor:
    """(H, W, 3) camera RGB, H and W even → (4, H/2, W/2) packed RGGB samples."""
    return rggb_samples(torch.from_numpy(np.asarray(linear, dtype=np.float32)).permute(2, 0, 1)).contiguous()


def pair_input(pair: LearnPair, linear: np.ndarray, *, noise_channels: int,
               rng: np.random.Generator | None = None, clean_fraction: float = 1.0) -> torch.Tensor:
    """A (crop of a) pair's linear image → G1's (4 [+ 4], h, w) input, as `convert` builds it.

    With `rng`, a share 1 − `clean_fraction` of calls adds camera noise first (and tells the map).
    """
    levelled = mosaic_packed(linear).clamp_(0.0, 1.0)
    shot, read = pair.info["noise"]["shot"], pair.info["noise"]["read"]
    if rng is not None:
        a, b = sample_camera_noise_np(rng, clean_fraction=clean_fraction)
        if a > 0:
            sigma = np.sqrt(levelled.numpy() * a + b)
            levelled = (levelled + torch.from_numpy((rng.standard_normal(sigma.shape) * sigma).astype(np.float32))).clamp_(0, 1)
            shot, read = shot + a, read + b
    return normalized_input(levelled, INPUT_NORMALIZATION, pair.wb_gains_rgb, pair.camera_to_srgb,
                            noise=NoiseModel.of(shot, read, "learn pair") if noise_channels else None)


def padded16(image: np.ndarray) -> np.ndarray:
    """(H, W, …) reflect-padded at the bottom/right to multiples of 16 (G1's stride in sensor px);
    padding the linear image before mosaicking keeps the Bayer phase."""
    h, w = image.shape[:2]
    return np.pad(image, ((0, -h % 16), (0, -w % 16)) + ((0, 0),) * (image.ndim - 2), mode="reflect")


def cropped(pair: LearnPair, side: int, rng: np.random.Generator) -> LearnPair:
    """A random side×side window of the pair (whole pair when smaller), starting on a 2×2 cell."""
    h, w = pair.linear.shape[:2]
    ch, cw = min(side, h) // 2 * 2, min(side, w) // 2 * 2
    y, x = 2 * int(rng.integers(0, (h - ch) // 2 + 1)), 2 * int(rng.integers(0, (w - cw) // 2 + 1))
    return LearnPair(pair.name, pair.linear[y : y + ch, x : x + cw], pair.target[y : y + ch, x : x + cw], pair.info)


def largest_patch(pairs: list[LearnPair], wanted: int) -> int:
    """The training crop side (sensor px, a multiple of 16 as G1 needs) every pair can give."""
    smallest = min(min(p.linear.shape[:2]) for p in pairs)
    return max(16, min(wanted, smallest // 16 * 16))


def batch(pairs: list[LearnPair], size: int, patch: int, rng: np.random.Generator, *,
          noise_channels: int, clean_fraction: float = CLEAN_FRACTION) -> tuple[torch.Tensor, torch.Tensor]:
    """`size` random crops: inputs (N, C, patch/2, patch/2) and targets (N, 3, patch, patch)."""
    inputs, targets = [], []
    for _ in range(size):
        pair = pairs[int(rng.integers(len(pairs)))]
        h, w = pair.linear.shape[:2]
        # Even offsets: the crop starts on a 2×2 cell, like the mosaic it stands for.
        y = 2 * int(rng.integers(0, (h - patch) // 2 + 1))
        x = 2 * int(rng.integers(0, (w - patch) // 2 + 1))
        turns, mirror = int(rng.integers(4)), bool(rng.integers(2))
        linear, target = (_turned(a[y : y + patch, x : x + patch], turns, mirror) for a in (pair.linear, pair.target))
        inputs.append(pair_input(pair, linear, noise_channels=noise_channels, rng=rng,
                                    clean_fraction=clean_fraction if noise_channels else 1.0))
        targets.append(torch.from_numpy(np.ascontiguousarray(target.transpose(2, 0, 1), dtype=np.float32)))
    return torch.stack(inputs), torch.stack(targets)


def _turned(image: np.ndarray, turns: int, mirror: bool) -> np.ndarray:
    image = np.rot90(image, turns)
    return np.ascontiguousarray(image[:, ::-1] if mirror else image)
