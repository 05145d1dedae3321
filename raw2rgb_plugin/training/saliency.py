"""Saliency maps of training targets, for the SMDA attention loss, with nothing to download.

Three sources, one interface (`SaliencySource.map_for(rgb, path) -> (H, W) float32 in [0, 1]`):

- ``builtin``: a weight-free estimator. Spectral residual (Hou & Zhang, CVPR 2007) finds what
  stands out of an image's average spectrum — small distinct objects, edges of texture; a
  frequency-tuned colour-contrast term (Achanta et al., CVPR 2009: distance of each blurred Lab
  pixel from the image's mean Lab colour) finds large regions of distinct colour that the
  spectral residual misses. The two are normalised and averaged. Not SalGAN, but it puts weight
  where a viewer looks, which is all the attention loss asks of it.
- a folder of precomputed maps (e.g. the seed's SalGAN maps), matched to the target by file stem.
- a TorchScript saliency model of the user's own. TorchScript archives can carry pickled
  objects, so loading one runs code from the file: only for models you made or trust, and only
  when asked for explicitly (`trust_torchscript=True`).

A map always describes the target image as stored on disk (display orientation, target size):
the dataset builder orients and warps it exactly like the target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from raw2rgb_plugin.errors import Raw2RgbError

MAP_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".npy")

#: the spectral residual works at a coarse scale where "what stands out" is object-sized.
_SPECTRAL_SIZE = 64
_CONTRAST_SIZE = 256


class SaliencyError(Raw2RgbError):
    """A saliency source that cannot be used (missing folder or map, untrusted model)."""


def _normalise(m: np.ndarray) -> np.ndarray:
    m = m.astype(np.float32) - float(m.min())
    peak = float(m.max())
    return m / peak if peak > 1e-12 else np.zeros_like(m)


def _resize_long_side(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    scale = size / max(h, w)
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def spectral_residual(gray: np.ndarray) -> np.ndarray:
    """Hou & Zhang's spectral residual saliency of a (H, W) image at its own size."""
    spectrum = np.fft.fft2(gray.astype(np.float64))
    log_amplitude = np.log(np.abs(spectrum) + 1e-9)
    phase = np.angle(spectrum)
    residual = log_amplitude - cv2.blur(log_amplitude, (3, 3), borderType=cv2.BORDER_REPLICATE)
    saliency = np.abs(np.fft.ifft2(np.exp(residual + 1j * phase))) ** 2
    sigma = max(gray.shape) / 24  # ~2.5 px at the 64-pixel working size, as in the paper
    return _normalise(cv2.GaussianBlur(saliency, (0, 0), sigma))


def colour_contrast(rgb: np.ndarray) -> np.ndarray:
    """Frequency-tuned saliency: ‖mean Lab − blurred Lab‖ per pixel of an sRGB (H, W, 3) image."""
    lab = cv2.cvtColor(np.clip(rgb, 0, 1).astype(np.float32), cv2.COLOR_RGB2Lab)
    blurred = cv2.GaussianBlur(lab, (0, 0), max(1.0, max(rgb.shape[:2]) / 256))
    mean = lab.reshape(-1, 3).mean(axis=0)
    return _normalise(np.linalg.norm(blurred - mean, axis=-1))


