"""A profile's look table (tone curves + 3D LUT after G1): one torch implementation, the same as
learn's numpy fit, stored in the profile, bounded, applied by the engine to finished images only."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from raw2rgb_plugin.engine.converter import Converter
from raw2rgb_plugin.errors import ProfileError, Raw2RgbError
from raw2rgb_plugin.io.dng_write import write_bayer_dng
from raw2rgb_plugin.io.raw_file import decode_raw
from raw2rgb_plugin.pipeline.look import Look, apply_look, check_look
from raw2rgb_plugin.profiles.catalog import METADATA_KEY
from raw2rgb_plugin.profiles.store import load_profile, save_profile
from raw2rgb_plugin.training.learn.lut import fit_curve_lut

from helpers import make_tiny_profile, smooth_scene


def fitted_look(seed: int = 0) -> tuple[Look, object]:
    """A look fitted by learn's own least squares on a curve + cross-channel colour change."""
    rng = np.random.default_rng(seed)
    source = rng.random((40_000, 3))
    target = np.clip(source**0.8 * [1.05, 1.0, 0.9] + 0.05 * np.sin(6 * source[:, [1, 2, 0]]), 0, 1)
    fit = fit_curve_lut(source, target)
    return Look(torch.from_numpy(fit.curves).float(), torch.from_numpy(fit.lut).float()), fit


def identity_look(knots: int = 33, size: int = 17) -> Look:
    axis = torch.linspace(0, 1, size)
    lut = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)
    return Look(torch.linspace(0, 1, knots).repeat(3, 1), lut)


def test_torch_look_is_learns_numpy_curve_and_lut():
    look, fit = fitted_look()
    image = np.random.default_rng(1).random((2, 40, 56, 3)).astype(np.float32)
    ours = apply_look(torch.from_numpy(image).permute(0, 3, 1, 2), look).permute(0, 2, 3, 1).numpy()
    assert np.abs(fit.apply(image) - ours).max() < 1e-6
    assert np.abs(ours - image).mean() > 0.02  # the look does change colours


def test_identity_look_changes_nothing_and_gradients_reach_rgb_and_table():
    rgb = torch.rand(1, 3, 24, 24, requires_grad=True)
    look = identity_look()
    look.lut.requires_grad_(True)
    out = apply_look(rgb, look)
    assert torch.allclose(out, rgb, atol=1e-6)
    out.square().sum().backward()
    assert rgb.grad is not None and look.lut.grad is not None and float(look.lut.grad.abs().sum()) > 0


@pytest.mark.parametrize(("curves", "lut", "words"), [
    (torch.zeros(3, 1), torch.zeros(17, 17, 17, 3), "look curves"),
    (torch.zeros(3, 33), torch.zeros(66, 66, 66, 3), "look LUT of shape"),
    (torch.zeros(3, 33), torch.zeros(17, 17, 9, 3), "look LUT of shape"),
    (torch.full((3, 33), float("nan")), torch.zeros(17, 17, 17, 3), "NaN"),
    (torch.zeros(3, 33), torch.full((17, 17, 17, 3), 5.0), "outside"),
])
def test_bad_look_tables_are_named(curves, lut, words):
    assert words in check_look(curves, lut)


@pytest.fixture()
def looked_profile(tmp_path):
    plain = load_profile(make_tiny_profile(tmp_path / "plain.safetensors", input_normalization="linear-srgb"))
    look, _ = fitted_look()
    path = save_profile(tmp_path / "looked.safetensors", plain.model, dict(plain.metadata, name="looked"), look=look)
    return plain, path, look


def test_profile_keeps_its_look_and_the_engine_applies_it_after_the_network(tmp_path, looked_profile):
    plain, path, look = looked_profile
    loaded = load_profile(path)
    assert loaded.metadata["look"] == {"curve_knots": 33, "lut_size": 17}
    assert torch.equal(loaded.look.lut, look.lut) and torch.equal(loaded.look.curves, look.curves)
    mosaic = (64 + 3000 * smooth_scene(64, 96)[..., 1]).astype(np.uint16)
    write_bayer_dng(tmp_path / "f.dng", mosaic, "RGGB", black_level=64, white_level=4095, color_matrix1=None,
                    as_shot_neutral=None)
    frame = decode_raw(tmp_path / "f.dng")
    without = Converter(plain, device="cpu").render(frame).astype(np.float32) / 65535
    with_look = Converter(loaded, device="cpu").render(frame).astype(np.float32) / 65535
    expected = apply_look(torch.from_numpy(without).permute(2, 0, 1)[None], look)[0].permute(1, 2, 0).numpy()
    assert np.abs(with_look - expected).max() < 2 / 65535  # one quantisation step, twice
    assert np.abs(with_look - without).mean() > 0.01


def test_a_look_is_refused_for_dng_output_in_one_line(looked_profile):
    _, path, _ = looked_profile
    with pytest.raises(Raw2RgbError, match="carries a look table"):
        Converter(load_profile(path), device="cpu", output_format="dng")


def _with_metadata(data: bytes, change) -> bytes:
    """The same safetensors bytes with `change(meta)` applied to the raw2rgb metadata (tensor
    offsets are relative to the data, so the header may change size)."""
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    meta = json.loads(header["__metadata__"][METADATA_KEY])
    change(meta)
    header["__metadata__"][METADATA_KEY] = json.dumps(meta)
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data[8 + size:]


def test_a_tampered_look_is_refused_on_load(tmp_path, looked_profile):
    _, path, _ = looked_profile
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(_with_metadata(path.read_bytes(), lambda meta: meta["look"].update(lut_size=9)))
    with pytest.raises(ProfileError, match="metadata says otherwise"):
        load_profile(bad)
    bad.write_bytes(_with_metadata(path.read_bytes(), lambda meta: meta["look"].update(lut_size=1000)))
    with pytest.raises(ProfileError, match="look table outside the bounds"):  # before any tensor is read
        load_profile(bad)
    bad.write_bytes(_with_metadata(path.read_bytes(), lambda meta: meta.pop("look")))
    with pytest.raises(ProfileError, match="look table is incomplete"):
        load_profile(bad)


def test_profiles_show_lists_the_look(looked_profile):
    _, path, _ = looked_profile
    shown = subprocess.run([sys.executable, "-m", "raw2rgb_cli.main", "profiles", "show", str(path)],
                           capture_output=True, text=True, check=True).stdout
    assert "look table: tone curves (33 knots) + 17³ 3D LUT" in shown
