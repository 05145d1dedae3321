"""Tiled inference equals whole-frame inference, on a real sensor mosaic."""

import numpy as np
import pytest
import torch
from PIL import Image

from raw2rgb_plugin.models.g1 import G1, G1_SPEC, PACKED_STRIDE as STRIDE, G1Config
from raw2rgb_plugin.pipeline.normalization import levels_normalize
from raw2rgb_plugin.pipeline.packing import pack_rggb, pad_mosaic, rggb_padding
from raw2rgb_plugin.runtime.runner import prepare_for_inference
from raw2rgb_plugin.runtime.tiling import DEFAULT_OVERLAP, pad_to_stride, run_tiled, tile_starts

# Stated tolerance, on the [0, 1] output scale, at the default overlap: a random-weight G1
# spreads influence over its whole (~90 packed px) receptive field, the worst case for seams.
MAX_ABS_TOLERANCE = 2e-3  # half an 8-bit code value
MEAN_ABS_TOLERANCE = 1e-4


@pytest.fixture(scope="module", params=["none", "mhc-srgb", "mhc-srgb-gated", "mhc-linear-gated", "lsq-srgb-gated"])
def lite_model(request):
    torch.manual_seed(0)
    model = G1(G1Config.for_variant("lite", residual_base=request.param))
    if request.param == "mhc-srgb":
        with torch.no_grad():
            model.residual_gain.fill_(1.0)  # as if trained: the network's part must not seam either
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(4, 4, 64, 64))
    return prepare_for_inference(model, G1_SPEC, torch.device("cpu"), torch.float32)


def real_packed_mosaic(shared_data):
    # bayer_small.png: 10-bit GRBG sensor data, black 25, white 1023 (data/README.md).
    mosaic = np.array(Image.open(shared_data / "sensor" / "bayer_small.png")).astype(np.int32)
    levelled = levels_normalize(torch.from_numpy(mosaic), np.full((2, 2), 25.0), 1023.0)
    padding = rggb_padding("GRBG", *levelled.shape)
    return pack_rggb(pad_mosaic(levelled, padding))[None]


@torch.no_grad()
@pytest.mark.parametrize("tile,overlap", [(128, DEFAULT_OVERLAP), (96, DEFAULT_OVERLAP), (136, 96), (160, DEFAULT_OVERLAP)])
def test_tiled_matches_whole_frame_on_a_real_mosaic(shared_data, lite_model, tile, overlap):
    packed = real_packed_mosaic(shared_data)
    whole = run_tiled(lite_model, packed, stride=STRIDE, tile=0)
    tiled = run_tiled(lite_model, packed, stride=STRIDE, tile=tile, overlap=overlap)
    assert tiled.shape == whole.shape == (1, 3, packed.shape[-2] * 2, packed.shape[-1] * 2)
    diff = (tiled - whole).abs()
    assert float(diff.max()) < MAX_ABS_TOLERANCE
    assert float(diff.mean()) < MEAN_ABS_TOLERANCE


@torch.no_grad()
def test_tiles_without_overlap_show_seams(shared_data, lite_model):
    # The counter-test: if this ever passed the tolerance, the test above would prove nothing.
    packed = real_packed_mosaic(shared_data)
    whole = run_tiled(lite_model, packed, stride=STRIDE, tile=0)
    tiled = run_tiled(lite_model, packed, stride=STRIDE, tile=64, overlap=0)
    assert float((tiled - whole).abs().max()) > MAX_ABS_TOLERANCE


def test_tile_starts_are_stride_aligned_and_cover_everything():
    for length in (64, 72, 200, 1000):
        for tile, overlap in ((64, 16), (128, 64), (96, 40)):
            if tile > length:
                continue
            starts = tile_starts(length, tile, overlap, STRIDE)
            assert all(s % 8 == 0 for s in starts) and starts[0] == 0 and starts[-1] + tile == length
            assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


def test_odd_sizes_are_padded_to_the_stride_and_cropped_back():
    packed = torch.rand(1, 4, 13, 21)
    padded, size = pad_to_stride(packed, STRIDE)
    assert padded.shape[-2:] == (16, 24) and size == (13, 21)
    out = run_tiled(lambda x: torch.nn.functional.interpolate(x[:, :3], scale_factor=2), packed, stride=STRIDE)
    assert out.shape == (1, 3, 26, 42)


@torch.no_grad()
def test_the_optimised_runtime_tiled_matches_whole_frame_on_a_real_mosaic(shared_data):
    torch.manual_seed(0)
    model = G1(G1Config.for_variant("lite", residual_base="mhc-srgb-gated", spectral_norm=False))
    model.train()
    for _ in range(3):
        model(torch.rand(4, 4, 64, 64))
    fast = prepare_for_inference(model.eval(), G1_SPEC, torch.device("cpu"), torch.float32, optimize=True)
    packed = real_packed_mosaic(shared_data)
    whole = run_tiled(fast, packed, stride=STRIDE, tile=0)
    tiled = run_tiled(fast, packed, stride=STRIDE, tile=(136, 96))
    diff = (tiled - whole).abs()
    assert float(diff.max()) < MAX_ABS_TOLERANCE
    assert float(diff.mean()) < MEAN_ABS_TOLERANCE
