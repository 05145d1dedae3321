"""Input normalisation: what the engine does to the mosaic before G1 sees it.

A profile records which of these its network was trained on, and the engine applies exactly that:

- ``raw``: black level subtracted per site, divided by (white − black), clipped to [0, 1].
- ``wb``: ``raw`` then the white-balance multipliers, clipped to [0, 1] (clipped highlights stay
  neutral, as a camera's would).
- ``wb+ccm``: ``wb`` then the camera → linear sRGB matrix applied on the packed channels (each
  green site with the R and B of its packed pixel), clipped to [0, 1]. This makes the input look
  the same for every camera, so one profile serves all Bayer sensors.
- ``linear-srgb``: ``wb`` then the mosaic in linear sRGB: each site keeps its own colour's row
  of the camera → sRGB matrix, applied to its own sample and to the two colours it lacks as
  Malvar–He–Cutler interpolation estimates them. Clipped to [0, 1].

Why ``linear-srgb`` exists: ``wb+ccm`` multiplies samples from four different sites as if they
were one pixel, so along every edge the matrix's off-diagonal terms mix in a neighbour's value,
and which neighbour, with which weight, depends on the camera, so a generic network cannot undo
it. On the held-out synthetic tiles of docs/QUALITY.md (noise-free) the ``wb+ccm`` input is
37.3 dB from the ideal linear-sRGB mosaic, bilinear estimates reach 39.8 dB and
Malvar–He–Cutler 44.3 dB. The interpolation is fixed 5×5 linear filters (Malvar, He and
Cutler, ICASSP 2004), so it costs one convolution and is the same on every device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from .packing import PhasePadding, pack_rggb, pad_mosaic, rggb_padding, site_tile, unpack_rggb
from .raw_decode import BayerFrame

INPUT_NORMALIZATIONS = ("raw", "wb", "wb+ccm", "linear-srgb")

# Malvar–He–Cutler gradient-corrected bilinear filters (×8) on the mosaic: a colour a site lacks.
_MHC_FILTERS = {
    "green at red/blue": [[0, 0, -1, 0, 0], [0, 0, 2, 0, 0], [-1, 2, 4, 2, -1], [0, 0, 2, 0, 0], [0, 0, -1, 0, 0]],
    "colour of the row's neighbours": [[0, 0, 0.5, 0, 0], [0, -1, 0, -1, 0], [-1, 4, 5, 4, -1], [0, -1, 0, -1, 0], [0, 0, 0.5, 0, 0]],
    "colour of the column's neighbours": [[0, 0, -1, 0, 0], [0, -1, 4, -1, 0], [0.5, 0, 5, 0, 0.5], [0, -1, 4, -1, 0], [0, 0, -1, 0, 0]],
    "red at blue, blue at red": [[0, 0, -1.5, 0, 0], [0, 2, 0, 2, 0], [-1.5, 0, 6, 0, -1.5], [0, 2, 0, 2, 0], [0, 0, -1.5, 0, 0]],
}
_OWN_COLOUR = (0, 1, 1, 2)  # sites R, Gr, Gb, B → colours R, G, G, B
_MHC_FILTER_OF = {  # (site, missing colour) → filter; a Gr site has red beside it, a Gb site above it
    (0, 1): "green at red/blue", (0, 2): "red at blue, blue at red",
    (1, 0): "colour of the row's neighbours", (1, 2): "colour of the column's neighbours",
    (2, 0): "colour of the column's neighbours", (2, 2): "colour of the row's neighbours",
    (3, 0): "red at blue, blue at red", (3, 1): "green at red/blue",
}


def _packed_mhc_kernels() -> torch.Tensor:
    """(4 sites, 3 colours, 4 packed channels, 3, 3): the filters re-expressed on the packed grid.

    A 5×5 window on the mosaic spans at most one packed pixel either side, so each site's RGB
    estimate is a 3×3 convolution over the four packed channels: one conv instead of four
    full-resolution passes, and the camera matrix folds into the same kernel.
    """
    kernels = torch.zeros(4, 3, 4, 3, 3, dtype=torch.float64)
    for site, own in enumerate(_OWN_COLOUR):
        sy, sx = divmod(site, 2)
        kernels[site, own, site, 1, 1] = 1.0
        for colour in range(3):
            name = _MHC_FILTER_OF.get((site, colour))
            if name is None:
                continue
            for dy in range(-2, 3):
                for dx in range(-2, 3):
                    y, x = sy + dy, sx + dx  # mosaic offset from the packed pixel's red site
                    kernels[site, colour, 2 * (y % 2) + x % 2, y // 2 + 1, x // 2 + 1] += _MHC_FILTERS[name][dy + 2][dx + 2] / 8.0
    return kernels


_PACKED_MHC_KERNELS = _packed_mhc_kernels()


@dataclass(frozen=True)
class NetworkInput:
    packed: torch.Tensor  # (1, 4, h, w) float32 in [0, 1], RGGB phase
    padding: PhasePadding  # crop for the full-resolution output


def levels_normalize(mosaic: torch.Tensor, black_level_per_site: np.ndarray, white_level: float) -> torch.Tensor:
    """uint16/float (H, W) mosaic → float32 in [0, 1] using per-site black and the white level."""
    h, w = mosaic.shape
    black = site_tile(torch.as_tensor(black_level_per_site, dtype=torch.float32, device=mosaic.device), h, w)
    scaled = (mosaic.to(torch.float32) - black) / (float(white_level) - black)
    return scaled.clamp_(0.0, 1.0)


def apply_color_normalization(
    packed: torch.Tensor, mode: str, wb_gains_rgb: np.ndarray, camera_to_srgb: np.ndarray
) -> torch.Tensor:
    """Apply ``wb`` / ``wb+ccm`` / ``linear-srgb`` to a levels-normalised (…, 4, h, w) packed tensor."""
    if mode not in INPUT_NORMALIZATIONS:
        raise ValueError(f"unknown input normalisation {mode!r}")
    if mode == "raw":
        return packed
    r, g, b = (float(v) for v in wb_gains_rgb)
    gains = torch.tensor([r, g, g, b], dtype=packed.dtype, device=packed.device).view(4, 1, 1)
    packed = (packed * gains).clamp_(0.0, 1.0)
    if mode == "wb":
        return packed
    m = torch.as_tensor(np.asarray(camera_to_srgb, dtype=np.float32), device=packed.device, dtype=packed.dtype)
    if mode == "linear-srgb":
        return _linear_srgb_mosaic(packed, m)
    red, green_r, green_b, blue = packed.unbind(dim=-3)
    out_red = m[0, 0] * red + m[0, 1] * (green_r + green_b) / 2 + m[0, 2] * blue
    out_blue = m[2, 0] * red + m[2, 1] * (green_r + green_b) / 2 + m[2, 2] * blue
    # Each green site keeps its own sample so the mosaic's green detail is not averaged away.
    out_gr = m[1, 0] * red + m[1, 1] * green_r + m[1, 2] * blue
    out_gb = m[1, 0] * red + m[1, 1] * green_b + m[1, 2] * blue
    return torch.stack([out_red, out_gr, out_gb, out_blue], dim=-3).clamp_(0.0, 1.0)


def _pad_packed(packed: torch.Tensor) -> torch.Tensor:
    """(n, 4, h, w) → (n, 4, h + 2, w + 2): the mosaic reflect-padded by two, which keeps the
    Bayer phase at the borders (a packed-grid reflect would not)."""
    return pack_rggb(F.pad(unpack_rggb(packed), (2, 2, 2, 2), mode="reflect"))


def interpolate_missing_colours(packed: torch.Tensor) -> torch.Tensor:
    """(…, 4, h, w) packed RGGB → (…, 4, 3, h, w): an RGB estimate at each of the four sites.

    A site's own colour is its sample; the two it lacks are the Malvar–He–Cutler estimates.
    """
    lead, (h, w) = packed.shape[:-3], packed.shape[-2:]
    kernels = _PACKED_MHC_KERNELS.to(device=packed.device, dtype=packed.dtype).reshape(12, 4, 3, 3)
    rgb = F.conv2d(_pad_packed(packed.reshape(-1, 4, h, w)), kernels)
    return rgb.reshape(*lead, 4, 3, h, w)


def _linear_srgb_mosaic(packed: torch.Tensor, camera_to_srgb: torch.Tensor) -> torch.Tensor:
    lead, (h, w) = packed.shape[:-3], packed.shape[-2:]
    # Each site keeps its own colour's row of the matrix: R, G, G, B.
    rows = camera_to_srgb.to(torch.float64)[list(_OWN_COLOUR)]
    kernels = torch.einsum("sc,scnij->snij", rows, _PACKED_MHC_KERNELS.to(rows.device))
    out = F.conv2d(_pad_packed(packed.reshape(-1, 4, h, w)), kernels.to(packed.dtype))
    return out.reshape(*lead, 4, h, w).clamp_(0.0, 1.0)


def network_input(frame: BayerFrame, mode: str, device: torch.device | str = "cpu") -> NetworkInput:
    """Upload the uint16 mosaic to `device`, then normalise and pack it there."""
    # uint16 has only bare-bones support on some backends; the same bits as int16 upload and
    # widen everywhere, and the mask restores the unsigned value on the device.
    as_int16 = torch.from_numpy(frame.mosaic.view(np.int16))
    if torch.device(device).type == "cuda":
        as_int16 = as_int16.pin_memory()
    mosaic = as_int16.to(device, non_blocking=True).to(torch.int32).bitwise_and_(0xFFFF)
    levelled = levels_normalize(mosaic, frame.black_level_per_site, frame.white_level)
    padding = rggb_padding(frame.cfa_pattern, frame.height, frame.width)
    packed = pack_rggb(pad_mosaic(levelled, padding))
    packed = apply_color_normalization(packed, mode, frame.wb_gains_rgb, frame.camera_to_srgb)
    return NetworkInput(packed=packed[None].contiguous(), padding=padding)


def orient(rgb: torch.Tensor, flip: int) -> torch.Tensor:
    """Apply LibRaw's `flip` to a (…, H, W) image: column/row flips first, then transpose."""
    if flip & 1:
        rgb = rgb.flip(-1)
    if flip & 2:
        rgb = rgb.flip(-2)
    if flip & 4:
        rgb = rgb.transpose(-1, -2)
    return rgb
