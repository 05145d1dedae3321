"""Procedural test images with structure to align on, and synthetic RAW/RGB pairs made from them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from raw2rgb_plugin.training.data.unprocess import random_params, write_synthetic_dng


def textured_scene(height: int, width: int, seed: int) -> np.ndarray:
    """An sRGB (H, W, 3) float image in [0, 1]: smooth colour fields plus many sharp shapes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    fy, fx = rng.uniform(0.5, 2.0, 2)
    image = np.stack([0.35 + 0.25 * np.sin(6 * fx * x + c) * np.cos(5 * fy * y + c) for c in range(3)], axis=-1)
    image = np.ascontiguousarray(image, dtype=np.float32)
    for _ in range(max(20, height * width // 1500)):
        colour = tuple(float(v) for v in rng.uniform(0.05, 0.9, 3))
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(4, max(6, width // 10)))
        if rng.random() < 0.5:
            cv2.circle(image, (cx, cy), r, colour, -1, lineType=cv2.LINE_AA)
        else:
            cv2.rectangle(image, (cx, cy), (cx + r, cy + int(rng.integers(4, r + 5))), colour, -1, lineType=cv2.LINE_AA)
    return np.clip(cv2.GaussianBlur(image, (0, 0), 0.7), 0.0, 1.0)


def save_srgb(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR))
    return path


def write_pair(raw_dir: Path, rgb_dir: Path, name: str, scene: np.ndarray, *, target: np.ndarray | None = None,
               seed: int = 0, noise: bool = True, cfa: str | None = None):
    """A synthetic DNG of `scene` and a PNG target (the scene itself unless `target` is given)."""
    rng = np.random.default_rng(seed)
    raw_dir.mkdir(parents=True, exist_ok=True)
    params = random_params(rng, noise=noise, cfa_pattern=cfa)
    write_synthetic_dng(scene, raw_dir / f"{name}.dng", rng, params=params)
    save_srgb(rgb_dir / f"{name}.png", scene if target is None else target)
    return params
