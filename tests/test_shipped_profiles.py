"""The profiles shipped in the package: loadable, documented, and real converters (not random)."""

from __future__ import annotations

import numpy as np
import pytest
import rawpy

from raw2rgb_plugin.engine.converter import Converter
from raw2rgb_plugin.io.raw_file import decode_raw
from raw2rgb_plugin.profiles.store import SHIPPED_PROFILE_DIR, load_profile

SHIPPED = sorted(SHIPPED_PROFILE_DIR.glob("*.safetensors"))


def test_a_default_profile_ships():
    assert "default-lite" in {p.stem for p in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_profile_has_provenance_and_a_model_card(path):
    profile = load_profile(path)
    training = profile.metadata["training"]
    assert training["steps"] > 0 and training["command_line"] and training["validation"]["psnr"] > 0
    assert training["dataset"]["manifest"]["kind"] == "synthetic"
    assert profile.metadata["input_normalization"] in ("wb+ccm", "linear-srgb")  # one profile for every camera
    assert path.with_suffix(".md").is_file(), "each shipped profile has a model card beside it"


def test_default_lite_renders_the_example_like_a_raw_converter(repo_root):
    """A random-weight network gives ~10 dB against a classical rendering; a trained one > 20 dB."""
    example = repo_root / "examples" / "astronaut.dng"
    ours = Converter(load_profile("default-lite"), device="cpu").render(decode_raw(example)).astype(np.float64)
    with rawpy.imread(str(example)) as raw:
        classical = raw.postprocess(use_camera_wb=True, output_bps=16, no_auto_bright=True).astype(np.float64)
    assert ours.shape == classical.shape == (512, 512, 3)
    mse = np.mean((ours / 65535 - classical / 65535) ** 2)
    assert 10 * np.log10(1 / mse) > 20
