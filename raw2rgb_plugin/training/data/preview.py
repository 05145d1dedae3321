"""Side-by-side preview PNGs: what the builder saw, so a person can judge the alignment."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from raw2rgb_plugin.io.files import atomic_output
from raw2rgb_plugin.pipeline.normalization import apply_color_normalization
from raw2rgb_plugin.training.data.align import packed_rgb_preview
from raw2rgb_plugin.training.data.store import ShardLevels

#: previews wider than this are shrunk: three panels of a full frame would be huge.
PREVIEW_WIDTH = 1800
_COLOURS = {"kept": (40, 220, 40), "unverified": (240, 200, 0), "dropped": (230, 30, 30)}


def preview_images(levels: ShardLevels, levelled: torch.Tensor, warped: np.ndarray, boxes: list, score: float | None) -> dict:
    """What `write_preview` draws, gathered in the worker while the pair's arrays are at hand."""
    rendered = apply_color_normalization(levelled, "wb+ccm", levels.wb_gains_rgb, levels.camera_to_srgb)
    return {"raw": packed_rgb_preview(rendered), "target": warped, "boxes": boxes, "score": score}


def write_preview(path: Path, preview: dict) -> None:
    """RAW rendering | aligned target | checkerboard of both; patch boxes green/yellow/red."""
    from PIL import Image, ImageDraw

    raw = preview["raw"]
    h, w = raw.shape[:2]
    target = cv2.resize(np.clip(preview["target"], 0, 1).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    block = max(8, w // 16)
    yy, xx = np.mgrid[0:h, 0:w]
    checker = (((yy // block) + (xx // block)) % 2 == 0)[..., None]
    mixed = np.where(checker, raw, target)
    panels = np.concatenate([raw, target, mixed], axis=1)
    image = Image.fromarray((np.clip(panels, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for (y0, x0, y1, x1), state in preview["boxes"]:
        for k in range(2):  # on the RAW and on the target panel; the checkerboard stays clear
            draw.rectangle([x0 + k * w, y0, x1 + k * w - 1, y1 - 1], outline=_COLOURS[state])
    scale = min(1.0, PREVIEW_WIDTH / image.width)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=True) as out:  # a killed build leaves no half-written preview
        image.save(out, format="PNG")
