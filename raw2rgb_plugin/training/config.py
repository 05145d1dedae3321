"""The settings of a training run (no torch import: the CLI reads its defaults at start-up).

Every default is the seed's value: batch 8; Adam β = (0.5, 0.999); stage 1 = 10 epochs of
L1 + attention (weight 0.5) at lr 2e-4; stage 2 = 30 epochs adding VGG16 perceptual (1.0) and
LSGAN (0.01) with lr_G 1e-4 and lr_D 4e-4; learning rates halve every 10 epochs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.models.blocks import PERIOD_BASES, RESIDUAL_BASES  # torch-free (models.g1 needs torch)
from raw2rgb_plugin.vocabulary import INPUT_NORMALIZATIONS, NETWORK_SPACES, PROFILE_OUTPUTS, VARIANT_WIDTHS

if TYPE_CHECKING:
    from raw2rgb_plugin.models.g1 import G1Config

#: names of the G1 variants
VARIANTS = tuple(VARIANT_WIDTHS)
#: the sensors a run trains for (`--cfa`), and G1's packing period for each
CFA_PERIODS = {"bayer": 2, "xtrans": 6}


class TrainingError(Raw2RgbError):
    """A training run that cannot start or continue as asked."""


@dataclass
class TrainConfig:
    """Every knob of a run; defaults are the seed's values (batch 8, Adam(0.5, 0.999), …)."""

    variant: str = "base"
    width: int | None = None  # overrides the variant's G1 width (experiments, tests)
    d_width: int = 64
    batch_size: int = 8
    stage1_epochs: int = 10
    stage2_epochs: int = 30
    lr_stage1: float = 2e-4
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    lr_decay_every: int = 10  # epochs, counted within each stage
    lr_decay_factor: float = 0.5
    betas: tuple[float, float] = (0.5, 0.999)
    lambda_l1: float = 1.0
    lambda_attn: float = 0.5
    lambda_perc: float = 1.0
    lambda_gan: float = 0.01
    perceptual: bool = True
    vgg_weights: str | None = None
    input_normalization: str | None = None  # raw | wb | wb+ccm | linear-srgb; None: the dataset's
    #: none | mhc-srgb | mhc-srgb-gated | lsq-srgb-gated | … | auto (the lsq gated base of the input;
    #: an --init profile's own)
    residual_base: str = "auto"
    #: G1's residual blocks at the packed resolution (models/g1.py); None: 0, or an --init profile's own
    fine_blocks: int | None = None
    init_profile: str | None = None
    seed: int = 0
    amp: str = "auto"  # auto | bf16 | fp16 | off; on a CPU: auto = bf16 autocast where measured faster, fp16 refused
    device: str = "auto"
    workers: int | None = None  # None: 0 on the CPU, a few on CUDA
    max_steps: int | None = None
    #: stop (checkpoint + profile) once this invocation has trained this long: a GPU lent for
    #: ten minutes, a background CPU run that must end before its session does
    max_minutes: float | None = None
    keep_best: bool = False  # export the epoch with the best validation PSNR, not the last
    checkpoint_every: int = 1000  # steps; a checkpoint is also written at each epoch's end
    log_every: int = 10  # steps between JSONL step records
    #: G1 reads a per-site noise map beside the image (`pipeline/noise_map.py`). On for pairs made
    #: on the fly (they know their noise), off for stored datasets (their patches do not).
    noise_map: bool = False
    #: pairs made on the fly from sRGB images (`train --synthetic`): patch size in sensor px,
    #: patches per image per epoch, and the share of training samples without noise.
    synthetic_patch_size: int = 192
    synthetic_patches_per_image: int = 16
    synthetic_clean_fraction: float = 0.1
    synthetic_hard_fraction: float = 0.0  # share of patches mined for classical-demosaic error
    synthetic_balance_sources: bool = False  # the same patches per epoch for each source folder
    #: what a --synthetic run teaches G1 to render: "display" (sRGB) or "scene-linear" (the clean
    #: camera image for an editable DNG; `wb-headroom` input, `lsq-linear-gated` base)
    synthetic_output: str = "display"
    #: where a --synthetic display run's G1 works: "srgb" (`linear-srgb` input, it renders display
    #: sRGB) or "camera" (`wb-headroom` input, it renders white-balanced camera RGB and the fixed
    #: camera → display rendering after it meets the sRGB target); None: an --init profile's own,
    #: else srgb. Named explicitly, it may differ from the --init profile's (its features start it).
    network_space: str | None = None
    #: make the --synthetic training pairs on the training device (`data/device_pairs.py`), not in
    #: CPU workers: what keeps a GPU busy; on a CPU it is the same work in fewer, larger ops
    pairs_on_device: bool = False
    #: the sensor a --synthetic run trains for: "bayer" (G1 packs a 2×2 cell) or "xtrans" (the 6×6
    #: X-Trans period, 36 channels at 1/6 size: a profile that renders X-Trans files only)
    cfa: str = "bayer"

    @property
    def period(self) -> int:
        """G1's packing period for the run's sensor: 2 (Bayer) or 6 (X-Trans)."""
        return CFA_PERIODS[self.cfa]

    def for_data(self, *, synthetic: bool) -> TrainConfig:
        """This config with what the training data implies for the model: pairs made on the fly
        know their noise, so G1 reads a noise map; a scene-linear target reads `wb-headroom` input
        (set explicitly, so a display `--init` profile may start it), as `train` always did; so does
        a camera-space display run (`network_space`, an --init profile's own when not named)."""
        config = dataclasses.replace(self.resolved_space(), noise_map=synthetic)
        if config.cfa == "xtrans" and not synthetic:
            raise TrainingError("--cfa xtrans trains on pairs made on the fly (a stored dataset holds Bayer patches)",
                                "use --synthetic RGB_DIR")
        if config.synthetic_output == "scene-linear" and config.input_normalization is None:
            config.input_normalization = "wb-headroom"
        if config.space == "camera":
            if not synthetic:
                raise TrainingError("--network-space camera trains on pairs made on the fly",
                                    "use --synthetic RGB_DIR (each pair carries its camera's matrix)")
            if config.input_normalization is None:
                config.input_normalization = "wb-headroom"
        return config

    @property
    def space(self) -> str:
        """The run's network space as asked (`network_space`, srgb when not named); an --init
        profile's own is resolved into `network_space` by `resolved_space` before data is made."""
        return self.network_space or "srgb"

    def resolved_space(self) -> TrainConfig:
        """This config with an unnamed network space taken from the --init profile (torch-free
        metadata read), so `--init my-camera-profile` keeps training in camera space."""
        if self.network_space is not None or not self.init_profile:
            return self
        from raw2rgb_plugin.profiles.catalog import read_profile_metadata, resolve_profile_path

        try:
            meta = read_profile_metadata(resolve_profile_path(self.init_profile))
        except Raw2RgbError:
            return self  # the trainer reports the profile's problem when it loads it
        if meta.get("network_space", "srgb") == "camera":
            return dataclasses.replace(self, network_space="camera")
        return self

    def g1_config(self, residual_base: str) -> G1Config:
        """G1's architecture with `residual_base` resolved (the Trainer knows the input that `auto` needs)."""
        from raw2rgb_plugin.models.g1 import G1Config

        sites = self.period * self.period
        noise_channels = sites if self.noise_map else 0  # one noise-map channel per site (pipeline/noise_map.py)
        fine_blocks = self.fine_blocks or 0
        if self.width is not None:
            config = G1Config(width=self.width, residual_base=residual_base, noise_channels=noise_channels,
                              fine_blocks=fine_blocks)
        else:
            config = G1Config.for_variant(self.variant, residual_base=residual_base, noise_channels=noise_channels,
                                          fine_blocks=fine_blocks)
        # Bayer keeps G1Config's period and input defaults, as every Bayer profile was written.
        return config if self.period == 2 else dataclasses.replace(config, period=self.period, in_channels=sites)

    @property
    def uses_perceptual(self) -> bool:
        return self.perceptual and self.lambda_perc > 0 and self.stage2_epochs > 0

    @property
    def uses_gan(self) -> bool:
        return self.lambda_gan > 0 and self.stage2_epochs > 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in known}
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        return cls(**values)

    def validate(self) -> None:
        if self.width is None and self.variant not in VARIANTS:
            raise TrainingError(f"unknown variant {self.variant!r}", f"use one of {', '.join(VARIANTS)}")
        if self.batch_size < 1:
            raise TrainingError(f"batch size {self.batch_size} is not positive", "use --batch-size 1 or more")
        if self.stage1_epochs < 0 or self.stage2_epochs < 0 or self.stage1_epochs + self.stage2_epochs == 0:
            raise TrainingError("no epochs to train", "give --stage1-epochs and/or --stage2-epochs a positive value")
        if self.lr_decay_every < 1:
            raise TrainingError("--lr-decay-every must be at least 1 epoch", "use 10 (the seed's)")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise TrainingError(f"--max-minutes {self.max_minutes} is not positive", "use e.g. 8")
        if self.max_steps is not None and self.max_steps < 1:
            raise TrainingError(f"--max-steps {self.max_steps} is not positive", "use 1 or more")
        if self.input_normalization not in (None, *INPUT_NORMALIZATIONS):
            raise TrainingError(f"unknown input normalisation {self.input_normalization!r}",
                                f"use one of {', '.join(INPUT_NORMALIZATIONS)}")
        if self.residual_base not in ("auto", *RESIDUAL_BASES):
            raise TrainingError(f"unknown residual base {self.residual_base!r}", f"use auto, {', '.join(RESIDUAL_BASES)}")
        if self.cfa not in CFA_PERIODS:
            raise TrainingError(f"unknown --cfa {self.cfa!r}", f"use {' or '.join(CFA_PERIODS)}")
        if self.residual_base not in ("auto", "none", *PERIOD_BASES[self.period]):
            raise TrainingError(f"the {self.residual_base} residual base is not one of {self.cfa}'s",
                                f"use auto, none or {', '.join(PERIOD_BASES[self.period])}")
        if not 0 <= self.synthetic_hard_fraction <= 1:
            raise TrainingError(f"--hard-fraction {self.synthetic_hard_fraction} is not in [0, 1]", "use e.g. 0.5")
        if not 0 <= self.synthetic_clean_fraction <= 1:
            raise TrainingError(f"--clean-fraction {self.synthetic_clean_fraction} is not in [0, 1]", "use e.g. 0.1")
        if self.synthetic_patch_size % 16 or self.synthetic_patch_size < 32:
            raise TrainingError(f"--patch-size {self.synthetic_patch_size} is not a multiple of 16 (≥ 32)", "use e.g. 192")
        if self.cfa == "xtrans" and (self.synthetic_patch_size % 48 or self.synthetic_patch_size < 96):
            # whole strides of G1 (8 packed pixels of the 6-site period), two at least (as 32 for Bayer)
            raise TrainingError(f"--patch-size {self.synthetic_patch_size} is not a multiple of 48 (≥ 96), as X-Trans "
                                "needs", "use e.g. 192 or 288")
        if self.cfa == "xtrans" and self.input_normalization == "wb+ccm":
            raise TrainingError("wb+ccm input mixes the sites of a 2×2 Bayer cell; an X-Trans mosaic has none",
                                "drop --input-normalization")
        if self.synthetic_output not in PROFILE_OUTPUTS:
            raise TrainingError(f"unknown --target {self.synthetic_output!r}", "use display or scene-linear")
        if self.network_space not in (None, *NETWORK_SPACES):
            raise TrainingError(f"unknown --network-space {self.network_space!r}", f"use {' or '.join(NETWORK_SPACES)}")
        if self.space == "camera" and self.synthetic_output != "display":
            raise TrainingError("--network-space camera is for display profiles",
                                "drop --target scene-linear (its network already works in camera space)")
        if self.space == "camera" and self.input_normalization not in (None, "wb-headroom"):
            raise TrainingError(f"--network-space camera reads wb-headroom input, not {self.input_normalization!r}",
                                "drop --input-normalization")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise TrainingError(f"unknown --amp {self.amp!r}", "use auto, bf16, fp16 or off")
        for name in ("lambda_l1", "lambda_attn", "lambda_perc", "lambda_gan", "lr_stage1", "lr_g", "lr_d"):
            if getattr(self, name) < 0:
                raise TrainingError(f"{name} is negative", "loss weights and learning rates must be ≥ 0")


#: the variant `--variant auto` trains on each kind of device: the seed's width where a GPU makes
#: it affordable, the lite one on a CPU (a base checkpoint is 325 MB and a CPU step is slow).
AUTO_VARIANTS = {"cuda": "base", "mps": "slim", "cpu": "lite"}


def resolve_variant(variant: str, device: str, *, resume: bool, init: str | None) -> tuple[str, str | None]:
    """The variant to train and, for `auto`, the note that says which one and why."""
    if variant != "auto":
        return variant, None
    if resume or init:
        # A resumed run keeps its saved width, an --init profile brings its own: nothing to choose.
        return TrainConfig().variant, None
    from raw2rgb_plugin.runtime.device import choose_device

    try:
        kind = choose_device(device).type
    except Raw2RgbError:
        return TrainConfig().variant, None  # the trainer reports the device problem
    chosen = AUTO_VARIANTS.get(kind, TrainConfig().variant)
    return chosen, (f"training the {chosen} variant (G1 width {VARIANT_WIDTHS[chosen]}) on {kind}; "
                    "pass --variant base for the seed's width")
