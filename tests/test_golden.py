"""Golden outputs: the shipped default profile renders three files as it always has, on any CPU.

The references (`tests/golden/default-lite.npz`) are 16 × 16 block sums of the whole `convert`
path's TIFF, compared within bounds measured across kernels and thread counts
(`tests/golden_outputs.py` says how). A refactor that keeps behaviour stays within them; a change
of numerics on purpose (a new runtime, a new profile) stores new references with
`python tools/golden_outputs.py --write` and says why in its commit.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from golden_outputs import MIN_BF16_PSNR, ROOT, compare, golden_inputs, load_references, render

REFERENCES = load_references()
ASTRONAUT = golden_inputs(None)["astronaut.dng"]


def _inputs():
    shared = ROOT.parent / "shared" / "data"
    return golden_inputs(shared if shared.is_dir() else None)


def _input(name: str):
    inputs = _inputs()
    if name not in inputs:
        pytest.skip("../shared/data is absent")
    return inputs[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_shipped_profile_output_is_unchanged(name, tmp_path):
    comparison = compare(render(_input(name), tmp_path), REFERENCES[name])
    assert comparison.matches, f"{name}: {comparison}"


@pytest.mark.slow
def test_bf16_output_stays_near_the_fp32_reference(tmp_path):
    comparison = compare(render(ASTRONAUT, tmp_path, bf16=True), REFERENCES["astronaut.dng"])
    assert comparison.shape_matches and comparison.block_psnr >= MIN_BF16_PSNR, str(comparison)


@pytest.mark.slow
def test_golden_outputs_hold_under_the_generic_kernels():
    """Another CPU's rounding, reproduced on this one: ATen's generic (non-vector) kernels round
    some fp32 results the other way, as an Intel Xeon's do against an AMD EPYC's. A comparison
    that pins bits fails here on any machine, so one cannot slip back in unnoticed."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "golden_outputs.py")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": matches:") == len(_inputs()), done.stdout


# ------------------------------------------------------------------------------------------------
# the comparison still catches a real change of behaviour


def _nudged_profile():
    from raw2rgb_plugin.profiles.store import load_profile

    profile = load_profile("default-lite")
    with torch.no_grad():
        profile.model.e1.conv.weight[0, 0, 0, 0] *= 1.01  # one weight of 1.5 million, by 1 %
    return profile


def _tone_curve_in_its_last_digit(monkeypatch):
    """3x² − 2x³ as 3x² − 2.0001x³, in the eager model and in the optimised runtime's own copy."""
    import raw2rgb_plugin.models.g1_inference as g1_inference
    import raw2rgb_plugin.pipeline.classical as classical

    def in_place(x: torch.Tensor) -> torch.Tensor:
        slope = (x * 2.0001).neg_().add_(3.0)
        return x.mul_(x).mul_(slope)

    monkeypatch.setattr(classical, "tone_curve", lambda x: x * x * (3.0 - 2.0001 * x))
    monkeypatch.setattr(g1_inference, "_tone_curve_", in_place)


def _one_pixel_off(monkeypatch):
    import raw2rgb_plugin.pipeline.normalization as normalization

    orient = normalization.orient
    monkeypatch.setattr(normalization, "orient", lambda image, flip: torch.roll(orient(image, flip), 1, dims=-1))


@pytest.mark.slow
@pytest.mark.parametrize("change", ["one weight nudged", "tone curve", "one pixel off"])
def test_the_golden_comparison_fails_on_a_real_change(change, tmp_path, monkeypatch):
    profile = _nudged_profile() if change == "one weight nudged" else None
    if change == "tone curve":
        _tone_curve_in_its_last_digit(monkeypatch)
    if change == "one pixel off":
        _one_pixel_off(monkeypatch)
    comparison = compare(render(ASTRONAUT, tmp_path, profile=profile), REFERENCES["astronaut.dng"])
    assert comparison.shape_matches and not comparison.matches, str(comparison)


@pytest.fixture(scope="module")
def astronaut_pixels(tmp_path_factory) -> np.ndarray:
    return render(ASTRONAUT, tmp_path_factory.mktemp("golden"))


@pytest.mark.slow
def test_the_golden_comparison_fails_on_one_value_off_and_on_another_shape(astronaut_pixels):
    reference = REFERENCES["astronaut.dng"]
    assert compare(astronaut_pixels, reference).matches
    off = astronaut_pixels.copy()
    off[200, 300, 1] = off[200, 300, 1] + 32 if off[200, 300, 1] < 32768 else off[200, 300, 1] - 32
    assert not compare(off, reference).matches
    assert not compare(astronaut_pixels[:, :-1], reference).matches
