"""G1 rewritten for inference: the same function as the eval-mode `G1`, computed with less work.

No retraining and no new weights: `G1Inference` is built from a `G1` (BatchNorm folded as `fuse_batchnorm` folds it) and holds
re-arranged copies of its convolutions. The rewrites, each exact in real arithmetic (float32
results agree with the eager model to rounding, ~1e-6 on the [0, 1] output; see
tests/test_runtime.py for the stated tolerance):

1. **Nearest ×2 upsample + 3×3 conv → one 2×2 conv at low resolution + a phase interleave.**
   With u[2i+a, 2j+b] = x[i, j], output row 2i+a of a 3×3 kernel k0, k1, k2 reads u rows
   2i+a-1 … 2i+a+1, i.e. low-res rows (i-1, i, i) for a = 0 and (i, i, i+1) for a = 1: the phase
   a = 0 sees the 2-tap kernel [k0, k1+k2] on rows (i-1, i), the phase a = 1 sees [k0+k1, k2] on
   rows (i, i+1). Per axis, so each of the four output phases is a 2×2 kernel. One 2×2 conv with
   4·cout outputs over the low-res input padded by one gives every phase on an (h+1)×(w+1) grid:
   phase (a, b) at (i, j) is that grid at (i+a, j+b). That is 4/9 of the multiply-adds, and no
   upsampled tensor is ever made.
   **Borders:** the eager model reflect-pads the *upsampled* image; reflection about its first
   row gives u[-1] = u[1] = x[0], which is the low-res image *replicate*-padded (x[-1] = x[0]);
   at the bottom u[2h] = u[2h-2] = x[h-1], again replicate. So the rewrite is exact at the
   borders too, with replicate padding at low resolution.
2. **Concatenation and padding fused:** each decoder stage writes its interleaved output and its
   skip tensor straight into one pre-padded buffer and fills only the border strips, instead of
   upsample → pad → conv → cat → pad (three full-size copies per stage removed).
3. **In-place activations and residual additions**, channels_last throughout.
4. **The head in packed layout:** tanh, the gate, the Malvar–He–Cutler rendering and the blend
   run on the 12 + 4 packed channels (the same element-wise operations, in the same order), and
   one `pixel_shuffle` places the result at full resolution. An X-Trans G1 (period 6) does the
   same on its 108 + 36 channels with the X-Trans demosaic (`pipeline/xtrans_demosaic.py`).

Precision: the convolutions run in the module's dtype (`.to(torch.bfloat16)` for bf16), while the
head (tanh, gate, classical rendering, blend) always runs in float32 from the float32 input, so a
bf16 trunk does not also quantise the classical image it is blended with.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F

from raw2rgb_plugin.models.blocks import GATED_BASES
from raw2rgb_plugin.pipeline.bayer_lsq_demosaic import lsq_demosaic_packed
from raw2rgb_plugin.pipeline.mhc import _PACKED_MHC_KERNELS, _pad_packed
from raw2rgb_plugin.pipeline.xtrans_demosaic import xtrans_demosaic_packed

_SLOPE = 0.2  # LeakyReLU of every ConvBlock with an activation

#: R[a][m, k]: which rows k of a 3×3 kernel fall on low-res tap m for output phase a (see 1. above).
_PHASE_ROWS = torch.tensor([[[1, 0, 0], [0, 1, 1]], [[1, 1, 0], [0, 0, 1]]], dtype=torch.float64)


def upsample_conv_phase_kernels(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """3×3 kernel (cout, cin, 3, 3) over a nearest-×2 input → (4·cout, cin, 2, 2) over the low-res input.

    Output channel `phase·cout + o`, phase = 2a + b for output pixel (2i+a, 2j+b). Summed in float64.
    """
    w = weight.detach().to(torch.float64)
    phases = [torch.einsum("mk,oikl,nl->oimn", _PHASE_ROWS[a], w, _PHASE_ROWS[b]) for a in (0, 1) for b in (0, 1)]
    return torch.cat(phases).to(weight.dtype), bias.detach().repeat(4)


def reflect_border_(buf: torch.Tensor, pad: int) -> torch.Tensor:
    """Fill the `pad`-wide border of `buf` (N, C, h + 2·pad, w + 2·pad) by reflecting its interior.

    Same values as `F.pad(interior, (pad,) * 4, mode="reflect")`, corners included, with only the
    border strips copied.
    """
    h, w = buf.shape[-2] - 2 * pad, buf.shape[-1] - 2 * pad
    if pad >= h or pad >= w:
        raise ValueError(f"reflect padding {pad} needs more than {h}×{w} pixels")
    for k in range(pad):
        buf[..., pad - 1 - k, pad : pad + w] = buf[..., pad + 1 + k, pad : pad + w]
        buf[..., pad + h + k, pad : pad + w] = buf[..., pad + h - 2 - k, pad : pad + w]
    for k in range(pad):
        buf[..., pad - 1 - k] = buf[..., pad + 1 + k]
        buf[..., pad + w + k] = buf[..., pad + w - 2 - k]
    return buf


def replicate_border_(buf: torch.Tensor) -> torch.Tensor:
    """Fill the one-pixel border of `buf` with its nearest interior pixel (`F.pad(..., mode="replicate")`)."""
    buf[..., 0, 1:-1] = buf[..., 1, 1:-1]
    buf[..., -1, 1:-1] = buf[..., -2, 1:-1]
    buf[..., 0] = buf[..., 1]
    buf[..., -1] = buf[..., -2]
    return buf


@torch.no_grad()
def _conv_weights(block: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A `ConvBlock`'s convolution with its eval-mode BatchNorm folded in (as `fuse_batchnorm` does)."""
    conv = cast(nn.Conv2d, block.conv)
    weight = conv.weight.detach().clone()  # W/σ when spectral norm is still attached
    bias = conv.bias.detach().clone() if conv.bias is not None else None
    if isinstance(block.norm, nn.BatchNorm2d):
        bn = block.norm
        running_var, running_mean = cast(torch.Tensor, bn.running_var), cast(torch.Tensor, bn.running_mean)
        scale = bn.weight / torch.sqrt(running_var + bn.eps)
        weight = weight * scale[:, None, None, None]
        bias = bn.bias + ((bias if bias is not None else torch.zeros_like(running_mean)) - running_mean) * scale
    if bias is None:
        bias = torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device)
    return weight.detach(), bias.detach()


