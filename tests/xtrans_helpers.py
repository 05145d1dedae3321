"""X-Trans test material: small X-Trans G1 profiles and synthetic X-Trans DNGs of known scenes.

Profiles have random weights with BatchNorm statistics from a few forward passes (every code path
of a trained profile runs), or a shut gate, so the profile renders exactly its classical base (a
test of everything around the network). DNGs are written by our writer and read by LibRaw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from raw2rgb_plugin.io.dng_write import write_cfa_dng
from raw2rgb_plugin.io.exif_read import PhotoMetadata
from raw2rgb_plugin.models.g1 import G1, G1Config
from raw2rgb_plugin.pipeline.cfa import xtrans_pattern
from raw2rgb_plugin.profiles.store import save_profile
from raw2rgb_plugin.training.data.unprocess import mosaic_rgb

from helpers import TEST_XYZ_TO_CAMERA, smooth_scene

BLACK, WHITE = 64, 4095
NEUTRAL = (0.5, 1.0, 0.625)  # camera RGB of grey → white balance 2, 1, 1.6
# A model LibRaw has no table entry for: it reads the DNG's own matrix (for "X-T3" it takes its own).
META = PhotoMetadata(make="FUJIFILM", model="X-Trans synthetic", iso=400)

#: (input normalisation, base, metadata) of each kind of X-Trans profile the engine renders
KINDS = {
    "srgb": ("linear-srgb", "xtrans-srgb-gated", {}),
    "camera": ("wb-headroom", "xtrans-linear-gated", {"network_space": "camera"}),
    "scene-linear": ("wb-headroom", "xtrans-linear-gated",
                     {"output": "scene-linear", "output_color_space": "camera-linear"}),
}


def make_xtrans_profile(path: Path, kind: str = "camera", *, width: int = 8, noise: bool = True,
                        classical: bool = False, seed: int = 0) -> Path:
    """An X-Trans (period 6) G1 profile of `kind` (see KINDS). `classical`: its gate is shut, so it
    renders exactly its base's classical X-Trans demosaic of the engine's input."""
    normalization, base, extra = KINDS[kind]
    torch.manual_seed(seed)
    config = G1Config(width=width, spectral_norm=False, period=6, in_channels=36, residual_base=base,
                      noise_channels=36 if noise else 0)
    model = G1(config)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(2, 36 + config.noise_channels, 16, 16))
        if classical:
            model.d4.conv.weight[108:].zero_()
            model.d4.conv.bias[108:].fill_(-40.0)  # sigmoid(-40) ≈ 4e-18: the classical image
    model.eval()
    return save_profile(path, model, {"input_normalization": normalization, "description": f"X-Trans {kind} test", **extra})


def camera_scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth, colourful (H, W, 3) scene in camera RGB as the sensor saw it (grey → NEUTRAL)."""
    return smooth_scene(height, width, seed) * np.asarray(NEUTRAL)


def write_xtrans_scene(path: Path, camera: np.ndarray, *, phase: tuple[int, int] = (0, 0), orientation: int = 1,
                       metadata: PhotoMetadata | None = META) -> Path:
    """`camera` (H, W, 3 in [0, 1]) sampled by an X-Trans sensor at `phase`, written as a 12-bit DNG."""
    pattern = xtrans_pattern(*phase)
    mosaic = (BLACK + (WHITE - BLACK) * mosaic_rgb(np.ascontiguousarray(camera), pattern)).round().astype(np.uint16)
    write_cfa_dng(path, mosaic, pattern, black_level=BLACK, white_level=WHITE, color_matrix1=TEST_XYZ_TO_CAMERA,
                  as_shot_neutral=NEUTRAL, orientation=orientation, make=metadata.make if metadata else "raw2rgb",
                  model=metadata.model if metadata else "Synthetic", metadata=metadata)
    return path
