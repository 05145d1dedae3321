"""The classical renderings the quality report compares raw2rgb with, on one shared colour path.

Every method here starts from the same decoded file (`raw2rgb_plugin.io.raw_file.BayerFrame`) and
ends with the same steps, so only the demosaicking (and denoising, if any) differs:

    white-balanced camera RGB ─ frame.camera_to_srgb ─▶ linear sRGB ─ clip ─▶ sRGB curve
        ─▶ smoothstep 3x² − 2x³ (the forward of `unprocess.inverse_tone_curve`)

which is exactly the forward of the unprocessing that made the synthetic test RAWs, so a perfect
demosaicker scores the ground truth. The renderers:

- LibRaw (rawpy `postprocess`) with AHD or DHT: the frame's white balance as `user_wb`, camera RGB
  out (`output_color=raw`), linear, 16-bit, no auto-brightening, no maximum adjustment;
- demosaicnet (Gharbi et al. 2016, the PyPI package's shipped Bayer weights) on the
  white-balanced mosaic, brought to its GRBG phase by reflect padding.

X-Trans frames (issue 25) have LibRaw's own X-Trans rendering (3-pass Markesteijn) and
demosaicnet's X-Trans model (the package ships its weights too), on the same colour path.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import sys
import types

import numpy as np
import rawpy
import torch

from raw2rgb_plugin.io.raw_file import BayerFrame, SensorFrame
from raw2rgb_plugin.pipeline.cfa import period
from raw2rgb_plugin.pipeline.colour import srgb_encode, tone_curve as smoothstep
from raw2rgb_plugin.pipeline.normalization import levels_normalize
from raw2rgb_plugin.pipeline.packing import site_tile

LIBRAW_ALGORITHMS = {"AHD": rawpy.DemosaicAlgorithm.AHD, "DHT": rawpy.DemosaicAlgorithm.DHT}


def finish_rendering(camera_rgb: np.ndarray, frame: BayerFrame, *, tone_curve: bool = True) -> np.ndarray:
    """White-balanced camera RGB (H, W, 3) → display sRGB in [0, 1], as the synthetic pairs define it."""
    linear = np.clip(camera_rgb, 0.0, 1.0) @ np.asarray(frame.camera_to_srgb, dtype=np.float64).T
    encoded = srgb_encode(np.clip(linear, 0.0, 1.0))
    return smoothstep(encoded) if tone_curve else encoded


def _libraw_postprocess(path, frame: BayerFrame, **rendering) -> np.ndarray:
    """rawpy `postprocess` with the frame's white balance and nothing LibRaw would add on its own
    (no auto-brightening, no white-level change, no rotation): float (H, W, 3) in [0, 1]."""
    r, g, b = (float(v) for v in frame.wb_gains_rgb)
    with rawpy.imread(str(path)) as raw:
        rgb = raw.postprocess(
            use_camera_wb=False,
            use_auto_wb=False,
            user_wb=[r, g, b, g],
            no_auto_bright=True,
            # LibRaw otherwise lowers the white level to the brightest pixel when that is within
            # 75 % of it, brightening the frame relative to what the file says.
            adjust_maximum_thr=0.0,
            output_bps=16,
            user_flip=0,
            **rendering,
        )
    return rgb.astype(np.float64) / 65535.0


def libraw_camera_rgb(path, frame: BayerFrame, algorithm: str) -> np.ndarray:
    """LibRaw's demosaicked, white-balanced, linear camera RGB (H, W, 3) in [0, 1], sensor orientation."""
    return _libraw_postprocess(path, frame, demosaic_algorithm=LIBRAW_ALGORITHMS[algorithm],
                               output_color=rawpy.ColorSpace.raw, gamma=(1, 1))


def libraw_xtrans_camera_rgb(path, frame: SensorFrame) -> np.ndarray:
    """LibRaw's X-Trans rendering of an X-Trans file as `libraw_camera_rgb`. On a file LibRaw reads
    as X-Trans, any quality above 2 (AHD is 3) runs xtrans_interpolate(3), the 3-pass Markesteijn:
    measured on our X-Trans DNGs, AHD, DHT and LibRaw's default give the same pixels, PPG (1 pass)
    others, and frames under 512 px fail as xtrans_interpolate refuses them."""
    if period(frame.cfa_pattern) != 6:
        raise ValueError(f"{path} is no X-Trans file ({frame.cfa_pattern})")
    return libraw_camera_rgb(path, frame, "AHD")


