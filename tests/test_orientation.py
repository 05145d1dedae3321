"""Orientation: the eight EXIF orientations match PIL, and the numpy and torch forms agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from raw2rgb_plugin.pipeline.orientation import EXIF_TO_FLIP, exif_orient_hwc, orient, orient_hwc, unorient_hwc

IMAGE = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pil(orientation):
    pil = Image.fromarray(IMAGE)
    exif = pil.getexif()
    exif[274] = orientation
    pil.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(pil))
    assert np.array_equal(exif_orient_hwc(IMAGE, orientation), expected)


@pytest.mark.parametrize("flip", sorted(set(EXIF_TO_FLIP.values())))
def test_numpy_and_torch_agree_and_invert(flip):
    chw = torch.from_numpy(IMAGE).permute(2, 0, 1)
    assert np.array_equal(orient(chw, flip).permute(1, 2, 0).numpy(), orient_hwc(IMAGE, flip))
    assert np.array_equal(unorient_hwc(orient_hwc(IMAGE, flip), flip), IMAGE)
