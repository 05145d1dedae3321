"""The quality report's pictures: labelled side-by-side strips of crops (PIL)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from raw2rgb_plugin.engine.converter import decode
from raw2rgb_plugin.engine.jobs import ConvertJob
from raw2rgb_plugin.io.raw_file import BayerFrame
from raw2rgb_plugin.pipeline.metrics import image_psnr
from raw2rgb_plugin.pipeline.orientation import orient_hwc

import classical
from heldout import NOISE_LEVELS, Case, noise_text
from quality_common import Method

VISUAL_CROP = 128
VISUAL_NOISE = ("none", "medium", "high", "iso1600")


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def labelled_strip(panels: list[tuple[str, np.ndarray]], *, title: str | None = None):
    """Panels side by side with a caption band above each (PIL image)."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=11)  # Pillow ≥ 10.1 with FreeType: a real scalable font
    except TypeError:
        font = ImageFont.load_default()
    band, gap = 16, 4
    h = max(p.shape[0] for _, p in panels)
    width = sum(p.shape[1] for _, p in panels) + gap * (len(panels) - 1)
    top = band if title is None else 2 * band
    canvas = Image.new("RGB", (width, h + top), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((2, 2), title, fill=(0, 0, 0), font=font)
    x = 0
    for caption, panel in panels:
        canvas.paste(Image.fromarray(to_uint8(panel)), (x, top))
        draw.text((x + 2, top - band + 2), caption, fill=(0, 0, 0), font=font)
        x += panel.shape[1] + gap
    return canvas


def stack_rows(rows):
    from PIL import Image

    width = max(r.width for r in rows)
    canvas = Image.new("RGB", (width, sum(r.height for r in rows)), (255, 255, 255))
    y = 0
    for r in rows:
        canvas.paste(r, (0, y))
        y += r.height
    return canvas


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    size = min(size, h, w)
    y, x = (h - size) // 2, (w - size) // 2
    return image[y : y + size, x : x + size]


def heldout_picture(cases: list[Case], renders: dict, methods: list[Method], out: Path) -> Path | None:
    """GT and every method on one held-out tile, one row per noise level."""
    if not renders:
        return None
    image, tile, _, cfa, _ = next(iter(renders))
    rows = []
    for noise in [n for n in NOISE_LEVELS if n in VISUAL_NOISE]:
        case = next((c for c in cases if (c.image, c.tile, c.noise, c.cfa) == (image, tile, noise, cfa)), None)
        if case is None:
            continue
        panels = [("ground truth", centre_crop(case.truth, VISUAL_CROP))]
        for method in methods:
            rgb = renders.get((image, tile, noise, cfa, method.name))
            if rgb is not None:
                panels.append((f"{method.name} {image_psnr(rgb, case.truth):.1f} dB", centre_crop(rgb, VISUAL_CROP)))
        rows.append(labelled_strip(panels, title=f"{image}, tile {tile}, {cfa}, noise {noise_text(noise)}"))
    if not rows:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    stack_rows(rows).save(out, optimize=True)
    return out


def real_file_panels(path: Path, methods: list[Method], crop: int) -> tuple[list[tuple[str, np.ndarray]], BayerFrame]:
    """LibRaw (own sRGB; and + our tone curve) and each profile on a centre crop of a real file."""
    # As `raw2rgb convert` decodes: the noise model comes from the whole file.
    decoded = decode(ConvertJob(Path(path), Path(path)), with_noise=any(m.reads_noise for m in methods))
    frame = decoded.frame
    h, w = frame.mosaic.shape
    size = min(crop, h, w) // 2 * 2
    y0, x0 = (h - size) // 4 * 2, (w - size) // 4 * 2  # even: the crop keeps the CFA phase
    panels = [
        ("LibRaw AHD (its sRGB)", classical.libraw_display(path, frame)[y0 : y0 + size, x0 : x0 + size]),
        ("LibRaw AHD + tone curve", classical.finish_rendering(
            classical.libraw_camera_rgb(path, frame, "AHD")[y0 : y0 + size, x0 : x0 + size], frame)),
    ]
    # Profiles see the crop plus a margin (≥ the engine's tile overlap), not the whole frame.
    margin = 64
    my0, mx0 = max(0, y0 - margin), max(0, x0 - margin)
    sub = replace(frame, mosaic=np.ascontiguousarray(frame.mosaic[my0 : y0 + size + margin, mx0 : x0 + size + margin]), flip=0)
    for method in methods:
        if method.kind == "profile":
            rgb = method.render(Path(path), sub, decoded.noise)
            panels.append((method.name, rgb[y0 - my0 : y0 - my0 + size, x0 - mx0 : x0 - mx0 + size]))
    return [(c, orient_hwc(p, frame.flip)) for c, p in panels], frame