def libraw_display(path, frame: BayerFrame, algorithm: str = "AHD") -> np.ndarray:
    """LibRaw's own complete rendering (AHD or DHT, the frame's white balance, its camera→sRGB
    matrix and the sRGB curve), float (H, W, 3) in [0, 1], sensor orientation: the classical look."""
    return _libraw_postprocess(path, frame, demosaic_algorithm=LIBRAW_ALGORITHMS[algorithm],
                               output_color=rawpy.ColorSpace.sRGB, gamma=(2.4, 12.92))


def white_balanced_mosaic(frame: SensorFrame) -> np.ndarray:
    """The mosaic with the engine's own levels and white balance, clipped to [0, 1] (float64)."""
    h, w = frame.mosaic.shape
    levelled = levels_normalize(torch.from_numpy(frame.mosaic.astype(np.int32)), frame.black_level_per_site,
                                frame.white_level)
    gains = dict(zip("RGB", (float(v) for v in frame.wb_gains_rgb)))
    side = period(frame.cfa_pattern)
    site_gain = torch.tensor([gains[c] for c in frame.cfa_pattern], dtype=torch.float32).view(side, side)
    return (levelled * site_tile(site_gain, h, w)).clamp_(0.0, 1.0).double().numpy()


def demosaicnet_available() -> bool:
    return importlib.util.find_spec("demosaicnet") is not None


#: (row, column) offset of the first GRBG 2×2 block in a mosaic of each order.
_GRBG_OFFSET = {"GRBG": (0, 0), "RGGB": (0, 1), "BGGR": (1, 0), "GBRG": (1, 1)}
#: reflect padding around the mosaic: the network trims 31 px per side (unpadded convolutions).
_DEMOSAICNET_MARGIN = 32


class DemosaicNet:
    """Gharbi et al. 2016's Bayer demosaicker with the weights shipped in the `demosaicnet` wheel.

    demosaicnet 0.0.14 imports `pkg_resources` at module level only to locate its weight file;
    setuptools ≥ 81 no longer provides it. When it is missing, a stand-in module is registered for
    the import, the network is built without weights, and the shipped `data/bayer.pth` state dict
    is loaded here with `torch.load(weights_only=True)` (tensors only, no pickled code). The network
    is torchvision-free.

    Input: Bayer mosaic in GRBG phase as a 3-channel masked image (the package's `bayer()` layout),
    values in [0, 1]. Gharbi et al. trained on sRGB-encoded photographs, so by default the
    white-balanced linear mosaic is sRGB-encoded before the network and decoded after it
    (`encoded_input`), which the report measured to suit it better than linear input.
    """

    @staticmethod
    def _stand_in_pkg_resources() -> None:
        if "pkg_resources" not in sys.modules and importlib.util.find_spec("pkg_resources") is None:
            stand_in = types.ModuleType("pkg_resources")
            stand_in.resource_filename = lambda package, resource: resource  # type: ignore[attr-defined]
            sys.modules["pkg_resources"] = stand_in

    def __init__(self, device: torch.device | str = "cpu", *, encoded_input: bool = True):
        self.version, self.model, self.device = _shipped_demosaicnet("BayerDemosaick", "bayer.pth", device)
        self.encoded_input = encoded_input

    @torch.inference_mode()
    def camera_rgb(self, frame: BayerFrame) -> np.ndarray:
        """Demosaicked white-balanced camera RGB (H, W, 3) in [0, 1], sensor orientation."""
        mosaic = white_balanced_mosaic(frame)
        if self.encoded_input:
            mosaic = srgb_encode(mosaic)
        h, w = mosaic.shape
        dy, dx = _GRBG_OFFSET[frame.cfa_pattern]
        m = _DEMOSAICNET_MARGIN
        # Reflection keeps each site's colour (even distances), so padding by m + offset on the
        # top/left puts a GRBG block at (0, 0); equal padding below/right keeps the sides even.
        padded = np.pad(mosaic, ((m + dy, m + dy + h % 2), (m + dx, m + dx + w % 2)), mode="reflect")
        ph, pw = padded.shape
        masks = np.zeros((3, ph, pw), dtype=np.float32)
        masks[1, 0::2, 0::2] = 1  # G
        masks[0, 0::2, 1::2] = 1  # R
        masks[2, 1::2, 0::2] = 1  # B
        masks[1, 1::2, 1::2] = 1  # G
        net_in = torch.from_numpy(masks * padded.astype(np.float32)[None])[None].to(self.device)
        out = self.model(net_in)[0].float().cpu().numpy().transpose(1, 2, 0)
        # Unpadded convolutions trim (ph − out_h) / 2 = 31 px per side: output (i, j) is input
        # (i + 31, j + 31), i.e. mosaic (i + 31 − m − dy, …).
        trim_y = (ph - out.shape[0]) // 2
        trim_x = (pw - out.shape[1]) // 2
        top, left = m + dy - trim_y, m + dx - trim_x
        rgb = np.clip(out[top : top + h, left : left + w].astype(np.float64), 0.0, 1.0)
        if self.encoded_input:
            from raw2rgb_plugin.pipeline.colour import srgb_decode

            rgb = srgb_decode(rgb)
        return rgb