class G1Inference(nn.Module):
    """Eval-only G1 with the exact rewrites above; `forward(packed)` as `G1.forward`.

    Built from a `G1` (read, never changed; BatchNorm folded as `fuse_batchnorm` folds it) and
    its packed stride. `.to(dtype)` sets the precision of the convolutions; input and output stay
    float32. (It reads the G1 by its submodule names; `models/g1.py` imports this module, not the
    other way round.)
    """

    def __init__(self, model: nn.Module, stride: int):
        super().__init__()
        cfg = cast(Any, model).config
        self.stride = stride
        self.config = cfg
        self.residual_base = cfg.residual_base
        self.period = int(getattr(cfg, "period", 2))
        self.image_channels = self.period * self.period * cfg.out_channels
        for name in ("e1", "e2", "e3", "e4", "d4"):
            weight, bias = _conv_weights(getattr(model, name))
            self.register_buffer(f"{name}_w", weight)
            self.register_buffer(f"{name}_b", bias)
        bottleneck, fine = cast(nn.Sequential, model.bottleneck), cast(nn.Sequential, model.fine)
        self.residual_blocks, self.fine_blocks = len(bottleneck), len(fine)
        for index, block in enumerate(bottleneck):
            self._register_residual(f"r{index}", cast(nn.Module, block.body))
        for index, block in enumerate(fine):
            self._register_residual(f"f{index}", cast(nn.Module, block.body), float(cast(torch.Tensor, block.gain).detach()))
        for name in ("d1", "d2", "d3"):
            weight, bias = _conv_weights(getattr(model, name).conv)
            phase_w, phase_b = upsample_conv_phase_kernels(weight, bias)
            self.register_buffer(f"{name}_w", phase_w)
            self.register_buffer(f"{name}_b", phase_b)
        if cfg.residual_base == "mhc-srgb":
            # a Python float: `.to(bfloat16)` must not round the gain of the float32 head
            self.residual_gain = float(cast(torch.Tensor, model.residual_gain))
        else:  # the head computes (tanh(o) + 1) / 2 as σ(2o); doubling is exact in floating point
            self._buffer("d4_w")[: self.image_channels] *= 2
            self._buffer("d4_b")[: self.image_channels] *= 2

    def _register_residual(self, prefix: str, body: nn.Module, gain: float = 1.0) -> None:
        """A residual block's two convolutions as buffers `<prefix>a_*`, `<prefix>b_*`; a fine block's
        gain folds into the second: x + g·conv(t) = x + conv_{g·W, g·b}(t)."""
        for part in (0, 1):
            weight, bias = _conv_weights(cast(nn.Sequential, body)[part])
            if part and gain != 1.0:
                weight, bias = weight * gain, bias * gain
            self.register_buffer(f"{prefix}{'ab'[part]}_w", weight)
            self.register_buffer(f"{prefix}{'ab'[part]}_b", bias)

    def _buffer(self, name: str) -> torch.Tensor:
        return cast(torch.Tensor, getattr(self, name))

    def _conv(self, x: torch.Tensor, name: str, stride: int = 1) -> torch.Tensor:
        return F.conv2d(x, self._buffer(f"{name}_w"), self._buffer(f"{name}_b"), stride=stride)

    def _up_into(self, x_padded: torch.Tensor, name: str, skip: torch.Tensor, pad: int) -> torch.Tensor:
        """Upsample+conv stage `name` on replicate-padded low-res input, into a new buffer with `skip`.

        The buffer is (N, cout + skip channels, 2h + 2·pad, 2w + 2·pad), interior filled, border not.
        """
        z = F.leaky_relu_(self._conv(x_padded, name), _SLOPE)  # (N, 4·cout, h + 1, w + 1)
        n, c4, h1, w1 = z.shape
        cout, h, w = c4 // 4, h1 - 1, w1 - 1
        buf = torch.empty(n, cout + skip.shape[1], 2 * h + 2 * pad, 2 * w + 2 * pad, dtype=z.dtype, device=z.device,
                          memory_format=torch.channels_last)
        interior = buf[..., pad : pad + 2 * h, pad : pad + 2 * w]
        for phase, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            interior[:, :cout, a::2, b::2] = z[:, phase * cout : (phase + 1) * cout, a : a + h, b : b + w]
        interior[:, cout:] = skip
        return buf

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        h, w = packed.shape[-2:]
        if h % self.stride or w % self.stride:
            raise ValueError(f"G1 needs packed sizes that are multiples of {self.stride}, got {h}×{w}")
        dtype = self._buffer("e1_w").dtype
        x = (packed * 2 - 1).to(dtype).contiguous(memory_format=torch.channels_last)
        e1 = F.leaky_relu_(self._conv(F.pad(x, (3, 3, 3, 3), mode="reflect"), "e1"), _SLOPE)
        del x
        e2 = F.leaky_relu_(self._conv(F.pad(e1, (1, 1, 1, 1), mode="reflect"), "e2", 2), _SLOPE)
        e3 = F.leaky_relu_(self._conv(F.pad(e2, (1, 1, 1, 1), mode="reflect"), "e3", 2), _SLOPE)
        b = F.leaky_relu_(self._conv(F.pad(e3, (1, 1, 1, 1), mode="reflect"), "e4", 2), _SLOPE)
        b = self._residuals(b, "r", self.residual_blocks)
        d1 = replicate_border_(self._up_into(F.pad(b, (1, 1, 1, 1), mode="replicate"), "d1", e3, 1))
        del b, e3
        d2 = replicate_border_(self._up_into(d1, "d2", e2, 1))
        del d1, e2
        d3 = self._up_into(d2, "d3", e1, 3)
        del d2, e1
        if self.fine_blocks:  # they work on the interior; the output conv's border is filled after them
            fine = self._residuals(d3[..., 3:-3, 3:-3].contiguous(memory_format=torch.channels_last), "f",
                                   self.fine_blocks)
            d3 = F.pad(fine, (3, 3, 3, 3), mode="reflect")
        else:
            d3 = reflect_border_(d3, 3)
        out = self._conv(d3, "d4")
        del d3
        return self._head(out.float(), packed[:, : self.config.in_channels].float())

    def _residuals(self, x: torch.Tensor, prefix: str, count: int) -> torch.Tensor:
        """`count` residual blocks `<prefix>0` … in place on `x`: the bottleneck's, or the fine blocks
        at the packed resolution (their gains folded into the second convs)."""
        for index in range(count):
            t = F.leaky_relu_(self._conv(F.pad(x, (1, 1, 1, 1), mode="reflect"), f"{prefix}{index}a"), _SLOPE)
            x = x.add_(self._conv(F.pad(t, (1, 1, 1, 1), mode="reflect"), f"{prefix}{index}b"))
            del t
        return x

    def _head(self, out: torch.Tensor, image_in: torch.Tensor) -> torch.Tensor:
        """(N, s·oc [+ s], h, w) float32 conv output → (N, oc, p·h, p·w) RGB, as G1.forward_features
        (p the period, s = p² its sites)."""
        n, _, h, w = out.shape
        channels, p = self.image_channels, self.period
        if self.residual_base == "mhc-srgb":
            residual = F.pixel_shuffle(out, 2).mul_(self.residual_gain)
            return F.pixel_shuffle(_mhc_srgb_packed(image_in), 2).add_(residual).clamp_(0.0, 1.0)
        # (tanh(o) + 1) / 2 = σ(2o): the image channels' weights were doubled (exact), so one
        # in-place sigmoid gives the image and the gate.
        out = out.sigmoid_()
        image = out[:, :channels]  # packed: channel = colour·p² + site
        if self.residual_base not in GATED_BASES:
            return F.pixel_shuffle(image, p)
        gate = out[:, channels:].unsqueeze(1)  # (N, 1, p² sites, h, w)
        classical = _classical_packed(self.residual_base, image_in)  # (N, 3·p², h, w), colour·p² + site
        # classical + gate·(image − classical), the eager blend's order, with the last addition
        # written straight into the full-resolution layout (a fused pixel_shuffle).
        diff = torch.sub(image, classical)
        diff.unflatten(1, (3, p * p)).mul_(gate)
        rgb = torch.empty(n, 3, p * h, p * w, dtype=out.dtype, device=out.device)
        shuffled = rgb.view(n, 3, h, p, w, p).permute(0, 1, 3, 5, 2, 4)  # (N, colour, row, column, h, w)
        torch.add(diff.unflatten(1, (3, p, p)), classical.unflatten(1, (3, p, p)), out=shuffled)
        return rgb


