from dataclasses import replace

import numpy as np
import pytest

from raw2rgb_plugin.io.raw_file import decode_raw
from raw2rgb_plugin.pipeline.normalization import network_input
from raw2rgb_plugin.pipeline.packing import rggb_padding
from raw2rgb_plugin.training.data.unprocess import (
    BAYER_ORDERS,
    XYZ_TO_CAMERA_TABLE,
    inverse_tone_curve,
    protected_inverse_gains,
    random_params,
    scene_linear,
    write_synthetic_dng,
)


def _blocky_scene(cfa: str, height: int, width: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """An sRGB image constant on each 2×2 block of the engine's RGGB-phase grid.

    Then every packed pixel sees one colour, and the wb+ccm input must equal the scene's linear
    colour there: any error is the unprocessing's or the metadata path's, not demosaicking's.
    """
    p = rggb_padding(cfa, height, width)
    blocks = rng.uniform(0.05, 0.85, size=((height + p.top + p.bottom) // 2, (width + p.left + p.right) // 2, 3))
    grid = np.repeat(np.repeat(blocks, 2, axis=0), 2, axis=1)
    return grid[p.top : p.top + height, p.left : p.left + width], grid


@pytest.mark.parametrize("cfa", BAYER_ORDERS)
@pytest.mark.parametrize("noise", ["none", "low"])
def test_engine_decodes_a_synthetic_dng_back_to_the_linear_scene(tmp_path, cfa, noise):
    rng = np.random.default_rng(BAYER_ORDERS.index(cfa))
    srgb, grid = _blocky_scene(cfa, 48, 66, rng)
    params = random_params(rng, cfa_pattern=cfa, noise=False)
    if noise == "low":
        params = replace(params, shot_noise=1e-5, read_noise=1e-7)
    path = tmp_path / f"{cfa}.dng"
    write_synthetic_dng(srgb, path, rng, params=params)

    frame = decode_raw(path)
    assert frame.cfa_pattern == cfa
    assert frame.wb_source == "as-shot"
    np.testing.assert_allclose(frame.wb_gains_rgb, params.wb_gains_rgb, rtol=1e-4)
    assert frame.white_level == params.white_level
    np.testing.assert_allclose(frame.black_level_per_site, params.black_level)

    packed = network_input(frame, "wb+ccm").packed[0].numpy()
    linear = scene_linear(grid, params)
    expected = np.stack([linear[0::2, 0::2, 0], linear[0::2, 1::2, 1], linear[1::2, 0::2, 1], linear[1::2, 1::2, 2]])
    error = np.abs(packed - expected)[:, 1:-1, 1:-1]  # the reflect-padded border mixes blocks
    if noise == "none":
        assert error.max() < 2e-3  # quantisation and rational DNG tags only
    else:
        assert error.mean() < 0.01 and error.max() < 0.08


def test_random_cameras_follow_the_recipe():
    rng = np.random.default_rng(7)
    orders = set()
    for _ in range(40):
        p = random_params(rng)
        orders.add(p.cfa_pattern)
        assert 1.9 <= p.red_gain <= 2.4 and 1.5 <= p.blue_gain <= 1.9
        np.testing.assert_allclose(p.camera_from_srgb.sum(axis=1), 1.0, atol=1e-12)
        assert abs(sum(p.camera_mix.values()) - 1) < 1e-9 and set(p.camera_mix) <= set(XYZ_TO_CAMERA_TABLE)
        assert 1e-4 <= p.shot_noise <= 0.012 and p.read_noise > 0
        assert p.black_level < p.white_level == 2**p.bits - 1
    assert orders == set(BAYER_ORDERS)
    assert not any(random_params(rng, noise=False).shot_noise for _ in range(3))


def test_inverse_tone_curve_inverts_smoothstep():
    x = np.linspace(0, 1, 101)
    y = inverse_tone_curve(x)
    np.testing.assert_allclose(3 * y**2 - 2 * y**3, x, atol=1e-12)


def test_highlight_protection_keeps_white_white_and_dark_colours_exact():
    params = random_params(np.random.default_rng(3), noise=False)
    white = protected_inverse_gains(np.ones((1, 3)), params)
    np.testing.assert_allclose(white, 1.0)  # gains fade out: the camera's WB clips it back to white
    dark = np.array([[0.2, 0.3, 0.1]])
    np.testing.assert_allclose(protected_inverse_gains(dark, params), dark / params.wb_gains_rgb)


@pytest.mark.parametrize("cfa", ["RGGB", "GBRG"])
def test_linear_srgb_input_is_closer_to_the_scene_than_wb_ccm(tmp_path, cfa):
    """Why `linear-srgb` exists: on a textured scene its mosaic is much nearer the ideal one."""
    import torch

    from raw2rgb_plugin.pipeline.packing import pack_rggb, pad_mosaic
    from raw2rgb_plugin.training.data.unprocess import mosaic_rgb

    from scene_images import textured_scene

    rng = np.random.default_rng(11)
    srgb = textured_scene(96, 128, seed=3)
    params = random_params(rng, cfa_pattern=cfa, noise=False)
    path = tmp_path / "scene.dng"
    write_synthetic_dng(srgb, path, rng, params=params)
    frame = decode_raw(path)

    ideal_mosaic = mosaic_rgb(np.clip(scene_linear(srgb, params), 0.0, 1.0), cfa)
    padding = rggb_padding(cfa, *ideal_mosaic.shape)
    ideal = pack_rggb(pad_mosaic(torch.from_numpy(ideal_mosaic).float(), padding)).numpy()

    def psnr(mode: str) -> float:
        packed = network_input(frame, mode).packed[0].numpy()
        return float(10 * np.log10(1.0 / np.mean((packed - ideal)[:, 2:-2, 2:-2] ** 2)))

    assert psnr("linear-srgb") > psnr("wb+ccm") + 4.0
