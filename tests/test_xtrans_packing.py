"""X-Trans packing at the canonical phase (every phase, odd sizes), the period-shift padding that
keeps colours, the crop back to the frame, and the fixed X-Trans demosaic on the packed grid."""

from __future__ import annotations

import pytest
import torch

from raw2rgb_plugin.pipeline.cfa import XTRANS, cfa_indices, xtrans_pattern
from raw2rgb_plugin.pipeline.xtrans_demosaic import xtrans_linear_rendering
from raw2rgb_plugin.pipeline.xtrans_packing import (
    pack_xtrans,
    pack_xtrans_frame,
    pad_xtrans,
    unpack_xtrans,
    xtrans_padding,
)

PHASES = [(top, left) for top in range(6) for left in range(6)]


def colour_map(pattern: str, height: int, width: int) -> torch.Tensor:
    """(H, W) colour index of every site of a frame whose pattern (at (0, 0)) is `pattern`."""
    return torch.from_numpy(cfa_indices(pattern)).repeat(height // 6 + 1, width // 6 + 1)[:height, :width]


@pytest.mark.parametrize("phase", PHASES, ids=lambda p: f"{p[0]},{p[1]}")
def test_every_phase_packs_at_the_canonical_phase_and_crops_back(phase):
    pattern = xtrans_pattern(*phase)
    for height, width in ((37, 53), (48, 60), (13, 6)):
        mosaic = torch.rand(height, width, generator=torch.Generator().manual_seed(height))
        packed, padding = pack_xtrans_frame(mosaic, pattern)
        assert packed.shape == (36, -(-(height + padding.top) // 6), -(-(width + padding.left) // 6))
        # the inverse geometry: unpack, crop → the frame, pixel for pixel
        assert torch.equal(padding.crop(unpack_xtrans(packed)), mosaic)
        # colours at their sites: every padded site holds a sample of its canonical colour
        colours = colour_map(pattern, height, width).float()
        padded_colours = pad_xtrans(colours, padding)
        assert torch.equal(padded_colours, colour_map(XTRANS, *padded_colours.shape).float())
        # channel c of the packed grid is the canonical site c, its colour everywhere
        packed_colours = pack_xtrans(padded_colours)
        assert torch.equal(packed_colours, torch.from_numpy(cfa_indices(XTRANS)).float().reshape(36, 1, 1)
                           .expand_as(packed_colours))


def test_padding_takes_the_site_one_period_inside_and_refuses_what_it_cannot_pad():
    mosaic = torch.arange(12 * 12, dtype=torch.float32).reshape(12, 12)
    padding = xtrans_padding(xtrans_pattern(2, 5), 12, 12)
    assert (padding.top, padding.left, padding.bottom, padding.right) == (2, 5, 4, 1)
    padded = pad_xtrans(mosaic, padding)
    assert torch.equal(padded[0, 5:-1], mosaic[4]) and torch.equal(padded[-1, 5:-1], mosaic[9])
    assert torch.equal(padded[2:-4, 0], mosaic[:, 1]) and torch.equal(padded[2:-4, -1], mosaic[:, 6])
    assert pack_xtrans(torch.zeros(2, 12, 18)).shape == (2, 36, 2, 3)
    with pytest.raises(ValueError, match="not the X-Trans layout"):
        xtrans_padding("G" * 36, 12, 12)
    with pytest.raises(ValueError, match="at least 6×6"):
        xtrans_padding(XTRANS, 5, 12)


def test_the_classical_xtrans_demosaic_is_exact_on_flat_colour_and_keeps_samples():
    rgb = torch.tensor([0.2, 0.5, 0.8])
    mosaic = rgb[colour_map(XTRANS, 48, 48)]
    out = xtrans_linear_rendering(pack_xtrans(mosaic)[None])
    assert out.shape == (1, 3, 48, 48) and float((out - rgb[:, None, None]).abs().max()) < 1e-6
    noise = torch.rand(48, 48, generator=torch.Generator().manual_seed(1))
    out = xtrans_linear_rendering(pack_xtrans(noise)[None])[0]
    own = out.gather(0, colour_map(XTRANS, 48, 48)[None])[0]
    assert torch.equal(own, noise)  # each site keeps its own sample