def builtin_saliency(rgb: np.ndarray) -> np.ndarray:
    """Weight-free saliency of an sRGB (H, W, 3) float image in [0, 1] → (H, W) float32 in [0, 1]."""
    h, w = rgb.shape[:2]
    small = _resize_long_side(rgb.astype(np.float32), _CONTRAST_SIZE)  # both terms are coarse: reduce once
    sh, sw = small.shape[:2]
    gray = cv2.cvtColor(_resize_long_side(small, _SPECTRAL_SIZE), cv2.COLOR_RGB2GRAY)
    spectral = cv2.resize(spectral_residual(gray), (sw, sh), interpolation=cv2.INTER_LINEAR)
    combined = _normalise(0.5 * spectral + 0.5 * colour_contrast(small))
    return np.clip(cv2.resize(combined, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)


class SaliencySource(Protocol):
    """Where saliency maps come from; `describe()` goes into the dataset manifest."""

    def map_for(self, rgb: np.ndarray, path: Path | None) -> np.ndarray: ...

    def describe(self) -> dict: ...


class BuiltinSaliency:
    def map_for(self, rgb: np.ndarray, path: Path | None) -> np.ndarray:
        return builtin_saliency(rgb)

    def describe(self) -> dict:
        return {"kind": "builtin", "method": "spectral residual + frequency-tuned colour contrast"}


class FolderSaliency:
    """Precomputed maps named like their target (`<stem>.png`, …), any size, 8/16-bit or .npy."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise SaliencyError(f"saliency folder {self.folder} does not exist",
                                "pass a folder of maps named like the RGB targets")
        self._by_stem: dict[str, Path] = {}
        for p in sorted(self.folder.iterdir()):
            if p.is_file() and p.suffix.lower() in MAP_SUFFIXES:
                self._by_stem.setdefault(p.stem.lower(), p)

    def map_for(self, rgb: np.ndarray, path: Path | None) -> np.ndarray:
        if path is None or path.stem.lower() not in self._by_stem:
            name = path.name if path is not None else "this target"
            raise SaliencyError(f"no saliency map for {name} in {self.folder}", "add <stem>.png or use --saliency builtin")
        found = self._by_stem[path.stem.lower()]
        if found.suffix.lower() == ".npy":
            m = np.load(found, allow_pickle=False).astype(np.float32)
        else:
            m = cv2.imread(str(found), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
            if m is None:
                raise SaliencyError(f"cannot read saliency map {found}", "save it as an 8/16-bit grayscale PNG")
            m = m.astype(np.float32)
        if m.ndim == 3:
            m = m[..., :3].mean(axis=-1)
        if m.ndim != 2:
            raise SaliencyError(f"saliency map {found} is not a 2-D image", "save it as a grayscale image")
        h, w = rgb.shape[:2]
        if m.shape != (h, w):
            m = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
        return _normalise(m)

    def describe(self) -> dict:
        return {"kind": "folder", "folder": str(self.folder.resolve()), "maps": len(self._by_stem)}


class TorchScriptSaliency:
    """A user's TorchScript model: input (1, 3, S, S) sRGB float in [0, 1], output one map.

    The output may be (1, 1, h, w), (1, h, w) or (h, w) of any range; it is min–max normalised
    and resized to the target. `input_size` is the square size the image is resized to.
    """

    def __init__(self, path: Path, *, trust_torchscript: bool, input_size: int = 256, device: str = "cpu"):
        import torch

        self.path = Path(path)
        if not trust_torchscript:
            raise SaliencyError(
                f"loading TorchScript model {self.path} would run code stored in it",
                "pass --trust-torchscript if you made or trust this model",
            )
        if not self.path.is_file():
            raise SaliencyError(f"TorchScript saliency model {self.path} does not exist", "check the path")
        try:
            self.model = torch.jit.load(str(self.path), map_location=device).eval()
        except (RuntimeError, ValueError) as exc:
            raise SaliencyError(f"{self.path} is not a TorchScript model ({str(exc).splitlines()[0]})",
                                "export it with torch.jit.script/trace and torch.jit.save") from None
        self.input_size = int(input_size)
        self.device = device

    def map_for(self, rgb: np.ndarray, path: Path | None) -> np.ndarray:
        import torch

        h, w = rgb.shape[:2]
        small = cv2.resize(rgb.astype(np.float32), (self.input_size, self.input_size), interpolation=cv2.INTER_AREA)
        x = torch.from_numpy(np.ascontiguousarray(small.transpose(2, 0, 1)))[None].to(self.device)
        with torch.no_grad():
            y = self.model(x)
        if isinstance(y, (tuple, list)):
            y = y[0]
        m = y.detach().float().cpu().numpy().squeeze()
        if m.ndim != 2:
            raise SaliencyError(f"saliency model {self.path} returned shape {tuple(y.shape)}", "it must return one map (…, h, w)")
        return _normalise(cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR))

    def describe(self) -> dict:
        return {"kind": "torchscript", "model": str(self.path.resolve()), "input_size": self.input_size}


def saliency_source(spec: str, *, trust_torchscript: bool = False) -> SaliencySource:
    """`builtin`, `torchscript:PATH`, or a folder path."""
    if spec == "builtin":
        return BuiltinSaliency()
    if spec.startswith("torchscript:"):
        return TorchScriptSaliency(Path(spec[len("torchscript:"):]).expanduser(), trust_torchscript=trust_torchscript)
    return FolderSaliency(Path(spec).expanduser())
