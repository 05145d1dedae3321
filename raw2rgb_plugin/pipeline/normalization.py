"""What the engine does to a frame around G1: `network_input` before it, `network_output` after.

Input normalisation: what the engine does to the mosaic before G1 sees it.

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
- ``wb-headroom`` (scene-linear profiles): ``raw`` times the white-balance multipliers divided by
  the largest of them, so white-balanced camera RGB where no channel is pushed past the sensor's
  white: nothing clips, and the network's output divides back to the camera's own values for a
  DNG exactly (`headroom_gains`). No camera matrix: an out-of-gamut colour would go negative in
  sRGB and be clipped, and a DNG reader applies the matrix itself.

Why ``linear-srgb`` exists: ``wb+ccm`` multiplies samples from four different sites as if they
were one pixel, so along every edge the matrix's off-diagonal terms mix in a neighbour's value,
and which neighbour, with which weight, depends on the camera, so a generic network cannot undo
it. On the held-out synthetic tiles of docs/QUALITY.md (noise-free) the ``wb+ccm`` input is
37.3 dB from the ideal linear-sRGB mosaic, bilinear estimates reach 39.8 dB and
Malvar–He–Cutler 44.3 dB. The interpolation is fixed linear filters (`mhc.py`), so it costs one
convolution and is the same on every device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from raw2rgb_plugin.pipeline.classical import half_size as to_half_size
from raw2rgb_plugin.pipeline.colour import srgb_encode_tensor, tone_curve
from raw2rgb_plugin.pipeline.geometry import to_square_pixels
from raw2rgb_plugin.pipeline.hot_pixels import StuckSites, repair_stuck_sites
from raw2rgb_plugin.pipeline.hot_pixels_xtrans import repair_xtrans_stuck_sites
from raw2rgb_plugin.pipeline.look import Look, apply_look
from raw2rgb_plugin.pipeline.mhc import linear_srgb_mosaic
from raw2rgb_plugin.pipeline.noise import NoiseModel
from raw2rgb_plugin.pipeline.noise_map import noise_map, site_gains_rgb
from raw2rgb_plugin.pipeline.optics import LensModel, correct_geometry
from raw2rgb_plugin.pipeline.orientation import orient
from raw2rgb_plugin.pipeline.packing import PhasePadding, pack_rggb, pad_mosaic, rggb_padding, site_tile
from raw2rgb_plugin.pipeline.xtrans_demosaic import xtrans_linear_srgb_mosaic
from raw2rgb_plugin.pipeline.xtrans_packing import XTRANS_SITES, pack_xtrans, pad_xtrans, xtrans_padding
from raw2rgb_plugin.vocabulary import INPUT_NORMALIZATIONS


class MosaicFrame(Protocol):
    """What normalisation reads from a decoded frame (`io.raw_file.BayerFrame` and `XTransFrame`
    have it all); a protocol so this layer does not import the io layer above it."""

    mosaic: np.ndarray  # uint16 (H, W)
    cfa_pattern: str  # 4 letters (a Bayer order) or 36 (an X-Trans phase)
    black_level_per_site: np.ndarray  # (2, 2) or (6, 6)
    white_level: float
    wb_gains_rgb: np.ndarray  # (3,)
    camera_to_srgb: np.ndarray  # (3, 3)
    flip: int  # LibRaw's orientation flags
    pixel_aspect: float  # width ÷ height of one sensor pixel

    @property
    def height(self) -> int: ...

    @property
    def width(self) -> int: ...


@dataclass(frozen=True)
class NetworkInput:
    packed: torch.Tensor  # (1, S [+ S], h, w) float32 in [0, 1], canonical phase (S: 4 RGGB, 36 X-Trans)
    padding: PhasePadding  # crop for the full-resolution output
    stuck_sites: int | None = None  # hot and dead pixels replaced; None when not looked for


def levels_normalize(mosaic: torch.Tensor, black_level_per_site: np.ndarray, white_level: float) -> torch.Tensor:
    """uint16/float (H, W) mosaic → float32 in [0, 1] using per-site black and the white level."""
    h, w = mosaic.shape
    black = site_tile(torch.as_tensor(black_level_per_site, dtype=torch.float32, device=mosaic.device), h, w)
    return _scale_levels(mosaic, black, white_level)


def levels_normalize_packed(packed: torch.Tensor, black_per_channel: torch.Tensor, white_level: float) -> torch.Tensor:
    """The same on packed (…, 4, h, w) integers, with black as a (4, 1, 1) tensor for [R, Gr, Gb, B]."""
    return _scale_levels(packed, black_per_channel, white_level)


def _scale_levels(values: torch.Tensor, black: torch.Tensor, white_level: float) -> torch.Tensor:
    scaled = (values.to(torch.float32) - black) / (float(white_level) - black)
    return scaled.clamp_(0.0, 1.0)


def headroom_gains(wb_gains_rgb) -> np.ndarray:
    """The ``wb-headroom`` multipliers for R, G, B: the white balance scaled so the largest is 1."""
    gains = np.asarray(wb_gains_rgb, dtype=np.float64)
    return gains / gains.max()


def from_headroom(rgb: torch.Tensor, wb_gains_rgb, camera_to_srgb: np.ndarray | None) -> torch.Tensor:
    """A scene-linear profile's (N, 3, H, W) output in ``wb-headroom`` space → camera-native RGB
    (not white-balanced, what the sensor recorded; `camera_to_srgb` None), or → linear sRGB."""
    gains = headroom_gains(wb_gains_rgb)
    if camera_to_srgb is None:
        return rgb / torch.as_tensor(gains, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    # White-balanced camera RGB is the output × the largest gain; then the camera → sRGB matrix.
    scale = float(np.max(np.asarray(wb_gains_rgb, dtype=np.float64)))
    m = torch.as_tensor(np.asarray(camera_to_srgb, dtype=np.float64) * scale, dtype=rgb.dtype, device=rgb.device)
    return torch.einsum("ij,njhw->nihw", m, rgb)


def display_from_camera(rgb: torch.Tensor, wb_gains_rgb, camera_to_srgb: np.ndarray) -> torch.Tensor:
    """A camera-space display profile's (N, 3, H, W) output (white-balanced camera RGB in
    ``wb-headroom`` space) → the finished display image: linear sRGB (`from_headroom`), clipped,
    sRGB-encoded, then the generic tone curve the synthetic targets carry. Fixed and pointwise:
    the network demosaics and denoises in camera space, this renders its colour."""
    return tone_curve(srgb_encode_tensor(from_headroom(rgb, wb_gains_rgb, camera_to_srgb)))


def input_gains_rgb(mode: str, wb_gains_rgb) -> np.ndarray:
    """The per-colour multipliers `mode` applies to the levelled RAW (what the noise map scales σ by)."""
    return headroom_gains(wb_gains_rgb) if mode == "wb-headroom" else np.asarray(wb_gains_rgb, dtype=np.float64)


def apply_color_normalization(
    packed: torch.Tensor, mode: str, wb_gains_rgb: np.ndarray, camera_to_srgb: np.ndarray
) -> torch.Tensor:
    """Apply ``wb`` / ``wb+ccm`` / ``linear-srgb`` to a levels-normalised (…, 4, h, w) packed tensor
    (or a (…, 36, h, w) X-Trans one: `_xtrans_color_normalization`)."""
    if mode not in INPUT_NORMALIZATIONS:
        raise ValueError(f"unknown input normalisation {mode!r}")
    if mode == "raw":
        return packed
    if packed.shape[-3] == XTRANS_SITES:
        return _xtrans_color_normalization(packed, mode, wb_gains_rgb, camera_to_srgb)
    r, g, b = (float(v) for v in input_gains_rgb(mode, wb_gains_rgb))
    gains = torch.tensor([r, g, g, b], dtype=packed.dtype, device=packed.device).view(4, 1, 1)
    packed = (packed * gains).clamp_(0.0, 1.0)
    if mode in ("wb", "wb-headroom"):
        return packed
    m = torch.as_tensor(np.asarray(camera_to_srgb, dtype=np.float32), device=packed.device, dtype=packed.dtype)
    if mode == "linear-srgb":
        return linear_srgb_mosaic(packed, m)
    red, green_r, green_b, blue = packed.unbind(dim=-3)
    out_red = m[0, 0] * red + m[0, 1] * (green_r + green_b) / 2 + m[0, 2] * blue
    out_blue = m[2, 0] * red + m[2, 1] * (green_r + green_b) / 2 + m[2, 2] * blue
    # Each green site keeps its own sample so the mosaic's green detail is not averaged away.
    out_gr = m[1, 0] * red + m[1, 1] * green_r + m[1, 2] * blue
    out_gb = m[1, 0] * red + m[1, 1] * green_b + m[1, 2] * blue
    return torch.stack([out_red, out_gr, out_gb, out_blue], dim=-3).clamp_(0.0, 1.0)


def _xtrans_color_normalization(packed: torch.Tensor, mode: str, wb_gains_rgb, camera_to_srgb) -> torch.Tensor:
    """The modes on a packed X-Trans period: each site times its colour's gain; ``linear-srgb``
    with the X-Trans demosaic's estimates of the colours a site lacks. ``wb+ccm`` mixes the four
    sites of a Bayer cell as one pixel, and X-Trans has no such cell: refused."""
    if mode == "wb+ccm":
        raise ValueError("wb+ccm input mixes the sites of a 2×2 Bayer cell; an X-Trans mosaic has none")
    gains = site_gains_rgb(input_gains_rgb(mode, wb_gains_rgb), XTRANS_SITES)
    packed = (packed * gains.to(packed.device, packed.dtype).view(XTRANS_SITES, 1, 1)).clamp_(0.0, 1.0)
    if mode in ("wb", "wb-headroom"):
        return packed
    m = torch.as_tensor(np.asarray(camera_to_srgb, dtype=np.float32), device=packed.device, dtype=packed.dtype)
    return xtrans_linear_srgb_mosaic(packed, m)


def normalized_input(levelled: torch.Tensor, mode: str, wb_gains_rgb, camera_to_srgb, *,
                     noise: NoiseModel | None = None, strength: float = 1.0,
                     vignetting: torch.Tensor | None = None) -> torch.Tensor:
    """Levelled (S, h, w) packed samples (S: 4 RGGB, 36 X-Trans) → G1's (S [+ S], h, w) input:
    `mode`'s colour normalisation, then, with `noise`, the noise map of a noise-conditioned profile
    (σ × `strength`).

    `vignetting`, (S, h, w) gains that undo the lens's fall-off (`pipeline/optics.py`), multiplies
    the samples before anything else, and their σ with them: the noise stays what the sensor
    recorded, only amplified, so the brightened corners read as noisier than their level says.
    """
    corrected = levelled if vignetting is None else levelled * vignetting
    packed = apply_color_normalization(corrected, mode, wb_gains_rgb, camera_to_srgb)
    if noise is None:
        return packed
    gains = site_gains_rgb(input_gains_rgb(mode, wb_gains_rgb), levelled.shape[-3])
    if vignetting is not None:
        gains = gains.to(vignetting).view(1, -1, 1, 1) * vignetting[None]
    return torch.cat([packed, noise_map(levelled[None], noise, gains, strength)[0]])


def network_input(frame: MosaicFrame, mode: str, device: torch.device | str = "cpu", *,
                  noise: NoiseModel | None = None, strength: float = 1.0,
                  vignetting: torch.Tensor | None = None, stuck_sites: StuckSites | None = None) -> NetworkInput:
    """Upload the uint16 mosaic to `device`, then level, [repair], pack and normalise it there.

    A Bayer mosaic is packed into 4 RGGB channels, an X-Trans one into the 36 sites of its period
    (`pipeline/xtrans_packing.py`), each at its canonical phase. With `noise`, the noise map of a
    noise-conditioned profile follows the image (one channel per site), its σ scaled by `strength`
    (`convert --denoise`). `vignetting`: (H, W) gains of the mosaic's sites that undo the lens's
    fall-off (`pipeline/optics.vignetting_gain`). With `stuck_sites`, hot and dead pixels of a
    Bayer mosaic are replaced in the levelled mosaic (`pipeline/hot_pixels`): before the phase
    padding, which would repeat a border site beside itself, and before vignetting, which would
    scale the noise the tests expect; an X-Trans mosaic's with the same tests on neighbourhoods
    derived from its 6×6 pattern (`pipeline/hot_pixels_xtrans`).
    """
    # uint16 has only bare-bones support on some backends; the same bits as int16 upload and
    # widen everywhere, and the mask restores the unsigned value on the device.
    as_int16 = torch.from_numpy(frame.mosaic.view(np.int16))
    if torch.device(device).type == "cuda":
        as_int16 = as_int16.pin_memory()
    mosaic = as_int16.to(device, non_blocking=True).to(torch.int32).bitwise_and_(0xFFFF)
    levelled = levels_normalize(mosaic, frame.black_level_per_site, frame.white_level)
    xtrans = len(frame.cfa_pattern) == XTRANS_SITES
    repaired = None
    if stuck_sites is not None:
        repair = repair_xtrans_stuck_sites if xtrans else repair_stuck_sites
        repaired = repair(levelled, frame.cfa_pattern, stuck_sites.noise)
    padding = phase_padding(frame.cfa_pattern, frame.height, frame.width)
    raw_packed = pack_padded(levelled, padding, xtrans=xtrans)
    site_vignetting = None if vignetting is None else pack_padded(vignetting.to(levelled), padding, xtrans=xtrans)
    packed = normalized_input(raw_packed, mode, frame.wb_gains_rgb, frame.camera_to_srgb, noise=noise,
                              strength=strength, vignetting=site_vignetting)
    return NetworkInput(packed=packed[None].contiguous(), padding=padding, stuck_sites=repaired)


def phase_padding(cfa_pattern: str, height: int, width: int) -> PhasePadding:
    """What a frame of `cfa_pattern` is padded by to reach its canonical phase and whole periods."""
    if len(cfa_pattern) == XTRANS_SITES:
        return xtrans_padding(cfa_pattern, height, width)
    return rggb_padding(cfa_pattern, height, width)


def pack_padded(mosaic: torch.Tensor, padding: PhasePadding, *, xtrans: bool) -> torch.Tensor:
    """(H, W) → packed (S, h, w): reflect padding and RGGB packing for Bayer, period-shift padding
    and the 36-site packing for X-Trans (a reflected X-Trans row would change colours)."""
    if xtrans:
        return pack_xtrans(pad_xtrans(mosaic, padding))
    return pack_rggb(pad_mosaic(mosaic, padding))


def network_output(rgb: torch.Tensor, frame: MosaicFrame, padding: PhasePadding, *, half_size: bool = False,
                   scene_linear: bool = False, sensor_orientation: bool = False,
                   lens: LensModel | None = None, look: Look | None = None,
                   network_space: str = "srgb") -> np.ndarray:
    """G1's (1, 3, H', W') output → the frame's finished uint16 (H, W, 3) pixels, `network_input`'s
    mirror: crop the phase padding, [a camera-space display profile's rendering: camera → display
    sRGB (`display_from_camera`)], [the profile's `look` table], [half size], square pixels, [the
    `lens`'s distortion and lateral CA corrected], [a scene-linear profile's headroom space →
    camera-native RGB (`sensor_orientation`, for a DNG) or linear sRGB], orient, quantise.
    """
    rgb = padding.crop(rgb)
    if network_space == "camera":  # before the look, which is fitted on display images
        rgb = display_from_camera(rgb, frame.wb_gains_rgb, frame.camera_to_srgb)
    if look is not None:  # pointwise, before any resampling: what learn fitted it on
        rgb = apply_look(rgb, look)
    if half_size:
        # Mean of each 2×2 block; an odd last row/column is dropped, as LibRaw's half_size does.
        rgb = to_half_size(rgb)
    rgb = to_square_pixels(rgb, frame.pixel_aspect)  # non-square sensor pixels, as LibRaw renders them
    if lens is not None:  # in sensor orientation, the geometry lensfun's calibrations describe
        rgb = correct_geometry(rgb, lens)
    if scene_linear:
        rgb = from_headroom(rgb, frame.wb_gains_rgb, None if sensor_orientation else frame.camera_to_srgb)
    # A DNG keeps sensor orientation and records the source's in its Orientation tag.
    rgb = rgb[0] if sensor_orientation else orient(rgb[0], frame.flip)  # (3, H, W)
    # Rounded in float32 (whole numbers up to 65535 are exact there) and cast once by numpy, from
    # the float32 view: same bits as going through an int32 tensor, and 0.18 s per 12 MP frame on
    # 2 cores instead of 0.51 s (two fewer full-frame passes and allocations; measured 2026-11-30).
    quantised = rgb.clamp(0, 1).mul_(65535).round_()
    return quantised.permute(1, 2, 0).cpu().numpy().astype(np.uint16)
