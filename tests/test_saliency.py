import cv2
import numpy as np
import pytest
import torch

from raw2rgb_plugin.training.saliency import SaliencyError, builtin_saliency, saliency_source


def _object_on_clutter(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = np.full((120, 160, 3), 0.45, np.float32) + rng.normal(0, 0.02, (120, 160, 3)).astype(np.float32)
    mask = np.zeros((120, 160), np.uint8)
    cv2.circle(mask, (110, 45), 14, 1, -1)
    image[mask > 0] = (0.9, 0.15, 0.1)
    return np.clip(image, 0, 1), mask.astype(bool)


def test_builtin_saliency_finds_the_distinct_object():
    image, inside = _object_on_clutter()
    s = builtin_saliency(image)
    assert s.shape == image.shape[:2] and s.dtype == np.float32
    assert 0.0 <= s.min() and s.max() <= 1.0
    assert s[inside].mean() > 3 * s[~inside].mean()


def test_folder_maps_match_by_stem_and_are_resized(tmp_path):
    image, _ = _object_on_clutter()
    cv2.imwrite(str(tmp_path / "IMG_7.png"), np.tile(np.arange(40, dtype=np.uint16)[None] * 1000, (30, 1)))
    source = saliency_source(str(tmp_path))
    m = source.map_for(image, tmp_path.parent / "targets" / "img_7.jpg")
    assert m.shape == image.shape[:2]
    assert m[:, 0].max() < 0.05 and m[:, -1].min() > 0.95  # the left-to-right ramp survives the resize
    with pytest.raises(SaliencyError, match="no saliency map"):
        source.map_for(image, tmp_path / "other.jpg")


def test_torchscript_model_needs_explicit_trust(tmp_path):
    class Brightness(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=1, keepdim=True)

    path = tmp_path / "sal.pt"
    torch.jit.script(Brightness()).save(str(path))
    with pytest.raises(SaliencyError, match="--trust-torchscript"):
        saliency_source(f"torchscript:{path}")
    image, inside = _object_on_clutter()
    image[inside] = 1.0
    m = saliency_source(f"torchscript:{path}", trust_torchscript=True).map_for(image, None)
    assert m.shape == image.shape[:2]
    assert m[inside].mean() > 0.8 > m[~inside].mean()
