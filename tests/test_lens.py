"""Lens corrections (`convert --lens`): lensfun's lookup, its maps as we evaluate them, and whole
conversions of frames made through lensfun's own model of a kit zoom (tests/lens_frames.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch

from raw2rgb_plugin.io.exif_read import SUBJECT_DISTANCE_INFINITY, PhotoMetadata
from raw2rgb_plugin.io.lens import INFINITY_METRES, find_lens_correction
from raw2rgb_plugin.pipeline import optics

import lens_frames as lf

HEIGHT, WIDTH = 960, 1440  # 3:2 as the camera's sensor (lensfun's coordinates follow the aspect)


def kit_zoom():
    return find_lens_correction(lf.metadata()).correction


# --- lookup ---------------------------------------------------------------------------------


def test_the_kit_zoom_is_found_with_what_it_corrects():
    found = find_lens_correction(lf.metadata())
    assert found.reason is None
    c = found.correction
    assert (c.camera, c.lens) == ("Canon EOS 550D", "Canon EF-S 18-55mm f/3.5-5.6 IS")
    assert c.corrects == ("distortion", "tca", "vignetting")
    assert (c.focal_length, c.aperture, c.distance) == (18.0, 3.5, INFINITY_METRES)
    assert json.dumps(c.summary())  # JSON-able for --json


@pytest.mark.parametrize(("change", "reason"), [
    ({"lens_model": None}, "names no lens"),
    ({"lens_model": "Nonexistent 12-34mm"}, "no match"),
    ({"focal_length": Fraction(200)}, "not the file's 200 mm"),
    ({"focal_length": None}, "no focal length"),
    ({"make": None}, "no camera"),
])
def test_no_usable_match_is_a_reason_not_an_error(change, reason):
    fields = {**lf.metadata().__dict__, **change}
    found = find_lens_correction(PhotoMetadata(**fields))
    assert found.correction is None and reason in found.reason


@pytest.mark.parametrize(("distance", "expected"), [(Fraction(5, 2), 2.5), (None, INFINITY_METRES),
                                                     (SUBJECT_DISTANCE_INFINITY, INFINITY_METRES)])
def test_the_focus_distance_comes_from_the_file(distance, expected):
    fields = {**lf.metadata().__dict__, "subject_distance": distance}
    assert find_lens_correction(PhotoMetadata(**fields)).correction.distance == expected


def test_without_an_aperture_vignetting_is_left_alone():
    fields = {**lf.metadata().__dict__, "f_number": None}
    assert find_lens_correction(PhotoMetadata(**fields)).correction.corrects == ("distortion", "tca")


_USER_DB = """<lensdatabase version="1">
 <camera><maker>Testmaker</maker><model>Testcam 1</model><mount>Testmount</mount><cropfactor>1.5</cropfactor></camera>
 <lens><maker>Testmaker</maker><model>Testlens 20mm f/2</model><mount>Testmount</mount><cropfactor>1.5</cropfactor>
  <calibration><distortion model="ptlens" focal="20" a="0" b="-0.05" c="0"/></calibration></lens>
