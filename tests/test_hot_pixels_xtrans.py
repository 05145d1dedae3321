"""Stuck sites of X-Trans mosaics: neighbourhoods from the 6×6 pattern, the Bayer tests' margins,
and the engine repairing them before an X-Trans profile."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raw2rgb_plugin.pipeline import hot_pixels, hot_pixels_xtrans
from raw2rgb_plugin.pipeline.cfa import cfa_indices, xtrans_pattern
from raw2rgb_plugin.pipeline.hot_pixels_xtrans import repair_xtrans_stuck_sites
from raw2rgb_plugin.pipeline.noise import NoiseModel

from test_hot_pixels import BASE_ISO, busy_texture, inject, noisy_mosaic, stuck_sites

#: the X-T3's phase, the X-T2's, and two others
PHASES = [(0, 0), (5, 0), (1, 4), (2, 3)]


def inner_sites(shape: tuple[int, int]) -> dict[tuple[int, int], float]:
    """test_hot_pixels' stuck sites, less those within 3 sites of the edge (left alone on X-Trans)."""
    h, w = shape
    edge = hot_pixels_xtrans._EDGE
    return {(y, x): v for (y, x), v in stuck_sites(shape).items() if edge <= y < h - edge and edge <= x < w - edge}


def test_neighbourhoods_come_from_the_pattern():
    tables = hot_pixels_xtrans._tables(xtrans_pattern())
    grid = cfa_indices(xtrans_pattern())
    for c, near in enumerate(tables["near"]):
        py, px = divmod(c, 6)
        colour = grid[py, px]
        assert all(grid[(py + dy) % 6, (px + dx) % 6] == colour for dy, dx in near)
        # green: 12 or 16 within 2 sites; red and blue: 11 within 3 (5 within 2)
        assert len(near) in ((12, 16) if colour == 1 else (11,))
        for members, weights in tables["ramps"][c]:
            # each ramp is an interpolation of s: exact on any linear gradient
            points = np.array([near[m] for m in members], dtype=float)
            assert np.allclose(np.asarray(weights) @ points, 0, atol=1e-9) and np.isclose(sum(weights), 1)
        assert len(tables["ramps"][c]) >= 8


@pytest.mark.parametrize("phase", PHASES)
def test_every_injected_stuck_site_is_replaced_near_the_truth_and_nothing_else(phase):
    cfa = xtrans_pattern(*phase)
    clean = noisy_mosaic(cfa, seed=sum(phase))
    sites = inner_sites(clean.shape)
    assert {cfa_indices(cfa)[y % 6, x % 6] for y, x in sites} == {0, 1, 2}
    stuck = inject(clean, sites)
    repaired = torch.from_numpy(stuck.copy())
    assert repair_xtrans_stuck_sites(repaired, cfa, BASE_ISO) == len(sites)
    where = tuple(np.array(list(sites)).T)
    assert np.abs(stuck[where] - clean[where]).min() > 0.05
    # measured: at most 0.017 off (within a few noise σ of the truth)
    assert np.abs(repaired.numpy()[where] - clean[where]).max() < 0.02
    elsewhere = np.ones(clean.shape, dtype=bool)
    elsewhere[where] = False
    assert np.array_equal(repaired.numpy()[elsewhere], stuck[elsewhere])


@pytest.mark.parametrize("noise", [BASE_ISO, NoiseModel.of(1.7e-3, 9.5e-6), None], ids=["iso100", "iso6400", "unknown"])
def test_a_clean_frame_and_fine_texture_have_no_stuck_sites(noise):
    for seed, phase in enumerate(PHASES):
        cfa = xtrans_pattern(*phase)
        frame = torch.from_numpy(noisy_mosaic(cfa, 160, 224, seed=seed, noise=noise or BASE_ISO))
        before = frame.clone()
        assert repair_xtrans_stuck_sites(frame, cfa, noise) == 0
        assert torch.equal(frame, before)
    if noise is BASE_ISO:  # fine grey texture under a tint (measured: 0 sites of 143 360)
        assert sum(repair_xtrans_stuck_sites(torch.from_numpy(busy_texture(xtrans_pattern(*p), s)),
                                             xtrans_pattern(*p), BASE_ISO) for s, p in enumerate(PHASES)) <= 2