def _shipped_demosaicnet(model_class: str, weights_file: str, device: torch.device | str):
    """(package version, eval-mode model on `device`, device): `demosaicnet.<model_class>` with
    the weights its wheel ships as data/<weights_file>, read without unpickling code."""
    DemosaicNet._stand_in_pkg_resources()
    import demosaicnet

    version = getattr(demosaicnet, "__version__", None) or _distribution_version("demosaicnet")
    weights = importlib.resources.files("demosaicnet") / "data" / weights_file
    with importlib.resources.as_file(weights) as path:
        state = torch.load(path, map_location="cpu", weights_only=True)
    model = getattr(demosaicnet, model_class)(pretrained=False)
    model.load_state_dict(state)
    device = torch.device(device)
    return version, model.to(device).eval(), device


class XTransDemosaicNet:
    """Gharbi et al. 2016's X-Trans demosaicker, the `xtrans.pth` weights of the `demosaicnet` wheel
    (loaded as `DemosaicNet` loads the Bayer ones), on the same sRGB-encoded white-balanced mosaic.

    The network has no stride or packing: a 3-channel masked mosaic in, full-resolution RGB out,
    12 unpadded 3×3 convolutions trimming 12 px a side. So it takes any phase (a shifted mosaic
    gives the shifted image) and only each site's colour must be right: the mosaic and its colour
    map are reflect-padded by 12 alike, which keeps every padded value with its own colour.
    """

    MARGIN = 12

    def __init__(self, device: torch.device | str = "cpu"):
        self.version, self.model, self.device = _shipped_demosaicnet("XTransDemosaick", "xtrans.pth", device)

    @torch.inference_mode()
    def camera_rgb(self, frame: SensorFrame) -> np.ndarray:
        """Demosaicked white-balanced camera RGB (H, W, 3) in [0, 1], sensor orientation."""
        from raw2rgb_plugin.pipeline.colour import srgb_decode

        mosaic = srgb_encode(white_balanced_mosaic(frame))
        h, w = mosaic.shape
        side = period(frame.cfa_pattern)
        colours = np.tile(frame.cfa, (-(-h // side), -(-w // side)))[:h, :w]
        m = self.MARGIN
        padded = np.pad(mosaic, m, mode="reflect").astype(np.float32)
        colours = np.pad(colours, m, mode="reflect")
        masked = np.stack([padded * (colours == c) for c in range(3)])
        out = self.model(torch.from_numpy(masked)[None].to(self.device))[0].float().cpu().numpy()
        if out.shape[-2:] != (h, w):
            raise RuntimeError(f"demosaicnet's X-Trans model gave {out.shape[-2:]} for a {h}×{w} mosaic")
        return srgb_decode(np.clip(out.transpose(1, 2, 0).astype(np.float64), 0.0, 1.0))


def _distribution_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