</lensdatabase>"""


def test_a_database_folder_named_in_the_environment_is_used(tmp_path, monkeypatch):
    (tmp_path / "mine.xml").write_text(_USER_DB)
    monkeypatch.setenv("RAW2RGB_LENSFUN_DB", str(tmp_path))
    metadata = PhotoMetadata(make="Testmaker", model="Testcam 1", lens_model="Testlens 20mm f/2",
                             focal_length=Fraction(20), f_number=Fraction(4))
    found = find_lens_correction(metadata)
    assert found.correction.database == str(tmp_path) and found.correction.corrects == ("distortion",)
    assert find_lens_correction(lf.metadata()).correction is None  # only that database is asked


# --- our evaluation of lensfun's maps --------------------------------------------------------


def test_vignetting_gain_matches_lensfuns_full_resolution_map():
    lens = kit_zoom()
    gain = optics.vignetting_gain(lens, HEIGHT, WIDTH).numpy()
    full = np.ones((HEIGHT, WIDTH, 3), np.float32)
    lens.modifier(WIDTH, HEIGHT, flags=optics._VIGNETTING).apply_color_modification(full)
    assert full[..., 1].max() > 1.5  # a real fall-off to undo at f/3.5
    assert np.abs(gain / full[..., 1] - 1).max() < 1e-6


def test_geometry_grid_is_within_a_tenth_of_a_pixel_of_lensfuns():
    lens = kit_zoom()
    flags = optics.geometry_flags(lens)
    exact = lens.modifier(WIDTH, HEIGHT, flags=flags).apply_subpixel_geometry_distortion()  # (H, W, 3, 2)
    lattice = optics._along_rows(optics._to_grid_units(optics.coarse_coordinates(lens, HEIGHT, WIDTH, flags),
                                                       HEIGHT, WIDTH), WIDTH)
    top, rows = 200, optics.STRIP_ROWS
    grid = optics._strip_grid(lattice, top, rows)  # (3, rows, W, 2) in [-1, 1]
    pixels = (grid + 1) / torch.tensor([2 / (WIDTH - 1), 2 / (HEIGHT - 1)])
    assert np.abs(pixels.permute(1, 2, 0, 3).numpy() - exact[top:top + rows]).max() < 0.1


def test_geometry_correction_inverts_lensfuns_own_lens_model():
    scene = np.random.default_rng(0).random((HEIGHT, WIDTH, 3)).astype(np.float32)
    scene = cv2.GaussianBlur(scene, (0, 0), 2.0)  # band-limited: resampling is then near exact
    seen = lf.through_lens(scene, vignetting=False)
    corrected = optics.correct_geometry(torch.from_numpy(seen).permute(2, 0, 1)[None], kit_zoom())[0].permute(1, 2, 0)
    inner = (slice(60, -60), slice(90, -90))  # lensfun's autoscale leaves the edges to extrapolation
    before = np.abs(seen - scene)[inner].mean()
    after = np.abs(corrected.numpy() - scene)[inner].mean()
    assert after < before / 10, (before, after)


# --- whole conversions ----------------------------------------------------------------------


def _convert(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "raw2rgb_cli.main", "convert", *args, "--json", "--overwrite"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    result["stderr"] = done.stderr
    return result


def _read(path: Path) -> np.ndarray:
    return tifffile.imread(path).astype(np.float64) / 65535


@pytest.fixture(scope="module")
def dot_frames(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lens")
    scene, centres = lf.dot_grid(HEIGHT, WIDTH)
    lf.write_lens_dng(folder / "truth.dng", scene)
    lf.write_lens_dng(folder / "seen.dng", lf.through_lens(scene))
    return folder, centres


@pytest.mark.slow
def test_distortion_and_lateral_ca_are_corrected_to_the_targets(dot_frames):
    folder, centres = dot_frames
    auto = _convert(str(folder / "seen.dng"), "-o", str(folder / "auto"), "-q")
    off = _convert(str(folder / "seen.dng"), "-o", str(folder / "off"), "--lens", "off", "-q")
    assert auto["files"][0]["lens"]["lens"] == "Canon EF-S 18-55mm f/3.5-5.6 IS"
    assert off["files"][0]["lens"] is None
    corrected = _read(folder / "auto" / "seen.tif")
    # lensfun's automatic scale is a zoom about the centre: fit it, then measure what is left.
    centre = np.array([(WIDTH - 1) / 2, (HEIGHT - 1) / 2])
    found = lf.dot_centroids(corrected, centres, radius=10)[:, 1]
    ok = ~np.isnan(found).any(axis=1)
    v, u = centres[ok] - centre, found[ok] - centre
    zoom = (v * u).sum() / (v * v).sum()
    expected = (centres - centre) * zoom + centre
    dots = lf.dot_centroids(corrected, expected)
    error = np.linalg.norm(dots[:, 1] - expected, axis=1)
    fringe = np.linalg.norm(dots[:, 0] - dots[:, 2], axis=1)
    uncorrected = lf.dot_centroids(_read(folder / "off" / "seen.tif"), centres, radius=12)
    assert np.nanmedian(np.linalg.norm(uncorrected[:, 1] - centres, axis=1)) > 2.0  # the test can fail
    assert np.nanmedian(error) < 0.5 and np.nanpercentile(error, 95) < 0.5, np.nanpercentile(error, [50, 95])
    fringe_before = np.linalg.norm(uncorrected[:, 0] - uncorrected[:, 2], axis=1)
    assert np.nanpercentile(fringe_before, 90) > 0.5
    assert np.nanmedian(fringe) < 0.3 and np.nanpercentile(fringe, 90) < 0.3, np.nanpercentile(fringe, [50, 90])


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["default-lite", "develop-lite"])
def test_vignetting_is_corrected_to_within_two_percent_of_flat(tmp_path, profile):
    grain = 1 + 0.02 * np.random.default_rng(0).standard_normal((HEIGHT, WIDTH, 1))  # a constant frame is refused
    flat = np.repeat(0.18 * grain, 3, axis=2).astype(np.float32)
    lf.write_lens_dng(tmp_path / "truth.dng", flat)
    lf.write_lens_dng(tmp_path / "seen.dng", lf.through_lens(flat, geometry=False))
    _convert(str(tmp_path / "truth.dng"), "-o", str(tmp_path / "out"), "-p", profile, "--lens", "off", "-q")
    _convert(str(tmp_path / "seen.dng"), "-o", str(tmp_path / "out"), "-p", profile, "-q")
    _convert(str(tmp_path / "seen.dng"), "-o", str(tmp_path / "off"), "-p", profile, "--lens", "off", "-q")

    def smooth(path: Path) -> np.ndarray:  # local means: the grain averages out, the fall-off stays
        image = cv2.blur(_read(path).mean(axis=2), (31, 31))
        return image[40:-40, 40:-40]

    truth = smooth(tmp_path / "out" / "truth.tif")
    assert (smooth(tmp_path / "off" / "seen.tif") / truth).min() < 0.7  # the lens darkens the corners
    ratio = smooth(tmp_path / "out" / "seen.tif") / truth
    assert np.abs(ratio - 1).max() < 0.02, (ratio.min(), ratio.max())


@pytest.mark.slow
def test_an_unknown_lens_is_one_note_and_the_file_converts(tmp_path):
    lf.write_lens_dng(tmp_path / "odd.dng", lf.dot_grid(HEIGHT, WIDTH)[0], lens_model="Nonexistent 12-34mm")
    done = _convert(str(tmp_path / "odd.dng"), "-o", str(tmp_path))
    entry = done["files"][0]
    assert entry["status"] == "converted" and entry["lens"] is None
    assert entry["notes"] == ["lens not corrected: lensfun's database has no match for the Canon EOS 550D "
                              "with Nonexistent 12-34mm"]
    assert done["stderr"].count("lens not corrected") == 1


@pytest.mark.slow
def test_tiles_still_equal_the_whole_frame_with_the_lens_corrected(dot_frames, tmp_path):
    folder, _ = dot_frames
    _convert(str(folder / "seen.dng"), "-o", str(tmp_path / "whole"), "--tile", "0", "-q")
    _convert(str(folder / "seen.dng"), "-o", str(tmp_path / "tiled"), "--tile", "96", "--overlap", "24", "-q")
    whole, tiled = _read(tmp_path / "whole" / "seen.tif"), _read(tmp_path / "tiled" / "seen.tif")
    mse = np.mean((whole - tiled) ** 2)
    assert mse == 0 or 10 * np.log10(1 / mse) >= 50


def test_lens_auto_is_refused_for_a_dng_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "raw2rgb_cli.main", "convert", str(tmp_path / "x.dng"),
                           "--format", "dng", "--lens", "auto"], capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "--lens auto is for TIFF output" in done.stderr and "Traceback" not in done.stderr


def test_info_says_which_lens_profile_convert_would_use(dot_frames):
    folder, _ = dot_frames
    done = subprocess.run([sys.executable, "-m", "raw2rgb_cli.main", "info", str(folder / "seen.dng"), "--json"],
                          capture_output=True, text=True, check=True)
    correction = json.loads(done.stdout)[0]["lens_correction"]
    assert correction["lens"] == "Canon EF-S 18-55mm f/3.5-5.6 IS"
    assert correction["corrects"] == ["distortion", "tca", "vignetting"]
    table = subprocess.run([sys.executable, "-m", "raw2rgb_cli.main", "info", str(folder / "seen.dng")],
                           capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "200"}).stdout
    assert "lens profile" in table and "distortion, lateral CA, vignetting" in table
