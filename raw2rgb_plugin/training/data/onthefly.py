"""Synthetic training pairs made on the fly from sRGB images, with camera-realistic noise.

`raw2rgb train --synthetic RGB_DIR` trains on this instead of a dataset folder: every patch is
cut from an sRGB image, unprocessed with a random camera (Brooks et al. 2019, `unprocess.py`:
inverse tone curve, sRGB decode, camera matrix, inverse white balance), mosaicked, given
Poisson–Gaussian noise drawn from real cameras' calibrated range (`camera_noise.py`: base ISO to
ISO 25600-like, plus clean samples), quantised to the camera's bit depth, then normalised
exactly as the engine normalises a decoded RAW (levels, white balance, `linear-srgb`). Nothing
is written to disk, and each epoch sees new cameras, noise and crops of the same images.

Why not a dataset on disk: the noise range is the point of training, and a stored dataset
freezes one draw of it per patch (the shipped `default-lite` was trained on one draw of
Brooks' range, 1e-4 … 1.2e-2 shot noise, which starts where a median camera is at ISO
3200–6400 — so it learned to smooth base-ISO photographs).

`--cfa xtrans` makes the same pairs for Fujifilm's X-Trans sensor: the mosaic is the 6×6 X-Trans
period at its canonical phase (the engine brings every phase there), packed into 36 channels at
1/6 size, with a 36-channel noise map, so G1 learns on what `convert` feeds an X-Trans profile.

Each item is what the trainer reads from a stored dataset — `raw` (4 packed channels, plus the
4-channel noise map when `noise_map` is on; 36 and 36 for X-Trans), `rgb` (the sRGB crop, the target), `saliency`
(the built-in estimator on the target) and `scene` — so the trainer needs no special path.
Training items draw from the RNGs that `SeededItems` seeds per sample (resumable, identical on
rerun); validation items seed themselves from their index, so every epoch validates on the
same cameras and noise, drawn to cover clean input and ISO 100 to 12800 evenly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from raw2rgb_plugin.io.noise_profile import iso_prior
from raw2rgb_plugin.pipeline.cfa import XTRANS
from raw2rgb_plugin.pipeline.colour import camera_to_srgb_from_xyz_to_camera
from raw2rgb_plugin.pipeline.mhc import demosaic
from raw2rgb_plugin.pipeline.noise import NoiseModel
from raw2rgb_plugin.pipeline.normalization import headroom_gains, normalized_input
from raw2rgb_plugin.pipeline.packing import rggb_samples
from raw2rgb_plugin.pipeline.xtrans_demosaic import xtrans_linear_rendering
from raw2rgb_plugin.pipeline.xtrans_packing import xtrans_samples
from raw2rgb_plugin.training.data.camera_noise import sample_camera_noise_np
from raw2rgb_plugin.training.data.images import load_rgb
from raw2rgb_plugin.training.data.sources import find_images
from raw2rgb_plugin.training.data.store import DatasetError, assign_splits
from raw2rgb_plugin.training.data.unprocess import (
    UnprocessParams,
    mosaic_rgb,
    protected_inverse_gains,
    random_params,
    scene_linear,
)
from raw2rgb_plugin.training.saliency import builtin_saliency

#: validation noise, cycled over the validation items: clean, then darktable's median camera at
#: ISO 100, 1600, 6400 and 12800 in raw units (`io.noise_profile.iso_prior`).
VALIDATION_ISOS = (0, 100, 1600, 6400, 12800)
#: crops a hard sample is chosen from
HARD_CANDIDATES = 4
#: the pattern each sensor's pairs are mosaicked in: the canonical phase the engine pads every
#: frame to (RGGB; `cfa.XTRANS` at (0, 0)), so G1 trains on exactly what it is given
CANONICAL_PATTERNS = {"bayer": "RGGB", "xtrans": XTRANS}
#: patch sizes per sensor: whole multiples of G1's packed stride (8) × the period, and at least
#: two strides (its bottleneck must be 2 packed pixels wide to be padded)
PATCH_MULTIPLES = {"bayer": 16, "xtrans": 48}


@dataclass(frozen=True)
class OnTheFlyOptions:
    patch_size: int = 192  # sensor pixels; a multiple of 16 (Bayer, packed: half) or 48 (X-Trans: a sixth)
    patches_per_image: int = 16  # per epoch
    clean_fraction: float = 0.1  # training samples without noise
    #: training samples whose crop is the hardest of `HARD_CANDIDATES` for a classical demosaic
    #: (fine stripes, saturated colour edges, text, thin lines: what demosaicnet's authors mined)
    hard_fraction: float = 0.0
    #: give each source folder (the first folder under RGB_DIR, e.g. a corpus's sources) the same
    #: number of training patches per epoch, not each image: 84 % of the corpus is one source
    balance_sources: bool = False
    noise_map: bool = True  # append the 4-channel noise map (a noise-conditioned G1)
    val_fraction: float = 0.1
    seed: int = 0  # the run's --seed: validation draws (cameras, noise, crops)
    #: which images are held out for validation, independent of --seed, so every run on the same
    #: folder validates on the same images and a fine-tune never validates on what its starting
    #: profile trained on. Seed 1 holds out kodim02, kodim03, kodim21 and McMaster 4 of
    #: ../shared/data/rgb: the images every shipped default-lite was validated on.
    split_seed: int = 1
    #: what G1 learns to render: "display" (the sRGB image, from `linear-srgb` input) or
    #: "scene-linear" (the clean white-balanced camera RGB, from `wb-headroom` input: demosaic
    #: and denoise only, for an editable DNG)
    output: str = "display"
    #: where G1 works for a display output: "srgb" (`linear-srgb` input, display sRGB out) or
    #: "camera" (`wb-headroom` input, white-balanced camera RGB out; each item carries `to_srgb`,
    #: the 3×3 the trainer renders it to display with)
    network_space: str = "srgb"
    #: the sensor the pairs are mosaicked for: "bayer" or "xtrans" (`CANONICAL_PATTERNS`)
    cfa: str = "bayer"

    @property
    def input_normalization(self) -> str:
        return "wb-headroom" if self.output == "scene-linear" or self.network_space == "camera" else "linear-srgb"


class OnTheFlyDataset:
    """The trainer's dataset interface (`.manifest`, `.split()`) over a folder of sRGB images."""

    def __init__(self, rgb_dir: str | Path, options: OnTheFlyOptions = OnTheFlyOptions()):
        if options.cfa not in CANONICAL_PATTERNS:
            raise DatasetError(f"unknown sensor {options.cfa!r}", f"use {' or '.join(CANONICAL_PATTERNS)}")
        multiple = PATCH_MULTIPLES[options.cfa]
        if options.patch_size % multiple or options.patch_size < 2 * multiple:
            raise DatasetError(f"patch size {options.patch_size} is not a multiple of {multiple} (≥ {2 * multiple}) "
                               f"for a {options.cfa} sensor", "use e.g. 192")
        if options.output not in ("display", "scene-linear"):
            raise DatasetError(f"unknown output {options.output!r}", "use display or scene-linear")
        if options.network_space not in ("srgb", "camera") or (options.network_space == "camera"
                                                              and options.output != "display"):
            raise DatasetError(f"network space {options.network_space!r} with output {options.output!r}",
                               "camera space is for display targets; use srgb or camera")
        self.rgb_dir = Path(rgb_dir)
        self.options = options
        self.images = find_images(self.rgb_dir)
        scenes = {path: _scene(path, self.rgb_dir) for path in self.images}
        splits = assign_splits(list(scenes.values()), options.val_fraction, options.split_seed)
        self._by_split = {name: [p for p in self.images if splits[scenes[p]] == name] for name in ("train", "val")}
        self.manifest = {
            "kind": "synthetic-on-the-fly",
            "rgb_dir": str(self.rgb_dir),
            "input_normalization": options.input_normalization,
            "output_color_space": "camera-linear" if options.output == "scene-linear" else "srgb",
            "output": options.output,
            "network_space": options.network_space,
            "cfa": options.cfa,
            "images": len(self.images),
            "scenes": {name: sorted(scenes[p] for p in paths) for name, paths in self._by_split.items()},
            "options": asdict(options),
            "noise": {"sampler": "camera_noise.sample_camera_noise_np", "validation_isos": list(VALIDATION_ISOS)},
        }

    def split(self, name: str, augment: bool = False, *, input_normalization: str | None = None) -> OnTheFlySplit:
        own = self.options.input_normalization
        if input_normalization not in (None, own):
            raise DatasetError(f"on-the-fly pairs are made for {own} input, not {input_normalization!r}",
                               "drop --input-normalization")
        return OnTheFlySplit(self._by_split[name], self.rgb_dir, self.options, validation=(name == "val"))


