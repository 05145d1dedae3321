import numpy as np
import pytest
import torch

from raw2rgb_plugin.pipeline.mhc import demosaic, interpolate_missing_colours
from raw2rgb_plugin.pipeline.normalization import apply_color_normalization, levels_normalize
from raw2rgb_plugin.pipeline.orientation import orient
from raw2rgb_plugin.pipeline.packing import PhasePadding, pack_rggb, pad_mosaic, rggb_padding, rggb_samples, unpack_rggb
from raw2rgb_plugin.training.data.unprocess import mosaic_rgb as bayer_from_rgb

ORDERS = ["RGGB", "BGGR", "GRBG", "GBRG"]


@pytest.mark.parametrize("cfa", ORDERS)
@pytest.mark.parametrize("size", [(8, 12), (7, 12), (8, 11), (9, 13)])
def test_every_order_packs_to_rggb_with_the_right_colour_per_channel(cfa, size):
    h, w = size
    # Each colour gets a distinct constant so a wrong channel is impossible to miss.
    rgb = np.stack([np.full((h, w), v, np.float32) for v in (0.1, 0.5, 0.9)], axis=-1)
    mosaic = torch.from_numpy(bayer_from_rgb(rgb, cfa))
    padding = rggb_padding(cfa, h, w)
    padded = pad_mosaic(mosaic, padding)
    assert padded.shape[0] % 2 == 0 and padded.shape[1] % 2 == 0
    packed = pack_rggb(padded)
    assert torch.allclose(packed[0], torch.tensor(0.1))
    assert torch.allclose(packed[1], torch.tensor(0.5)) and torch.allclose(packed[2], torch.tensor(0.5))
    assert torch.allclose(packed[3], torch.tensor(0.9))
    # The crop gives back exactly the visible mosaic.
    assert torch.equal(padding.crop(unpack_rggb(packed)), mosaic)


def test_padding_is_on_the_side_of_the_red_site():
    assert rggb_padding("RGGB", 8, 8) == PhasePadding(0, 0, 0, 0)
    assert rggb_padding("BGGR", 8, 8) == PhasePadding(1, 1, 1, 1)
    assert rggb_padding("GRBG", 8, 8) == PhasePadding(0, 1, 0, 1)
    assert rggb_padding("GBRG", 7, 8) == PhasePadding(1, 0, 0, 0)
    assert rggb_padding("GBRG", 8, 9) == PhasePadding(1, 0, 1, 1)
    with pytest.raises(ValueError):
        rggb_padding("RGBG", 8, 8)


def test_levels_use_the_black_level_of_each_site_and_clip():
    mosaic = torch.tensor([[100, 300], [500, 5000]], dtype=torch.int32).repeat(2, 2)
    black = np.array([[100, 200], [300, 50]], np.float32)
    out = levels_normalize(mosaic, black, 1100.0)
    assert out[0, 0] == 0.0
    assert out[0, 1] == pytest.approx(100 / 900)
    assert out[1, 0] == pytest.approx(200 / 800)
    assert out[1, 1] == 1.0  # above white: clipped


def test_white_balance_and_matrix_modes():
    packed = torch.full((4, 2, 2), 0.2)
    gains = np.array([2.0, 1.0, 1.5], np.float32)
    wb = apply_color_normalization(packed.clone(), "wb", gains, np.eye(3))
    assert torch.allclose(wb[:, 0, 0], torch.tensor([0.4, 0.2, 0.2, 0.3]))
    swap = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], np.float32)  # a matrix that swaps R and B
    ccm = apply_color_normalization(packed.clone(), "wb+ccm", gains, swap)
    assert torch.allclose(ccm[:, 0, 0], torch.tensor([0.3, 0.2, 0.2, 0.4]))
    assert torch.equal(apply_color_normalization(packed.clone(), "raw", gains, swap), packed)
    # Clipped highlights stay neutral: ones through WB and an (rows sum to 1) matrix stay ones.
    m = np.array([[1.6, -0.5, -0.1], [-0.2, 1.4, -0.2], [0.0, -0.5, 1.5]], np.float32)
    assert torch.allclose(apply_color_normalization(torch.ones(4, 1, 1), "wb+ccm", gains, m), torch.ones(4, 1, 1))


