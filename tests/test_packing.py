import numpy as np
import pytest
import torch

from raw2rgb_plugin.normalization import apply_color_normalization, levels_normalize, orient
from raw2rgb_plugin.packing import PhasePadding, pack_rggb, pad_mosaic, rggb_padding, unpack_rggb

from raw2rgb_plugin.unprocess import mosaic_rgb as bayer_from_rgb

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
