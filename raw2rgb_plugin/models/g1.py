"""G1, the RAW2RGB-GAN main generator: a U-Net from packed Bayer RAW to RGB.

Follows the seed's layer table (see `docs/ARCHITECTURE.md` and the seed facts) with two
deliberate changes:

1. **Full sensor resolution out.** The last 7×7 conv emits 4 RGB triplets per packed pixel
   (12 channels) that `pixel_shuffle` places on the 2×2 Bayer sites, so a packed H×W input gives a
   2H×2W image. The seed's half-resolution output is the 2×2 mean of that (`half_size`).
2. **No per-sample normalisation.** The seed's InstanceNorm computes statistics per tile, so tiled
   output differs from whole-frame output (visible seams). We use BatchNorm, whose inference-time
   statistics are fixed numbers (and fold into the convolutions), or no norm at all.

The model takes the packed, normalised RAW in [0, 1] and returns RGB in [0, 1] (the seed's
[-1, 1] mapping happens inside), so callers never juggle value ranges.

A third, optional change (``residual_base``, for ``linear-srgb`` input): G1 works with a fixed
classical rendering of its own input (Malvar–He–Cutler demosaic, sRGB encoding, the generic tone
curve the synthetic targets carry), which alone scores like LibRaw AHD on the held-out synthetic
set (28.0 dB; 32.6 dB without noise), where the CPU-trained lite network without it reached
28.5 dB on clean input after 6,400 steps.

- ``mhc-srgb-gated`` (what training picks for ``linear-srgb``): four more output channels give
  a per-pixel gate that blends G1's own image with the rendering, so G1 keeps its denoised image
  where the input is noisy and the classical detail where it is clean.
- ``mhc-linear-gated`` (scene-linear profiles, ``wb-headroom`` input): the same gate over the
  linear Malvar–He–Cutler demosaic of the input, no colour conversion and no curves: G1's image
  stays scene-linear light for an editable DNG.
- ``lsq-srgb-gated`` / ``lsq-linear-gated``: the same gates over a linear demosaic fitted to
  photographs by least squares (`pipeline/bayer_lsq_demosaic.py`): 1.6 dB above Malvar–He–Cutler
  on clean corpus crops, so the classical detail a gate keeps where the input is clean is better.
- ``mhc-srgb``: G1's output is added to the rendering through a learned gain that starts at
  zero (spectral norm would undo a zero-initialised conv). It learns slowly on noisy input: to
  denoise it has to predict the noise after the filters and the curves, pixel by pixel.

X-Trans (``period`` 6; Bayer is 2, the default): the same network on the 36 channels of a 6×6
X-Trans period at 1/6 resolution (`pipeline/xtrans_packing.py`, every phase brought to one), a
36-channel noise map (one per site of the period), and 3·36 output channels that
`pixel_shuffle(6)` places at full resolution; its classical bases are ``xtrans-linear-gated`` and
``xtrans-srgb-gated``, the same gate (one per site of the period) over a fixed linear X-Trans
demosaic (`pipeline/xtrans_demosaic.py`), left linear or sRGB-encoded and tone-curved like
``mhc-srgb-gated``. At the same packed size the trunk is the same; an X-Trans frame has 1/9 of
the packed pixels of a Bayer frame of the same sensor size, and a 9× wider head.

A fourth, optional change (``fine_blocks``): residual blocks at the packed (finest) resolution,
between the last decoder stage and the output conv. The seed's U-Net touches that resolution with
two convolutions only (e1 in, d4 out), so the detail a demosaicker needs, which lives between
neighbouring sites, gets almost no non-linear processing. Each fine block adds its body through
a learned gain that starts at zero, so a profile without fine blocks fine-tunes into one that
renders exactly as it did at step 0.

Sizes are named variants, timm-style: only the base width changes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

# The bounds live torch-free in models/blocks.py (profiles are listed without torch); re-exported.
from raw2rgb_plugin.models.blocks import (
    G1_BOUNDS as G1_BOUNDS,
    G1_NORMS as G1_NORMS,
    G1_PERIODS,
    GATED_BASES,
    PERIOD_BASES,
    RESIDUAL_BASES as RESIDUAL_BASES,
    check_g1_block,
)
from raw2rgb_plugin.models.g1_inference import G1Inference, g1_inference_activation_bytes
from raw2rgb_plugin.models.spec import ArchitectureSpec
from raw2rgb_plugin.pipeline.bayer_lsq_demosaic import lsq_linear_rendering
from raw2rgb_plugin.pipeline.classical import mhc_linear_rendering, mhc_srgb_rendering
from raw2rgb_plugin.pipeline.colour import srgb_encode_tensor, tone_curve
from raw2rgb_plugin.pipeline.xtrans_demosaic import xtrans_linear_rendering
from raw2rgb_plugin.vocabulary import VARIANT_WIDTHS

#: three stride-2 encoder stages: packed inputs must be a multiple of this.
PACKED_STRIDE = 8

#: RESIDUAL_BASES (defined in models/blocks.py, torch-free): what G1 combines its output with:
#: nothing (the seed's G1), or a classical rendering of its input that G1 corrects (``mhc-srgb``:
#: added through a learned gain) or blends with its own image per pixel (``mhc-srgb-gated``: one
#: gate per Bayer site from extra output channels).
_GATE_CHANNELS = 4  # one gate per site of the 2×2 cell, shared by the three colours (Bayer)


@dataclass(frozen=True)
class G1Config:
    width: int = 64
    norm: str = "batch"  # "batch" or "none"
    spectral_norm: bool = True  # training-time only; profiles hold plain weights
    residual_blocks: int = 4
    in_channels: int = 4
    out_channels: int = 3
    residual_base: str = "none"
    #: extra input channels after the packed image: 0, or the 4-channel noise map
    #: (`pipeline/noise_map.py`) of a noise-conditioned G1 that keeps detail where the input is
    #: clean and denoises where it is not.
    noise_channels: int = 0
    #: residual blocks at the packed resolution before the output conv (0: the seed's U-Net)
    fine_blocks: int = 0
    #: the CFA period packed into channels: 2 (Bayer, 4 sites) or 6 (X-Trans, 36 sites); the
    #: output is `pixel_shuffle(period)` of period²·out_channels channels
    period: int = 2

    @property
    def sites(self) -> int:
        """Sites of the packed period: one gate each in a gated base, 4 (Bayer) or 36 (X-Trans)."""
        return self.period * self.period

    @classmethod
    def for_variant(cls, variant: str, **overrides) -> G1Config:
        if variant not in VARIANT_WIDTHS:
            raise ValueError(f"unknown G1 variant {variant!r}; known: {', '.join(VARIANT_WIDTHS)}")
        return cls(width=VARIANT_WIDTHS[variant], **overrides)

    def to_dict(self) -> dict:
        return asdict(self)


class ConvBlock(nn.Module):
    """conv (reflect padding, no bias when normalised) → optional norm → optional LeakyReLU."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        *,
        stride: int = 1,
        norm: str = "batch",
        act: bool = True,
        spectral: bool = True,
    ):
        super().__init__()
        # 4×4 stride-2 convs need asymmetric-free padding 1 to halve exactly; odd kernels pad k//2.
        padding = 1 if kernel == 4 else kernel // 2
        use_norm = norm == "batch"
        conv = nn.Conv2d(
            cin, cout, kernel, stride=stride, padding=padding, padding_mode="reflect", bias=not use_norm
        )
        self.conv = _spectral_norm(conv) if spectral else conv
        self.norm = nn.BatchNorm2d(cout) if use_norm else nn.Identity()
        self.act = nn.LeakyReLU(0.2, inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, norm: str, spectral: bool):
        super().__init__()
        self.body = nn.Sequential(
            ConvBlock(channels, channels, 3, norm=norm, spectral=spectral),
            ConvBlock(channels, channels, 3, norm="none", act=False, spectral=spectral),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class FineBlock(nn.Module):
    """A residual block whose body enters through a gain that starts at zero (spectral norm would
    rescale a zero-initialised conv): a new fine block leaves its network's output unchanged."""

    def __init__(self, channels: int, norm: str, spectral: bool):
        super().__init__()
        self.body = ResidualBlock(channels, norm, spectral).body
        self.gain = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gain * self.body(x)


class UpBlock(nn.Module):
    """×2 nearest upsample then 3×3 conv: no transposed-conv checkerboard."""

    def __init__(self, cin: int, cout: int, norm: str, spectral: bool):
        super().__init__()
        self.conv = ConvBlock(cin, cout, 3, norm=norm, spectral=spectral)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class G1(nn.Module):
    def __init__(self, config: G1Config = G1Config()):
        super().__init__()
        if config.residual_base not in RESIDUAL_BASES:
            raise ValueError(f"unknown residual base {config.residual_base!r}; known: {', '.join(RESIDUAL_BASES)}")
        if config.period not in G1_PERIODS:
            raise ValueError(f"unknown G1 period {config.period}; known: {', '.join(map(str, G1_PERIODS))}")
        if config.residual_base != "none" and (config.residual_base not in PERIOD_BASES[config.period]
                                               or config.in_channels != config.sites):
            raise ValueError(f"the {config.residual_base} base does not render a period-{config.period} "
                             f"G1 with {config.in_channels} input channels")
        self.config = config
        w, n, sn = config.width, config.norm, config.spectral_norm
        self.e1 = ConvBlock(config.in_channels + config.noise_channels, w, 7, norm="none", spectral=sn)
        self.e2 = ConvBlock(w, 2 * w, 4, stride=2, norm=n, spectral=sn)
        self.e3 = ConvBlock(2 * w, 4 * w, 4, stride=2, norm=n, spectral=sn)
        self.e4 = ConvBlock(4 * w, 8 * w, 4, stride=2, norm=n, spectral=sn)
        self.bottleneck = nn.Sequential(*(ResidualBlock(8 * w, n, sn) for _ in range(config.residual_blocks)))
        self.d1 = UpBlock(8 * w, 4 * w, n, sn)
        self.d2 = UpBlock(8 * w, 2 * w, n, sn)
        self.d3 = UpBlock(4 * w, w, n, sn)
        self.fine = nn.Sequential(*(FineBlock(2 * w, n, sn) for _ in range(config.fine_blocks)))
        # period² output pixels per packed pixel → pixel_shuffle to full sensor resolution.
        gates = config.sites if config.residual_base in GATED_BASES else 0
        self.d4 = ConvBlock(2 * w, config.sites * config.out_channels + gates, 7, norm="none", act=False, spectral=sn)
        if config.residual_base == "mhc-srgb":
            self.residual_gain = nn.Parameter(torch.zeros(()))

    #: channels of the three decoder tensors `forward_features` returns (for the G2 branch).
    def decoder_channels(self) -> tuple[int, int, int]:
        w = self.config.width
        return 8 * w, 4 * w, 2 * w

    def forward_features(self, packed: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """RGB at full resolution and the decoder tensors at H/4, H/2 and H (packed H)."""
        h, w = packed.shape[-2:]
        if h % PACKED_STRIDE or w % PACKED_STRIDE:
            raise ValueError(f"G1 needs packed sizes that are multiples of {PACKED_STRIDE}, got {h}×{w}")
        x = packed * 2 - 1
        e1 = self.e1(x)
        e2 = self.e2(e1)
        e3 = self.e3(e2)
        b = self.bottleneck(self.e4(e3))
        d1 = torch.cat([self.d1(b), e3], dim=1)
        d2 = torch.cat([self.d2(d1), e2], dim=1)
        d3 = torch.cat([self.d3(d2), e1], dim=1)
        out = self.d4(self.fine(d3))
        base, period = self.config.residual_base, self.config.period
        image_in = packed[:, : self.config.in_channels]  # the noise map is not part of the image
        if base == "mhc-srgb":
            residual = F.pixel_shuffle(out, 2) * self.residual_gain
            return (mhc_srgb_rendering(image_in) + residual).clamp(0.0, 1.0), [d1, d2, d3]
        image_channels = self.config.sites * self.config.out_channels
        image = (F.pixel_shuffle(torch.tanh(out[:, :image_channels]), period) + 1) / 2
        if base in GATED_BASES:
            gate = torch.sigmoid(F.pixel_shuffle(out[:, image_channels:], period))
            classical = _classical_rendering(base, image_in)
            return classical + gate * (image - classical), [d1, d2, d3]
        return image, [d1, d2, d3]

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        return self.forward_features(packed)[0]


def _classical_rendering(base: str, image_in: torch.Tensor) -> torch.Tensor:
    """The full-resolution float32 image a gated base blends with."""
    if base == "mhc-srgb-gated":
        return mhc_srgb_rendering(image_in)
    if base == "mhc-linear-gated":
        return mhc_linear_rendering(image_in)
    linear = lsq_linear_rendering(image_in) if base.startswith("lsq-") else xtrans_linear_rendering(image_in)
    if base.endswith("-linear-gated"):
        return linear
    with torch.autocast(image_in.device.type, enabled=False):  # the -srgb- bases, as mhc_srgb_rendering
        return tone_curve(srgb_encode_tensor(linear))


def adapt_plain_state(
    state: dict[str, torch.Tensor], from_base: str, to_base: str, out_channels: int = 3
) -> dict[str, torch.Tensor]:
    """Plain weights of a G1 with `from_base` → weights for the same G1 with `to_base`.

    Everything but the last conv's extra channels and the residual gain carries over. A new gate
    starts at 0.5 (zero weights and bias: half classical, half G1's own image); a new additive
    residual starts at zero (gain 0). Used when fine-tuning a profile into another base.
    """
    state = dict(state)
    # Between gated bases the gate keeps its meaning (where to trust the classical image).
    if from_base == to_base or (from_base in GATED_BASES and to_base in GATED_BASES):
        return state
    sites = 36 if from_base in PERIOD_BASES[6] or to_base in PERIOD_BASES[6] else _GATE_CHANNELS
    image = sites * out_channels
    weight, bias = state["d4.conv.weight"][:image], state["d4.conv.bias"][:image]
    if to_base in GATED_BASES:
        weight = torch.cat([weight, weight.new_zeros(sites, *weight.shape[1:])])
        bias = torch.cat([bias, bias.new_zeros(sites)])
    state["d4.conv.weight"], state["d4.conv.bias"] = weight, bias
    state.pop("residual_gain", None)
    if to_base == "mhc-srgb":
        state["residual_gain"] = torch.zeros(())
    return state


def add_fine_blocks(state: dict[str, torch.Tensor], config: G1Config, seed: int = 0) -> dict[str, torch.Tensor]:
    """Plain weights of a G1 → weights for `config`, the same G1 with more fine blocks. The new
    blocks' gains are zero, so the output is unchanged; their convolutions start at a fresh,
    seeded initialisation (a zero body would give its first conv no gradient)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = plain_state_dict(G1(replace(config, spectral_norm=False)))
    return {**{k: v for k, v in fresh.items() if k.startswith("fine.")}, **state}


def add_noise_channels(state: dict[str, torch.Tensor], channels: int) -> dict[str, torch.Tensor]:
    """Plain weights of a G1 without a noise map → the same G1 reading `channels` more inputs.

    The new input weights start at zero, so the network first renders exactly as before and
    fine-tuning teaches it what the noise map means.
    """
    state = dict(state)
    weight = state["e1.conv.weight"]
    state["e1.conv.weight"] = torch.cat([weight, weight.new_zeros(weight.shape[0], channels, *weight.shape[2:])], dim=1)
    return state


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with spectral norm resolved into plain conv weights, as profiles store it.

    Keys are those of a `G1` built with `spectral_norm=False`, so a profile loads into an
    inference model that never pays for the power iteration.
    """
    # In train mode, reading a spectral-normed weight runs a power-iteration step and changes
    # the model; export must be a pure read.
    was_training = model.training
    model.eval()
    try:
        return _plain_state(model)
    finally:
        model.train(was_training)


@torch.no_grad()
def _plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            state[f"{name}.weight"] = module.weight.detach().clone()  # resolved W/σ under SN
            if module.bias is not None:
                state[f"{name}.bias"] = module.bias.detach().clone()
        elif isinstance(module, nn.BatchNorm2d):
            for key, value in module.state_dict().items():
                state[f"{name}.{key}"] = value.detach().clone()
    for name, param in model.named_parameters():  # residual_gain, fine.N.gain
        if param.dim() == 0:
            state[name] = param.detach().clone()
    # Under spectral norm the module path is `<block>.conv.parametrizations...`; the conv
    # module itself is still named `<block>.conv`, so names already match the plain layout.
    return {k: v.contiguous() for k, v in state.items()}


def load_plain_state_dict(model: G1, state: dict[str, torch.Tensor]) -> None:
    """Load plain weights into `model`, whether or not it uses spectral norm (fine-tuning)."""
    if not model.config.spectral_norm:
        model.load_state_dict(state, strict=True)
        return
    remapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        module_name, _, param = key.rpartition(".")
        module = model.get_submodule(module_name)
        if param == "weight" and isinstance(module, nn.Conv2d) and parametrize.is_parametrized(module, "weight"):
            remapped[f"{module_name}.parametrizations.weight.original"] = value
        else:
            remapped[key] = value
    missing, unexpected = model.load_state_dict(remapped, strict=False)
    # The power-iteration vectors u, v are state, not weights: they re-converge in a few steps.
    missing = [k for k in missing if not k.endswith((".parametrizations.weight.0._u", ".parametrizations.weight.0._v"))]
    if missing or unexpected:
        raise KeyError(f"weights do not match G1: missing {missing[:5]}, unexpected {unexpected[:5]}")
    _converge_spectral_norms(model)


@torch.no_grad()
def _converge_spectral_norms(model: nn.Module, iterations: int = 50) -> None:
    """Run the power iteration to convergence so σ(W) is exact right after loading.

    Exported weights are W/σ, so σ of the loaded weight is ~1 and the model reproduces the
    profile — but only once u, v have converged; fresh u, v would give a wrong σ at first.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and parametrize.is_parametrized(module, "weight"):
            weight: Any = cast(Any, module).parametrizations.weight  # torch types it as Tensor | Module
            sn = weight[0]
            sn._power_method(sn._reshape_weight_to_matrix(weight.original), iterations)


@torch.no_grad()
def fuse_batchnorm(model: G1) -> G1:
    """Fold eval-mode BatchNorm into the preceding conv (in place); inference only."""
    for module in model.modules():
        if isinstance(module, ConvBlock) and isinstance(module.norm, nn.BatchNorm2d):
            conv, bn = cast(nn.Conv2d, module.conv), module.norm
            running_var, running_mean = cast(torch.Tensor, bn.running_var), cast(torch.Tensor, bn.running_mean)
            if parametrize.is_parametrized(conv):
                parametrize.remove_parametrizations(conv, "weight", leave_parametrized=True)
            scale = bn.weight / torch.sqrt(running_var + bn.eps)
            fused = nn.Conv2d(
                conv.in_channels,
                conv.out_channels,
                cast(Any, conv.kernel_size),
                stride=cast(Any, conv.stride),
                padding=cast(Any, conv.padding),
                padding_mode=conv.padding_mode,
                bias=True,
            ).to(conv.weight.device, conv.weight.dtype)
            fused.weight.copy_(conv.weight * scale[:, None, None, None])
            bias = conv.bias if conv.bias is not None else torch.zeros_like(running_mean)
            cast(torch.Tensor, fused.bias).copy_(bn.bias + (bias - running_mean) * scale)
            module.conv, module.norm = fused, nn.Identity()
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------------
# G1 as an architecture a profile names (see models/registry.py; its block's bounds: models/blocks.py)


def g1_from_block(block: dict) -> G1:
    config = G1Config(
        width=int(block["width"]),
        norm=block.get("norm", "batch"),
        spectral_norm=False,  # profiles hold plain weights (W/σ already applied)
        residual_blocks=int(block.get("residual_blocks", 4)),
        in_channels=int(block.get("in_channels", int(block.get("period", 2)) ** 2)),
        out_channels=int(block.get("out_channels", 3)),
        residual_base=str(block.get("residual_base", "none")),
        noise_channels=int(block.get("noise_channels", 0)),  # profiles before noise conditioning: 0
        fine_blocks=int(block.get("fine_blocks", 0)),
        period=int(block.get("period", 2)),  # Bayer profiles leave it out
    )
    return G1(config)


def g1_to_block(model: nn.Module) -> dict:
    if not isinstance(model, G1):
        raise TypeError("not a G1")
    block = model.config.to_dict()
    block["spectral_norm"] = False  # what a profile stores is already W/σ
    if not block["noise_channels"]:
        del block["noise_channels"]  # profiles without a noise map keep the format they always had
    if not block["fine_blocks"]:
        del block["fine_blocks"]
    if block["period"] == 2:
        del block["period"]  # Bayer profiles keep the format they always had
    return block


def g1_activation_bytes(model: nn.Module, packed_pixels: int, dtype: torch.dtype) -> int:
    """Peak activation memory of G1 on a frame, from the tensors alive at the last decoder stage."""
    width = model.config.width if isinstance(model, G1) else 64
    sites = model.config.sites if isinstance(model, G1) else 4
    element = torch.finfo(dtype).bits // 8
    # d3 skip + upsample + conv out + the (3 + 1)·sites-channel head, ×1.5 margin
    floats_per_packed_pixel = 12 * width + 15 * sites
    return packed_pixels * floats_per_packed_pixel * element + packed_pixels * sites * 3 * 4 * 2  # + fp32 output


def _g1_for_inference(model: nn.Module) -> nn.Module:
    assert isinstance(model, G1)
    return fuse_batchnorm(model)


def g1_output_scale(model: nn.Module) -> int:
    """Full-resolution output pixels per packed pixel along each axis: the packing period."""
    return model.config.period if isinstance(model, G1) else int(getattr(getattr(model, "config", None), "period", 2))


def _g1_optimized(model: nn.Module) -> nn.Module:
    """G1's inference rewrites (models/g1_inference.py): the same function, about 1.6× less CPU time."""
    assert isinstance(model, G1)
    return G1Inference(model, PACKED_STRIDE).eval()


G1_SPEC = ArchitectureSpec(
    name="g1",
    stride=PACKED_STRIDE,
    check_block=check_g1_block,
    from_block=g1_from_block,
    to_block=g1_to_block,
    activation_bytes=g1_activation_bytes,
    prepare_for_inference=_g1_for_inference,
    optimize=_g1_optimized,
    optimized_activation_bytes=g1_inference_activation_bytes,
    output_scale=g1_output_scale,
)