def _srgb_encode_(linear: torch.Tensor) -> torch.Tensor:
    """`pipeline.colour.srgb_encode_tensor`, the same operations in place (no gradient needed)."""
    linear = linear.clamp_(0.0, 1.0)
    low = linear <= 0.0031308
    high = linear.clamp_min(0.0031308).pow_(1 / 2.4).mul_(1.055).sub_(0.055)
    return torch.where(low, linear.mul_(12.92), high, out=high)


def _tone_curve_(x: torch.Tensor) -> torch.Tensor:
    """`tone_curve` (x·x·(3 − 2x)) in place: (x·x)·(3 − 2x), the eager order."""
    slope = (x * 2.0).neg_().add_(3.0)
    return x.mul_(x).mul_(slope)


#: the Malvar–He–Cutler kernels with output channel colour·4 + site (the order pixel_shuffle reads).
_MHC_COLOUR_MAJOR = _PACKED_MHC_KERNELS.transpose(0, 1).reshape(12, 4, 3, 3).to(torch.float32)


def _classical_packed(base: str, packed: torch.Tensor) -> torch.Tensor:
    """A gated base's classical rendering in float32, before its pixel_shuffle: (N, 3·p², h, w)."""
    if base == "mhc-srgb-gated":
        return _mhc_srgb_packed(packed)
    if base == "mhc-linear-gated":
        return _mhc_linear_packed(packed)
    linear = lsq_demosaic_packed(packed) if base.startswith("lsq-") else xtrans_demosaic_packed(packed.float())
    return linear if base.endswith("-linear-gated") else _tone_curve_(_srgb_encode_(linear))


