"""Synthetic pairs made on the training device: `onthefly.synthesize_pair` as batched torch ops.

The on-the-fly dataset makes each pair in numpy on a CPU worker. On an H200 that bound training:
12 spawned workers fed 16 steps/s at batch 32 and took 72 s before the first step. Here the
corpus is uploaded once (uint16, with each image's saliency map), and a whole batch is cut,
turned, unprocessed, mosaicked, given noise, quantised and normalised on the device; only the
per-sample draws (crop position, turn, camera, noise level: a few numbers each) stay on the CPU,
made by the same numpy generators as `OnTheFlySplit.__getitem__`, so a run is as resumable.

`synthesize_batch` is the arithmetic; `tests/test_device_pairs.py` holds it to
`synthesize_pair` on the same crops, cameras and normal draws. `DeviceBatches` stands in for
the DataLoader over the training split (`train --pairs-on-device`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from raw2rgb_plugin.pipeline.colour import camera_to_srgb_from_xyz_to_camera
from raw2rgb_plugin.pipeline.noise import NoiseModel
from raw2rgb_plugin.pipeline.normalization import headroom_gains, normalized_input
from raw2rgb_plugin.pipeline.packing import rggb_samples
from raw2rgb_plugin.pipeline.xtrans_packing import xtrans_samples
from raw2rgb_plugin.training.data.onthefly import to_srgb_matrix
from raw2rgb_plugin.training.data.unprocess import HIGHLIGHT_INFLECTION, UnprocessParams
from raw2rgb_plugin.training.sampling import seeded_rngs


@dataclass(frozen=True)
class Cameras:
    """Per-sample camera tensors of a batch, on the device."""

    camera_from_srgb: torch.Tensor  # (N, 3, 3)
    wb_gains: torch.Tensor  # (N, 3)
    span: torch.Tensor  # (N,) white − black, the quantisation step's inverse
    inverse_tone_curve: torch.Tensor  # (N,) bool
    params: tuple[UnprocessParams, ...]

    @classmethod
    def of(cls, params: Sequence[UnprocessParams], device: torch.device | str) -> Cameras:
        def tensor(values) -> torch.Tensor:
            return torch.as_tensor(np.asarray(values, dtype=np.float32), device=device)

        return cls(camera_from_srgb=tensor([p.camera_from_srgb for p in params]),
                   wb_gains=tensor([p.wb_gains_rgb for p in params]),
                   span=tensor([p.white_level - p.black_level for p in params]),
                   inverse_tone_curve=torch.as_tensor([p.inverse_tone_curve for p in params], device=device),
                   params=tuple(params))


def _scene_linear(srgb: torch.Tensor, inverse_tone: torch.Tensor) -> torch.Tensor:
    """`unprocess.scene_linear` on (N, 3, H, W): the inverse tone curve where asked, sRGB decode."""
    x = srgb.clamp(0.0, 1.0)
    untoned = 0.5 - torch.sin(torch.asin(1.0 - 2.0 * x) / 3.0)
    x = torch.where(inverse_tone.view(-1, 1, 1, 1), untoned, x)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055).pow(2.4))


def _protected_inverse_gains(camera: torch.Tensor, wb_gains: torch.Tensor) -> torch.Tensor:
    """`unprocess.protected_inverse_gains` on (N, 3, H, W)."""
    inverse = (1.0 / wb_gains).view(-1, 3, 1, 1)
    gray = camera.mean(dim=1, keepdim=True)
    mask = ((gray - HIGHLIGHT_INFLECTION).clamp_min(0.0) / (1.0 - HIGHLIGHT_INFLECTION)) ** 2
    return camera * torch.maximum(mask + (1.0 - mask) * inverse, inverse)


def synthesize_batch(srgb: torch.Tensor, cameras: Cameras, noise: torch.Tensor, normal: torch.Tensor, *,
                     with_noise_map: bool, linear_target: bool = False,
                     camera_input: bool = False) -> dict[str, torch.Tensor]:
    """sRGB crops (N, 3, 2p, 2p) in [0, 1] → the batch `synthesize_pair` makes one by one.

    `noise`: (N, 2) shot and read terms (0, 0 for a clean sample); `normal`: (N, S, p, p) standard
    normal draws, S the sites of the cameras' pattern (4 RGGB, 36 X-Trans; one pattern per batch).
    Returns `raw` (N, S [+ S], p, p), `rgb` (the target) and `noise`; with `camera_input`,
    `wb-headroom` input for the display target and `to_srgb` (N, 3, 3).
    """
    linear = _scene_linear(srgb, cameras.inverse_tone_curve)
    camera = torch.einsum("nij,njhw->nihw", cameras.camera_from_srgb, linear).clamp(0.0, 1.0)
    camera = _protected_inverse_gains(camera, cameras.wb_gains).clamp(0.0, 1.0)
    packed = xtrans_samples(camera) if len(cameras.params[0].cfa_pattern) == 36 else rggb_samples(camera)
    shot, read = (noise[:, k].view(-1, 1, 1, 1).to(packed.dtype) for k in (0, 1))
    packed = packed + normal * torch.sqrt(packed * shot + read)
    span = cameras.span.view(-1, 1, 1, 1)
    levelled = (torch.round(packed * span) / span).clamp(0.0, 1.0)

    mode = "wb-headroom" if linear_target or camera_input else "linear-srgb"
    inputs = []
    # One copy to the host for the noise maps, not a GPU synchronisation per sample and term.
    terms = noise.tolist() if with_noise_map else [None] * len(cameras.params)
    for sample, params, shot_read in zip(levelled, cameras.params, terms):
        camera_to_srgb = camera_to_srgb_from_xyz_to_camera(np.asarray(params.xyz_to_camera)).astype(np.float32)
        model = NoiseModel.of(*shot_read) if shot_read is not None else None
        inputs.append(normalized_input(sample, mode, params.wb_gains_rgb, camera_to_srgb, noise=model))
    if linear_target:
        gains = torch.stack([torch.as_tensor(headroom_gains(p.wb_gains_rgb), dtype=camera.dtype) for p in cameras.params])
        target = camera * gains.to(camera.device).view(-1, 3, 1, 1)
    else:
        target = srgb
    batch = {"raw": torch.stack(inputs).contiguous(), "rgb": target.contiguous(), "noise": noise.float()}
    if camera_input:
        batch["to_srgb"] = torch.stack([to_srgb_matrix(p) for p in cameras.params]).to(srgb.device)
    return batch


class DeviceBatches:
    """Batches of the training split made on `device`, in the order of `sampler` (drop_last).

    `split` is an `OnTheFlySplit`: its images (and their saliency maps) are uploaded once, and each
    sample's draws come from its `draws(index)` under the sample's seed, as `SeededItems` seeds a
    CPU worker's `__getitem__`; `sampler` yields (index, seed) keys (`ResumableSampler`).
    """

    def __init__(self, split, sampler, batch_size: int, device: torch.device):
        self.split, self.sampler, self.batch_size, self.device = split, sampler, batch_size, device
        self._images: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size

    def _image(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        if k not in self._images:
            image, saliency = self.split.image_and_saliency(k)
            self._images[k] = (torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).to(self.device),
                               torch.from_numpy(saliency).to(self.device))
        return self._images[k]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        chunk: list[tuple[int, int]] = []
        for index, seed in self.sampler:
            chunk.append((int(index), int(seed)))
            if len(chunk) == self.batch_size:
                yield self._batch(chunk)
                chunk = []

    def _batch(self, keys: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
        size = self.split.options.patch_size
        crops, maps, params, noise = [], [], [], []
        for index, seed in keys:
            with seeded_rngs(seed):
                draw = self.split.draws(index)
            image, saliency = self._image(draw.image)
            # Widened before turning: flip and rot90 have no uint16 kernels on every device.
            crop = image[:, draw.y : draw.y + size, draw.x : draw.x + size].float()
            smap = saliency[None, draw.y : draw.y + size, draw.x : draw.x + size].float()
            crop, smap = (torch.rot90(t, draw.turns, dims=(1, 2)) for t in (crop, smap))
            if draw.mirror:
                crop, smap = crop.flip(2), smap.flip(2)
            crops.append(crop)
            maps.append(smap)
            params.append(draw.params)
            noise.append(draw.noise)
        srgb = torch.stack(crops) / 65535.0
        # One generator per batch, seeded from its samples' seeds: a resumed run redraws the same.
        generator = torch.Generator(device=self.device).manual_seed(_batch_seed(keys))
        period = 6 if self.split.options.cfa == "xtrans" else 2
        packed_side = self.split.options.patch_size // period
        normal = torch.randn((len(keys), period * period, packed_side, packed_side), generator=generator,
                             device=self.device)
        batch = synthesize_batch(srgb, Cameras.of(params, self.device), torch.tensor(noise, device=self.device),
                                 normal, with_noise_map=self.split.options.noise_map,
                                 linear_target=self.split.options.output == "scene-linear",
                                 camera_input=self.split.options.network_space == "camera")
        batch["saliency"] = torch.stack(maps) / 255.0
        return batch


def _batch_seed(keys: list[tuple[int, int]]) -> int:
    value = 0
    for _, seed in keys:
        value = (value * 1_000_003 + seed) % (2**61 - 1)
    return value