class OnTheFlySplit(Dataset):
    def __init__(self, images: list[Path], root: Path, options: OnTheFlyOptions, *, validation: bool):
        self.images = images
        self.root = root
        self.options = options
        self.validation = validation
        self._cache: dict[int, np.ndarray] = {}  # uint8/uint16 images, loaded once per process
        #: the image of each item: `patches_per_image` each, or shared equally per source
        self._image_of = _items_per_image(images, root, options.patches_per_image,
                                          balance=options.balance_sources and not validation)

    def __len__(self) -> int:
        return len(self._image_of)

    def _image(self, k: int) -> np.ndarray:
        if k not in self._cache:
            image, _ = load_rgb(self.images[k])
            if min(image.shape[:2]) < self.options.patch_size:
                raise DatasetError(f"{self.images[k].name} is smaller than the {self.options.patch_size}-px patches",
                                   "use larger images or a smaller --patch-size")
            self._cache[k] = image
        return self._cache[k]

    def image_and_saliency(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Image `k` as uint16 (H, W, 3) and its whole-image saliency as uint8 (H, W): what
        `device_pairs.DeviceBatches` uploads once (it crops the map with the image)."""
        image = self._image(k)
        saliency = builtin_saliency(image)
        return np.rint(image * 65535.0).astype(np.uint16), np.rint(saliency * 255.0).astype(np.uint8)

    def draws(self, index: int) -> Draw:
        """Everything random about item `index`: crop, turn, camera, noise, and the generator the
        noise itself is drawn from. Training items: inside `SeededItems`' (or `seeded_rngs`') seeding."""
        k = self._image_of[index]
        if self.validation:  # the same patch, camera and noise every epoch
            digest = hashlib.sha256(f"val:{self.options.seed}:{index}".encode()).digest()
            rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
            iso = VALIDATION_ISOS[index % len(VALIDATION_ISOS)]
            noise = (0.0, 0.0)
            if iso:
                prior = iso_prior(iso)
                noise = (prior.shot, prior.read)
        else:  # numpy's global RNG was seeded for this sample: derive ours from it
            rng = np.random.default_rng(np.random.randint(0, 2**63 - 1, dtype=np.int64))
            noise = sample_camera_noise_np(rng, clean_fraction=self.options.clean_fraction)
        h, w = self._image(k).shape[:2]
        size = self.options.patch_size
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        if self.options.hard_fraction > 0 and not self.validation and rng.random() < self.options.hard_fraction:
            y, x = self._hardest(k, [(y, x)] + [(int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1)))
                                                 for _ in range(HARD_CANDIDATES - 1)])
        turns, mirror = 0, False
        if not self.validation:  # before unprocessing, so every orientation meets every CFA phase
            turns, mirror = int(rng.integers(0, 4)), bool(rng.random() < 0.5)
        params = random_params(rng, cfa_pattern=CANONICAL_PATTERNS[self.options.cfa], noise=False)
        return Draw(k, y, x, turns, mirror, params, noise, rng)

    def _hardest(self, k: int, corners: list[tuple[int, int]]) -> tuple[int, int]:
        """The crop whose mosaic a classical demosaic reconstructs worst (mean squared error):
        Malvar–He–Cutler for Bayer, the linear X-Trans demosaic (the gated base's) for X-Trans."""
        size = self.options.patch_size
        crops = torch.from_numpy(np.stack([self._image(k)[y : y + size, x : x + size] for y, x in corners])
                                 .transpose(0, 3, 1, 2).astype(np.float32))
        if self.options.cfa == "xtrans":
            rendered = xtrans_linear_rendering(xtrans_samples(crops))
        else:
            rendered = demosaic(rggb_samples(crops))
        errors = ((rendered - crops) ** 2).mean(dim=(1, 2, 3))
        return corners[int(torch.argmax(errors))]

    def __getitem__(self, index: int) -> dict:
        draw = self.draws(index)
        size = self.options.patch_size
        crop = self._image(draw.image)[draw.y : draw.y + size, draw.x : draw.x + size]
        crop = np.rot90(crop, draw.turns)
        if draw.mirror:
            crop = crop[:, ::-1]
        item = synthesize_pair(np.ascontiguousarray(crop, dtype=np.float32), draw.params, draw.noise, draw.rng,
                               with_noise_map=self.options.noise_map, linear_target=self.options.output == "scene-linear",
                               camera_input=self.options.network_space == "camera")
        item["scene"] = _scene(self.images[draw.image], self.root)
        return item


@dataclass(frozen=True)
class Draw:
    """What `OnTheFlySplit.draws` decides for one item."""

    image: int
    y: int
    x: int
    turns: int  # quarter turns (np.rot90's), before the mirror
    mirror: bool  # left–right
    params: UnprocessParams
    noise: tuple[float, float]
    rng: np.random.Generator  # what the CPU path draws the noise from


def _items_per_image(images: list[Path], root: Path, per_image: int, *, balance: bool) -> list[int]:
    """Item → image index. Balanced: every source gets `per_image` × (images ÷ sources) items,
    spread over its images as evenly as whole numbers allow (at least one each)."""
    if not balance:
        return [k for k in range(len(images)) for _ in range(per_image)]
    sources: dict[str, list[int]] = {}
    for k, path in enumerate(images):
        parts = path.relative_to(root).parts
        sources.setdefault(parts[0] if len(parts) > 1 else "", []).append(k)
    share = per_image * len(images) / len(sources)
    items = []
    for members in sources.values():
        total = max(len(members), round(share))
        items += [members[j % len(members)] for j in range(total)]
    return sorted(items)


def _scene(path: Path, root: Path) -> str:
    return str(path.relative_to(root).with_suffix(""))


def synthesize_pair(srgb: np.ndarray, params: UnprocessParams, noise: tuple[float, float], rng: np.random.Generator,
                    *, with_noise_map: bool, sample_normal: Callable[..., np.ndarray] | None = None,
                    linear_target: bool = False, camera_input: bool = False) -> dict:
    """sRGB (Pp, Pp, 3) in [0, 1] → the network input the engine would make of its RAW, and targets
    (P the period of `params.cfa_pattern`, one of `CANONICAL_PATTERNS`).

    The target is the sRGB crop, or with `linear_target` the clean camera image in the network's
    `wb-headroom` space (what the mosaic samples, before noise and quantisation, at every pixel).
    `camera_input` (a camera-space display profile): the `wb-headroom` input with the sRGB target,
    and `to_srgb`, the 3×3 that takes headroom-space camera RGB to linear sRGB (the camera →
    sRGB matrix × the largest white-balance gain, what `normalization.from_headroom` applies).

    The mosaic is packed at the canonical phase directly (the engine pads every frame to it): RGGB,
    or the 36 sites of `cfa.XTRANS` (`sensor_samples`). Noise is Gaussian with variance a·x + b
    (the Poisson–Gaussian model at these counts), and values are quantised to the camera's bit
    depth and clipped at black and white as a sensor does.
    """
    linear = scene_linear(srgb, params)
    camera = np.clip(linear @ params.camera_from_srgb.T, 0.0, 1.0)
    camera = np.clip(protected_inverse_gains(camera, params), 0.0, 1.0)
    packed = sensor_samples(camera, params.cfa_pattern)
    shot, read = noise
    if shot > 0 or read > 0:
        normal = (sample_normal or rng.standard_normal)(packed.shape)
        packed = packed + normal * np.sqrt(packed * shot + read)
    span = float(params.white_level - params.black_level)
    packed = np.clip(np.rint(packed * span) / span, 0.0, 1.0).astype(np.float32)

    levelled = torch.from_numpy(packed)
    camera_to_srgb = camera_to_srgb_from_xyz_to_camera(np.asarray(params.xyz_to_camera, dtype=np.float64))
    mode = "wb-headroom" if linear_target or camera_input else "linear-srgb"
    net = normalized_input(levelled, mode, params.wb_gains_rgb, camera_to_srgb.astype(np.float32),
                           noise=NoiseModel.of(shot, read) if with_noise_map else None)
    image = camera * headroom_gains(params.wb_gains_rgb) if linear_target else srgb
    target = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
    saliency = torch.from_numpy(builtin_saliency(srgb.astype(np.float32)))[None]
    item = {"raw": net.contiguous(), "rgb": target.contiguous(), "saliency": saliency.contiguous(),
            "noise": torch.tensor([shot, read], dtype=torch.float32)}
    if camera_input:
        item["to_srgb"] = to_srgb_matrix(params)
    return item


def sensor_samples(camera: np.ndarray, cfa_pattern: str) -> np.ndarray:
    """(H, W, 3) camera RGB → what a canonical-phase sensor samples of it, packed: (4, H/2, W/2)
    [R, Gr, Gb, B] for "RGGB", or (36, H/6, W/6) for `cfa.XTRANS` (channel 6·row + column of the
    site, `pipeline.xtrans_packing.pack_xtrans`'s order)."""
    if cfa_pattern == "RGGB":
        return np.stack([camera[0::2, 0::2, 0], camera[0::2, 1::2, 1], camera[1::2, 0::2, 1], camera[1::2, 1::2, 2]])
    if cfa_pattern != XTRANS:
        raise ValueError(f"pairs are mosaicked at the engine's canonical phase (RGGB or XTRANS), not {cfa_pattern!r}")
    mosaic = mosaic_rgb(camera, XTRANS)
    h, w = mosaic.shape
    return mosaic.reshape(h // 6, 6, w // 6, 6).transpose(1, 3, 0, 2).reshape(36, h // 6, w // 6)


def to_srgb_matrix(params: UnprocessParams) -> torch.Tensor:
    """(3, 3) float32: `wb-headroom` camera RGB → linear sRGB for a sample of camera `params` (the
    camera → sRGB matrix × the largest gain), what the engine's `from_headroom` applies to a frame."""
    matrix = camera_to_srgb_from_xyz_to_camera(np.asarray(params.xyz_to_camera, dtype=np.float64))
    return torch.as_tensor(matrix * max(params.wb_gains_rgb), dtype=torch.float32)
