"""The X-Trans G1: its block's bounds, its output at full resolution through pixel_shuffle(6), and
tiles equal to its whole frame (the rewrite's equality with the eager model: tests/test_runtime.py)."""

from __future__ import annotations

import pytest
import torch

from raw2rgb_plugin.models.blocks import check_architecture_block
from raw2rgb_plugin.models.g1 import G1, G1_SPEC, PACKED_STRIDE, G1Config, g1_from_block, g1_to_block
from raw2rgb_plugin.pipeline.metrics import image_psnr
from raw2rgb_plugin.runtime.runner import TorchRunner
from raw2rgb_plugin.runtime.tiling import run_tiled

CPU = torch.device("cpu")


def xtrans_g1(seed: int = 0, **overrides) -> G1:
    torch.manual_seed(seed)
    config = G1Config.for_variant("lite", spectral_norm=False, period=6, in_channels=36, **overrides)
    model = G1(config)
    model.train()
    with torch.no_grad():  # non-trivial BatchNorm statistics, as a trained profile has
        for _ in range(3):
            model(torch.rand(2, 36 + config.noise_channels, 16, 16))
    return model.eval()


def test_an_xtrans_block_is_bounded_round_trips_and_leaves_bayer_blocks_alone():
    model = xtrans_g1(residual_base="xtrans-linear-gated", noise_channels=36)
    block = {"name": "g1", **g1_to_block(model)}
    assert block["period"] == 6 and block["in_channels"] == 36 and block["noise_channels"] == 36
    check_architecture_block(block)
    rebuilt = g1_from_block(block)
    assert rebuilt.config == G1Config(**{**model.config.to_dict(), "spectral_norm": False})
    assert rebuilt.d4.conv.out_channels == 3 * 36 + 36
    assert "period" not in g1_to_block(G1(G1Config.for_variant("lite", spectral_norm=False)))
    for bad, reason in (({"period": 4}, "period"), ({"period": 6, "noise_channels": 37}, "noise_channels"),
                        ({"period": 6, "residual_base": "mhc-srgb-gated"}, "period-6"),
                        ({"residual_base": "xtrans-linear-gated"}, "period-2"),
                        ({"period": 6, "in_channels": 4, "residual_base": "xtrans-srgb-gated"}, "input channels"),
                        ({"noise_channels": 36}, "noise_channels")):
        with pytest.raises(ValueError, match=reason):
            check_architecture_block({"name": "g1", "width": 16, **bad})
    with pytest.raises(ValueError, match="does not render"):
        G1(G1Config(period=6, in_channels=4, residual_base="xtrans-linear-gated"))


@pytest.mark.parametrize("base", ["none", "xtrans-linear-gated", "xtrans-srgb-gated"])
def test_an_xtrans_g1_gives_full_resolution_rgb(base):
    model = xtrans_g1(residual_base=base, noise_channels=36 if base != "none" else 0)
    x = torch.rand(1, 36 + model.config.noise_channels, 16, 24)
    with torch.inference_mode():
        rgb = model(x)
    assert rgb.shape == (1, 3, 96, 144) and 0 <= float(rgb.min()) and float(rgb.max()) <= 1


def test_tiles_of_an_xtrans_g1_equal_its_whole_frame(one_torch_thread):
    model = xtrans_g1(residual_base="xtrans-linear-gated", noise_channels=36)
    x = torch.rand(1, 72, 100, 92, generator=torch.Generator().manual_seed(5))
    whole_runner = TorchRunner(model, G1_SPEC, device=CPU, dtype=torch.float32, optimize=True, tile=0)
    assert whole_runner.scale == 6
    budget = whole_runner.activation_bytes(104 * 96) // 2
    runner = TorchRunner(model, G1_SPEC, device=CPU, dtype=torch.float32, optimize=True, memory_budget=budget,
                         overlap=24)
    tile = runner.tile_for(100, 92)
    assert isinstance(tile, tuple) and tile[0] * tile[1] < 104 * 96
    whole, tiled = whole_runner.run(x), runner.run(x)
    assert whole.shape == tiled.shape == (1, 3, 600, 552)
    assert image_psnr(tiled, whole) >= 50.0
    # the eager model tiled by run_tiled at the same scale, too
    eager = G1_SPEC.prepare_for_inference(xtrans_g1(residual_base="none"))
    with torch.inference_mode():
        a = run_tiled(eager, x[:, :36], stride=PACKED_STRIDE, tile=0, scale=6)
        b = run_tiled(eager, x[:, :36], stride=PACKED_STRIDE, tile=(64, 56), overlap=24, scale=6)
    assert a.shape == (1, 3, 600, 552) and image_psnr(b, a) >= 50.0
