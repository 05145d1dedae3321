"""`raw2rgb convert` end to end on synthetic DNGs the tests write, and on real files."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import exifread
import numpy as np
import pytest
import tifffile
import torch
from typer.testing import CliRunner

from raw2rgb_cli.main import app
from raw2rgb_plugin.engine.converter import Converter, ConvertJob
from raw2rgb_plugin.io.dng_write import write_bayer_dng
from raw2rgb_plugin.io.exif_read import GpsInfo, PhotoMetadata
from raw2rgb_plugin.io.icc import icc_profile_bytes
from raw2rgb_plugin.io.raw_file import decode_raw
from raw2rgb_plugin.pipeline.normalization import network_input
from raw2rgb_plugin.profiles.store import load_profile
from raw2rgb_plugin.training.data.unprocess import mosaic_rgb as bayer_from_rgb

from helpers import TEST_XYZ_TO_CAMERA, default_sigint, smooth_scene

ORDERS = ["RGGB", "BGGR", "GRBG", "GBRG"]
BLACK, WHITE = 64, 4095
NEUTRAL = [0.5, 1.0, 0.625]  # camera RGB of grey → WB gains 2, 1, 1.6

META = PhotoMetadata(
    make="Testmaker", model="Model 7", lens_make="Glassworks", lens_model="35mm F1.8",
    exposure_time=Fraction(1, 250), f_number=Fraction(28, 10), iso=400, focal_length=Fraction(35),
    datetime_original="2026:05:17 14:03:59", artist="Ada Photographer", copyright="CC BY 4.0 Ada",
    gps=GpsInfo(latitude=(Fraction(46), Fraction(31), Fraction(1234, 100)), latitude_ref="N",
                longitude=(Fraction(6), Fraction(37), Fraction(5, 1)), longitude_ref="E",
                altitude=Fraction(4521, 10), altitude_ref=0),
)


def write_scene_dng(path: Path, cfa: str = "RGGB", *, height: int = 96, width: int = 128, orientation: int = 1,
                    seed: int = 0, metadata: PhotoMetadata | None = META) -> Path:
    linear = smooth_scene(height, width, seed)
    camera = linear * np.asarray(NEUTRAL)  # a grey world seen through the camera's WB
    mosaic = (BLACK + (WHITE - BLACK) * bayer_from_rgb(camera, cfa)).round().astype(np.uint16)
    write_bayer_dng(path, mosaic, cfa, black_level=BLACK, white_level=WHITE, color_matrix1=TEST_XYZ_TO_CAMERA,
                    as_shot_neutral=NEUTRAL, orientation=orientation, make=metadata.make if metadata else "raw2rgb",
                    model=metadata.model if metadata else "Synthetic", metadata=metadata)
    return path


def run_cli(*args: str):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result


# --- decoding and normalisation of known values ------------------------------------------------


@pytest.mark.parametrize("cfa", ORDERS)
def test_known_values_survive_decoding_packing_levels_and_white_balance(tmp_path, cfa):
    # A flat grey card: after levels and white balance every packed channel must read the same.
    grey = 0.4
    camera = np.broadcast_to(grey * np.asarray(NEUTRAL), (64, 80, 3))
    mosaic = (BLACK + (WHITE - BLACK) * bayer_from_rgb(np.ascontiguousarray(camera), cfa)).round().astype(np.uint16)
    path = tmp_path / f"{cfa}.dng"
    write_bayer_dng(path, mosaic, cfa, black_level=BLACK, white_level=WHITE, color_matrix1=TEST_XYZ_TO_CAMERA,
                    as_shot_neutral=NEUTRAL)
    frame = decode_raw(path)
    assert frame.cfa_pattern == cfa and frame.wb_source == "as-shot"
    assert np.allclose(frame.wb_gains_rgb, [2.0, 1.0, 1.6], atol=1e-3)
    raw = network_input(frame, "raw").packed[0]
    expected_raw = [grey * NEUTRAL[0], grey, grey, grey * NEUTRAL[2]]
    assert torch.allclose(raw.mean(dim=(1, 2)), torch.tensor(expected_raw), atol=1e-3)
    balanced = network_input(frame, "wb").packed[0]
    assert torch.allclose(balanced, torch.full_like(balanced, grey), atol=1e-3)
    # Grey stays grey through the camera matrix (its rows sum to one).
    assert torch.allclose(network_input(frame, "wb+ccm").packed[0], torch.full_like(balanced, grey), atol=2e-3)


def test_every_order_sees_the_same_scene_in_the_same_place(tmp_path):
    # One RGGB mosaic; cropping one row/column gives the other three orders of the same scene.
    linear = smooth_scene(66, 82)
    full = (BLACK + (WHITE - BLACK) * bayer_from_rgb(linear, "RGGB")).round().astype(np.uint16)
    crops = {"RGGB": full[:64, :80], "GRBG": full[:64, 1:81], "GBRG": full[1:65, :80], "BGGR": full[1:65, 1:81]}
    packed = {}
    for cfa, mosaic in crops.items():
        write_bayer_dng(tmp_path / f"{cfa}.dng", np.ascontiguousarray(mosaic), cfa, black_level=BLACK,
                        white_level=WHITE, color_matrix1=TEST_XYZ_TO_CAMERA, as_shot_neutral=[1, 1, 1])
        packed[cfa] = network_input(decode_raw(tmp_path / f"{cfa}.dng"), "raw").packed[0]
    reference = network_input(decode_raw(tmp_path / "RGGB.dng"), "raw").packed[0]
    # After the phase padding each order's packed pixel (i, j) covers the same scene sites as
    # the uncropped RGGB mosaic's, except the reflected first and last row/column.
    full_packed = torch.from_numpy((full.astype(np.float32) - BLACK) / (WHITE - BLACK))
    from raw2rgb_plugin.pipeline.packing import pack_rggb

    full_packed = pack_rggb(full_packed)
    assert torch.allclose(reference, full_packed[:, :32, :40], atol=1e-6)
    assert packed["GRBG"].shape == (4, 32, 41) and packed["GBRG"].shape == (4, 33, 40)
    assert torch.allclose(packed["GRBG"][:, :, 1:40], full_packed[:, :32, 1:40], atol=1e-6)
    assert torch.allclose(packed["GBRG"][:, 1:32, :], full_packed[:, 1:32, :40], atol=1e-6)
    assert torch.allclose(packed["BGGR"][:, 1:32, 1:40], full_packed[:, 1:32, 1:40], atol=1e-6)


# --- the engine ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def converter(tiny_profile):
    return Converter(load_profile(tiny_profile), device="cpu")


@pytest.mark.parametrize("orientation,rotate", [(3, 2), (6, -1), (8, 1)])
def test_output_is_rotated_as_the_camera_says(tmp_path, converter, orientation, rotate):
    upright = converter.render(decode_raw(write_scene_dng(tmp_path / "o1.dng", "GRBG", orientation=1)))
    turned = converter.render(decode_raw(write_scene_dng(tmp_path / "o.dng", "GRBG", orientation=orientation)))
    assert upright.shape == (96, 128, 3)
    assert np.array_equal(turned, np.rot90(upright, k=rotate))


@pytest.mark.parametrize("cfa", ORDERS)
def test_full_and_half_resolution_sizes(tmp_path, converter, cfa):
    frame = decode_raw(write_scene_dng(tmp_path / "s.dng", cfa, height=70, width=102))
    full = converter.render(frame)
    assert full.shape == (70, 102, 3) and full.dtype == np.uint16
    assert converter.render(frame, half_size=True).shape == (35, 51, 3)


@pytest.mark.slow
def test_tiled_conversion_matches_whole_frame(tmp_path, tiny_profile):
    frame = decode_raw(write_scene_dng(tmp_path / "t.dng", height=400, width=560))
    whole = Converter(load_profile(tiny_profile), device="cpu", tile=0).render(frame)
    tiled = Converter(load_profile(tiny_profile), device="cpu", tile=96, overlap=64).render(frame)
    diff = np.abs(whole.astype(np.int64) - tiled.astype(np.int64))
    assert diff.max() <= 0.002 * 65535 and diff.mean() < 0.0001 * 65535


def test_output_tiff_carries_pixels_icc_and_exif(tmp_path, converter):
    source = write_scene_dng(tmp_path / "exif.dng")
    out = tmp_path / "exif.tif"
    [result] = converter.convert([ConvertJob(source, out)])
    assert result.status == "converted", result.error
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        pixels = page.asarray()
        assert pixels.dtype == np.uint16 and pixels.shape == (96, 128, 3)
        assert page.tags["InterColorProfile"].value == icc_profile_bytes("srgb")
        assert page.tags["Orientation"].value == 1
        assert page.tags["Make"].value == "Testmaker" and page.tags["Model"].value == "Model 7"
    assert np.array_equal(pixels, converter.render(decode_raw(source)))
    with open(out, "rb") as fh:
        tags = exifread.process_file(fh, details=False)
    assert str(tags["Image Make"]) == "Testmaker"
    assert str(tags["EXIF LensModel"]) == "35mm F1.8" and str(tags["EXIF LensMake"]) == "Glassworks"
    assert str(tags["EXIF ExposureTime"]) == "1/250"
    assert tags["EXIF FNumber"].values[0] == Fraction(14, 5)
    assert tags["EXIF ISOSpeedRatings"].values[0] == 400
    assert tags["EXIF FocalLength"].values[0] == 35
    assert str(tags["EXIF DateTimeOriginal"]) == "2026:05:17 14:03:59"
    assert str(tags["Image Artist"]) == "Ada Photographer"
    assert str(tags["Image Copyright"]) == "CC BY 4.0 Ada"
    assert str(tags["GPS GPSLatitudeRef"]) == "N"
    assert [Fraction(v.num, v.den) for v in tags["GPS GPSLatitude"].values] == [46, 31, Fraction(1234, 100)]
    assert tags["GPS GPSAltitude"].values[0] == Fraction(4521, 10)


# --- the command line ---------------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_batch_with_bad_files_skip_and_overwrite(tmp_path, tiny_profile):
    good = [write_scene_dng(tmp_path / f"good{i}.dng", cfa, seed=i) for i, cfa in enumerate(ORDERS[:2])]
    fake = tmp_path / "notes.NEF"
    fake.write_text("not a raw file")
    before = {p: sha256(p) for p in [*good, fake]}
    out = tmp_path / "out"

    first = run_cli("convert", *good, fake, "-o", out, "--profile", tiny_profile, "--json")
    assert first.exit_code == 1
    summary = json.loads(first.stdout)
    assert (summary["converted"], summary["skipped"], summary["failed"]) == (2, 0, 1)
    failed = [f for f in summary["files"] if f["status"] == "failed"]
    assert failed[0]["input"].endswith("notes.NEF") and "not a RAW format" in failed[0]["error"]
    error_lines = [line for line in first.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "notes.NEF" in error_lines[0] and "Traceback" not in first.stderr
    assert sorted(p.name for p in out.iterdir()) == ["good0.tif", "good1.tif"]  # no partial files
    assert {p: sha256(p) for p in before} == before  # inputs untouched

    stamp = (out / "good0.tif").stat().st_mtime_ns
    again = run_cli("convert", *good, "-o", out, "--profile", tiny_profile, "--json")
    assert again.exit_code == 0
    assert json.loads(again.stdout)["skipped"] == 2
    assert (out / "good0.tif").stat().st_mtime_ns == stamp

    replaced = run_cli("convert", good[0], "-o", out, "--profile", tiny_profile, "--overwrite", "--quiet")
    assert replaced.exit_code == 0 and replaced.stderr == ""
    assert (out / "good0.tif").stat().st_mtime_ns != stamp


@pytest.mark.slow
def test_folders_globs_and_case_insensitive_extensions(tmp_path, tiny_profile):
    (tmp_path / "shoot" / "day2").mkdir(parents=True)
    write_scene_dng(tmp_path / "shoot" / "a.DNG")
    write_scene_dng(tmp_path / "shoot" / "day2" / "b.dng")
    (tmp_path / "shoot" / "readme.txt").write_text("ignored")
    flat = run_cli("convert", tmp_path / "shoot", "-o", tmp_path / "o1", "--profile", tiny_profile, "--json", "-q")
    assert flat.exit_code == 0 and json.loads(flat.stdout)["converted"] == 1
    deep = run_cli("convert", tmp_path / "shoot", "-r", "-o", tmp_path / "o2", "--profile", tiny_profile, "--json", "-q")
    assert deep.exit_code == 0 and sorted(p.name for p in (tmp_path / "o2").iterdir()) == ["a.tif", "b.tif"]
    globbed = run_cli("convert", str(tmp_path / "shoot" / "*"), "-o", tmp_path / "o3", "--profile", tiny_profile, "-q")
    assert globbed.exit_code == 0 and (tmp_path / "o3" / "a.tif").exists()
    beside = run_cli("convert", tmp_path / "shoot" / "a.DNG", "--profile", tiny_profile, "-q")
    assert beside.exit_code == 0 and (tmp_path / "shoot" / "a.tif").exists()


def test_same_stem_from_two_folders_is_not_clobbered(tmp_path, tiny_profile):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        write_scene_dng(tmp_path / folder / "IMG_0001.dng")
    result = run_cli("convert", tmp_path / "x" / "IMG_0001.dng", tmp_path / "y" / "IMG_0001.dng",
                     "-o", tmp_path / "o", "--profile", tiny_profile, "--json")
    assert result.exit_code == 1
    statuses = [f["status"] for f in json.loads(result.stdout)["files"]]
    assert sorted(statuses) == ["converted", "failed"]


def test_missing_inputs_and_bad_profile_are_one_line_each(tmp_path, tiny_profile):
    result = run_cli("convert", tmp_path / "nope.cr2", "--profile", tiny_profile)
    assert result.exit_code == 1 and "no such file or folder" in result.stderr
    bad_profile = run_cli("convert", write_scene_dng(tmp_path / "a.dng"), "--profile", "no-such-profile")
    assert bad_profile.exit_code == 2 and "no profile named 'no-such-profile'" in bad_profile.stderr
    assert "Traceback" not in bad_profile.stderr


def test_real_and_stripped_camera_files(tmp_path, shared_data, tiny_profile):
    files = [shared_data / "raw" / "RAW_KODAK_DC50.KDC", shared_data / "bad" / "exiv2" / "IMG_1361.dng",
             shared_data / "bad" / "exiftool" / "Sigma.x3f"]
    result = run_cli("convert", *files, "-o", tmp_path, "--profile", tiny_profile, "--json", "--half-size")
    assert result.exit_code == 1
    by_name = {Path(f["input"]).name: f for f in json.loads(result.stdout)["files"]}
    assert by_name["RAW_KODAK_DC50.KDC"]["status"] == "converted"
    assert by_name["RAW_KODAK_DC50.KDC"]["size"] == [384, 256]
    assert "not a Bayer mosaic" in by_name["IMG_1361.dng"]["error"]
    assert by_name["Sigma.x3f"]["status"] == "failed"
    with open(tmp_path / "RAW_KODAK_DC50.tif", "rb") as fh:
        assert str(exifread.process_file(fh, details=False)["Image Make"]) == "Eastman Kodak Company"


def test_info_reports_the_engine_view(tmp_path, shared_data):
    result = run_cli("info", shared_data / "raw" / "RAW_CANON_D30_SRGB.CRW",
                     write_scene_dng(tmp_path / "i.dng", "GBRG", orientation=6), "--json")
    assert result.exit_code == 0, result.stderr
    canon, synthetic = json.loads(result.stdout)
    assert canon["camera"]["make"] == "Canon" and canon["white_balance"]["source"] == "daylight"
    assert canon["cfa_pattern"] == "RGGB" and canon["black_level_per_site"] == [[126, 126], [126, 126]]
    assert synthetic["cfa_pattern"] == "GBRG" and synthetic["output_size"] == {"height": 128, "width": 96}
    assert synthetic["camera_to_srgb"]["source"] in ("color_matrix", "dng ColorMatrix1")
    assert synthetic["exif"]["iso"] == 400


def test_profiles_list_and_show(tiny_profile, isolated_profile_dir):
    import shutil

    shutil.copy(tiny_profile, isolated_profile_dir / "mine.safetensors")
    listed = run_cli("profiles", "list", "--json")
    assert listed.exit_code == 0
    assert any(p["name"] == "mine" and p["source"] == "user" for p in json.loads(listed.stdout))
    shown = run_cli("profiles", "show", "mine", "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["architecture"]["width"] == 8


@pytest.mark.slow
def test_interrupted_batch_leaves_no_partial_tiff_and_resumes(tmp_path, tiny_profile):
    count = 12
    inputs = [write_scene_dng(tmp_path / f"f{i}.dng", height=384, width=512, seed=i) for i in range(count)]
    out = tmp_path / "out"
    command = [sys.executable, "-m", "raw2rgb_cli.main", "convert", *map(str, inputs), "-o", str(out),
               "--profile", str(tiny_profile), "--quiet"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint)
    deadline = time.monotonic() + 120
    while not (out.exists() and any(out.glob("*.tif"))) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    leftovers = [p.name for p in out.iterdir() if not p.name.endswith(".tif") or p.name.startswith(".")]
    assert leftovers == []
    done_before = {p.name for p in out.glob("*.tif")}
    assert 0 < len(done_before) < count, "the interrupt must land mid-batch for this test to mean anything"
    for tif in out.glob("*.tif"):
        assert tifffile.imread(tif).shape == (384, 512, 3)  # every TIFF present is whole
    resumed = subprocess.run([*command[:-1], "--json"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["skipped"] == len(done_before) and summary["converted"] == count - len(done_before)


def test_full_16_bit_values_survive_the_upload(tmp_path):
    mosaic = np.full((32, 48), 60000, np.uint16)
    mosaic[::2, ::2] = 40000
    write_bayer_dng(tmp_path / "w16.dng", mosaic, "RGGB", black_level=0, white_level=65535,
                    color_matrix1=TEST_XYZ_TO_CAMERA, as_shot_neutral=[1, 1, 1])
    packed = network_input(decode_raw(tmp_path / "w16.dng"), "raw").packed[0]
    assert torch.allclose(packed[0], torch.tensor(40000 / 65535)) and torch.allclose(packed[3], torch.tensor(60000 / 65535))


def test_a_render_failure_fails_that_file_and_the_batch_goes_on(tmp_path, tiny_profile, monkeypatch):
    converter = Converter(load_profile(tiny_profile), device="cpu")
    inputs = [write_scene_dng(tmp_path / f"r{i}.dng", seed=i) for i in range(3)]
    real_render = converter._render  # what the render stage calls (render's pixels + the stuck sites)
    calls = []

    def flaky_render(frame, **kwargs):
        calls.append(frame.path.name)
        if frame.path.name == "r1.dng":
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 TB")
        return real_render(frame, **kwargs)

    monkeypatch.setattr(converter, "_render", flaky_render)
    results = converter.convert([ConvertJob(p, tmp_path / f"{p.stem}.tif") for p in inputs])
    assert [r.status for r in results] == ["converted", "failed", "converted"]
    assert "can't allocate memory" in results[1].error and "--tile" in results[1].error
    assert not (tmp_path / "r1.tif").exists()