@pytest.mark.parametrize("flip,expected", [(0, [[1, 2, 3], [4, 5, 6]]), (3, [[6, 5, 4], [3, 2, 1]]),
                                           (6, [[4, 1], [5, 2], [6, 3]]), (5, [[3, 6], [2, 5], [1, 4]])])
def test_orientation_matches_libraw_flip(flip, expected):
    image = torch.tensor([[1, 2, 3], [4, 5, 6]])
    assert orient(image, flip).tolist() == expected


def _ramp_rgb(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([0.1 + 0.01 * x + 0.004 * y, 0.3 + 0.006 * x - 0.003 * y, 0.2 - 0.002 * x + 0.008 * y], axis=-1)


def test_missing_colour_estimates_are_exact_on_linear_ramps_and_keep_each_sample():
    h, w = 16, 20
    rgb = _ramp_rgb(h, w)
    packed = pack_rggb(torch.from_numpy(bayer_from_rgb(rgb, "RGGB")))
    estimate = interpolate_missing_colours(packed)  # (4 sites, 3 colours, h/2, w/2)
    assert estimate.shape == (4, 3, h // 2, w // 2)
    expected = pack_rggb(torch.from_numpy(rgb).permute(2, 0, 1)).permute(1, 0, 2, 3)
    # Malvar–He–Cutler is bilinear plus a same-colour Laplacian: exact wherever the image is a
    # plane, i.e. everywhere except the two-pixel reflect-padded border.
    assert torch.allclose(estimate[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-5)
    for site, colour in enumerate((0, 1, 1, 2)):
        assert torch.equal(estimate[site, colour], packed[site])
    batched = interpolate_missing_colours(torch.stack([packed, packed * 0.5]))
    assert torch.allclose(batched[1], estimate * 0.5, atol=1e-6)


def test_linear_srgb_applies_each_sites_own_matrix_row():
    m = np.array([[1.6, -0.5, -0.1], [-0.2, 1.4, -0.2], [0.0, -0.5, 1.5]], np.float32)
    gains = np.array([2.0, 1.0, 1.5], np.float32)
    camera = np.array([0.15, 0.4, 0.2], np.float32)
    packed = pack_rggb(torch.from_numpy(bayer_from_rgb(np.broadcast_to(camera, (6, 8, 3)).copy(), "RGGB")))
    out = apply_color_normalization(packed, "linear-srgb", gains, m)
    linear = m @ (camera * gains)
    assert torch.allclose(out[:, 1, 1], torch.tensor(linear[[0, 1, 1, 2]]), atol=1e-6)
    # White stays white through WB-clipping and a matrix whose rows sum to 1, as with wb+ccm.
    assert torch.allclose(apply_color_normalization(torch.ones(4, 3, 3), "linear-srgb", gains, m), torch.ones(4, 3, 3))


def test_demosaic_places_each_site_estimate_on_its_pixel():
    rgb = _ramp_rgb(16, 24)
    packed = pack_rggb(torch.from_numpy(bayer_from_rgb(rgb, "RGGB")))
    full = demosaic(torch.stack([packed, packed]))
    assert full.shape == (2, 3, 16, 24)
    expected = torch.from_numpy(rgb).permute(2, 0, 1)
    assert torch.allclose(full[0, :, 2:-2, 2:-2], expected[:, 2:-2, 2:-2], atol=1e-5)


def test_rggb_samples_are_what_an_rggb_sensor_records_packed():
    rgb = torch.rand(2, 3, 6, 8)
    expected = torch.stack([pack_rggb(torch.from_numpy(bayer_from_rgb(im.permute(1, 2, 0).numpy(), "RGGB"))) for im in rgb])
    assert torch.equal(rggb_samples(rgb), expected)