def test_points_of_light_and_clusters_are_kept():
    cfa = xtrans_pattern(5, 0)
    scene = noisy_mosaic(cfa, 96, 96)
    y, x = np.mgrid[0:96, 0:96]
    for cy, cx, sigma, peak in ((30.5, 30.5, 0.7, 0.8), (60.2, 40.7, 0.8, 3.0), (20.0, 70.0, 0.7, 0.3),
                                (41.0, 41.0, 0.7, 0.8), (80.0, 20.0, 0.75, 2.0)):
        scene += peak * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2))
    scene[70, 70] = scene[70, 71] = 1.0  # two sites side by side: a cluster
    scene = np.clip(scene, 0, 1).astype(np.float32)
    assert repair_xtrans_stuck_sites(torch.from_numpy(scene.copy()), cfa, BASE_ISO) == 0
    scene[50, 10] = 1.0  # one lone hot site: found (so the line above can fail)
    assert repair_xtrans_stuck_sites(torch.from_numpy(scene), cfa, BASE_ISO) == 1


def test_the_candidate_pass_only_saves_time():
    """The whole-frame pass is test 1 on packed planes: judging every site away from the edge on
    windows finds the same sites."""
    cfa = xtrans_pattern(1, 4)
    frame = torch.from_numpy(inject(noisy_mosaic(cfa, 64, 80, seed=3), inner_sites((64, 80))))
    a, b = BASE_ISO.shot, BASE_ISO.read
    tables = hot_pixels_xtrans._tables(cfa)
    padded = hot_pixels_xtrans._period_padded(frame)
    ys, xs = hot_pixels_xtrans._candidates(padded, (64, 80), tables, a, b)
    edge = hot_pixels_xtrans._EDGE
    every = torch.nonzero(torch.ones(64 - 2 * edge, 80 - 2 * edge, dtype=torch.bool), as_tuple=True)
    every = (every[0] + edge, every[1] + edge)

    def found(rows, cols) -> set:
        window = hot_pixels_xtrans._windows(padded, rows, cols)
        stuck, _ = hot_pixels_xtrans._judge(window, (rows % 6) * 6 + cols % 6, tables, a, b)
        return set(zip(rows[stuck].tolist(), cols[stuck].tolist()))

    assert len(ys) < frame.numel() // 4
    assert found(ys, xs) == found(*every) == set(inner_sites((64, 80)))


def test_frames_too_small_to_judge_are_left_alone():
    frame = torch.full((11, 40), 0.3)
    frame[5, 20] = 1.0
    assert repair_xtrans_stuck_sites(frame, xtrans_pattern(), BASE_ISO) == 0 and frame[5, 20] == 1.0


def test_each_test_is_needed_in_fine_texture(monkeypatch):
    """Measured finds in the four textures: 0; without test 2 (K_CD, K_REL) 26, without test 3
    (K_ALONE) 7, and without test 3 and test 1's ramp margin (K_RANGE) 16."""
    def finds(**switched_off: float) -> int:
        with monkeypatch.context() as patch:
            for name, value in switched_off.items():
                patch.setattr(hot_pixels, name, value)
            return sum(repair_xtrans_stuck_sites(torch.from_numpy(busy_texture(xtrans_pattern(*p), s)),
                                                 xtrans_pattern(*p), BASE_ISO) for s, p in enumerate(PHASES))

    assert finds(K_CD=0.0, K_REL=0.0) >= 10
    without_alone = finds(K_ALONE=0.0)
    assert without_alone >= 4
    assert finds(K_ALONE=0.0, K_RANGE=0.0) >= without_alone + 4
