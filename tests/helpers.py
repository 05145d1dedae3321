"""Builders the tests share: small random-weight profiles and known synthetic mosaics."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from raw2rgb_plugin.models.g1 import G1, G1Config
from raw2rgb_plugin.profiles.store import save_profile

#: XYZ(D65) → camera matrix of a plausible sensor (a Canon-like response; values only need to be sane).
TEST_XYZ_TO_CAMERA = np.array(
    [[0.6722, -0.0635, -0.0963], [-0.4287, 1.2460, 0.2028], [-0.0908, 0.2162, 0.5668]], dtype=np.float64
)


def make_tiny_profile(path: Path, *, width: int = 8, input_normalization: str = "wb+ccm", seed: int = 0) -> Path:
    """A G1 with random weights and BatchNorm statistics from a few forward passes.

    Not a useful converter, but every code path of a real profile runs through it.
    """
    torch.manual_seed(seed)
    model = G1(G1Config(width=width))
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(2, 4, 32, 32))
    model.eval()
    return save_profile(path, model, {"input_normalization": input_normalization, "description": "test profile"})


def folder_of_smooth_images(folder: Path, count: int = 4, size: tuple[int, int] = (80, 96)) -> Path:
    """`folder` made and filled with `count` 8-bit PNGs of smooth scenes (seeds 0 …): an RGB_DIR."""
    from PIL import Image

    folder.mkdir()
    for i in range(count):
        Image.fromarray((smooth_scene(*size, seed=i) * 255).astype(np.uint8)).save(folder / f"img{i}.png")
    return folder


def smooth_scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth, colourful linear scene in [0, 1] (H, W, 3)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    channels = []
    for _ in range(3):
        fy, fx, phase = rng.uniform(1, 4), rng.uniform(1, 4), rng.uniform(0, 6.28)
        channels.append(0.45 + 0.35 * np.sin(fy * 6.28 * y + phase) * np.cos(fx * 6.28 * x))
    return np.clip(np.stack(channels, axis=-1), 0.02, 0.98)


def make_classical_develop_profile(path: Path) -> Path:
    """A scene-linear profile for `convert --format dng` whose network adds nothing: its gate is
    shut, so its image is exactly the linear Malvar–He–Cutler demosaic of its input. What a test
    of it measures is the DNG and raw2rgb's colour path, not a training run."""
    torch.manual_seed(0)
    model = G1(G1Config(width=8, spectral_norm=False, residual_base="mhc-linear-gated", noise_channels=4)).eval()
    with torch.no_grad():
        model.d4.conv.weight[12:].zero_()
        model.d4.conv.bias[12:].fill_(-40.0)  # sigmoid(-40) ≈ 4e-18: the classical image
    return save_profile(path, model, {"input_normalization": "wb-headroom", "output_color_space": "camera-linear",
                                      "output": "scene-linear"})


def make_tiny_camera_profile(path: Path, *, width: int = 8, seed: int = 0) -> Path:
    """A camera-space display profile (`network_space: camera`): G1 reads the `wb-headroom` mosaic
    and renders white-balanced camera RGB, with random weights and BatchNorm statistics from a few
    forward passes; the engine's fixed rendering after it makes the display image."""
    torch.manual_seed(seed)
    model = G1(G1Config(width=width, residual_base="mhc-linear-gated"))
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(2, 4, 32, 32))
    model.eval()
    return save_profile(path, model, {"input_normalization": "wb-headroom", "network_space": "camera",
                                      "description": "test camera-space profile"})


def cuda_test(test):
    """A CUDA test: marked `cuda` (benchmarks/gpu_check.sh runs `-m cuda`), skipped without a GPU."""
    return pytest.mark.cuda(_NEEDS_CUDA(test))


_NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
#: a `device` parameter value for a test that runs on the CPU and, where there is one, on CUDA.
CUDA_PARAM = pytest.param("cuda", marks=[pytest.mark.cuda, _NEEDS_CUDA])


def default_sigint() -> None:
    """`preexec_fn` for a child the test will stop with SIGINT: a shell that starts a job in the
    background (`cmd &`, nohup, some CI runners) hands it SIGINT ignored, and Python then never
    turns SIGINT into KeyboardInterrupt (the interrupt tests failed that way, launched with `&`)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


# DNG opcodes (DNG 1.4 specification, chapter 6): big-endian whatever the file's byte order.
DNG_OPCODE_WARP_RECTILINEAR, DNG_OPCODE_FIX_VIGNETTE_RADIAL = 1, 3
_DNG_OPCODE_VERSION = 0x01030000  # the DNG version that defined both opcodes (1.3.0.0)


def dng_opcode_list(*opcodes: tuple[int, bytes]) -> bytes:
    """An encoded OpcodeList: a count, then per (id, parameters) a header of id, version, flags
    (0: required, applies to previews too) and parameter length."""
    encoded = struct.pack(">I", len(opcodes))
    for opcode_id, parameters in opcodes:
        encoded += struct.pack(">IIII", opcode_id, _DNG_OPCODE_VERSION, 0, len(parameters)) + parameters
    return encoded


def fix_vignette_radial(k: tuple[float, float, float, float, float],
                        centre: tuple[float, float] = (0.5, 0.5)) -> tuple[int, bytes]:
    """FixVignetteRadial: gain 1 + k0·r² + k1·r⁴ + … about a centre given relative to the image."""
    return DNG_OPCODE_FIX_VIGNETTE_RADIAL, struct.pack(">7d", *k, *centre)


def warp_rectilinear(radial: tuple[float, float, float, float], tangential: tuple[float, float] = (0.0, 0.0),
                     centre: tuple[float, float] = (0.5, 0.5)) -> tuple[int, bytes]:
    """WarpRectilinear with one set of coefficients for all planes (kr0..kr3, kt0, kt1, then the centre)."""
    return DNG_OPCODE_WARP_RECTILINEAR, struct.pack(">I6d2d", 1, *radial, *tangential, *centre)


def dng_opcode_ids(encoded: bytes) -> list[int]:
    """The opcode ids of an encoded OpcodeList, walking its headers (raises on a malformed list)."""
    (count,), position, ids = struct.unpack_from(">I", encoded), 4, []
    for _ in range(count):
        opcode_id, _version, _flags, length = struct.unpack_from(">IIII", encoded, position)
        position += 16 + length
        ids.append(opcode_id)
    if position != len(encoded):
        raise ValueError(f"{len(encoded) - position} bytes after the last opcode")
    return ids