def _mhc_srgb_packed(packed: torch.Tensor) -> torch.Tensor:
    """`pipeline.classical.mhc_srgb_rendering` in float32, before its pixel_shuffle: (N, 12, h, w)."""
    return _tone_curve_(_srgb_encode_(_mhc_linear_packed(packed)))


def _mhc_linear_packed(packed: torch.Tensor) -> torch.Tensor:
    """`pipeline.classical.mhc_linear_rendering` in float32, before its pixel_shuffle: (N, 12, h, w)."""
    padded = _pad_packed(packed.float()).contiguous(memory_format=torch.channels_last)
    kernels = _MHC_COLOUR_MAJOR.to(packed.device).contiguous(memory_format=torch.channels_last)
    return F.conv2d(padded, kernels)


def g1_inference_activation_bytes(model: nn.Module, packed_pixels: int, dtype: torch.dtype) -> int:
    """Peak bytes of `G1Inference` on `packed_pixels` (trunk in `dtype`, head in float32).

    Per packed pixel, width w: at the last decoder stage e1 (w), its padded concatenation buffer
    (2w) and the phase conv output (w) are alive, with the d2 buffer (w); the head holds the
    conv output (16 channels) and float32 image, gate, classical rendering and result (~44
    channels), plus the float32 output (12 channels). Measured peaks sit below this (1.2× margin).
    """
    config = getattr(model, "config", None)
    width = int(getattr(config, "width", 64))
    sites = int(getattr(config, "period", 2)) ** 2  # X-Trans: 36 sites, a 9× wider head
    element = torch.finfo(dtype).bits // 8
    trunk = 5 * width * element
    head = 4 * sites * element + (4 * sites + 11 * sites) * 4
    return int(1.2 * packed_pixels * max(trunk + 3 * sites * 4, head))
