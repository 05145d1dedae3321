"""Which profile renders which file: a profile renders one kind of sensor (Bayer or X-Trans).
`convert` without --profile picks the installed profile of each file's sensor (xtrans-lite for
X-Trans where one is installed; none ships yet, and then the file is refused in one line); a named
profile of the other sensor is refused in one line naming the mismatch and what to do; the batch
goes on either way. `profiles show|list` and `info` say which sensor a profile or file is."""

from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path

import pytest
import tifffile
from typer.testing import CliRunner

from raw2rgb_cli.main import app
from raw2rgb_plugin.engine.converter import Converter
from raw2rgb_plugin.engine.jobs import ConvertJob
from raw2rgb_plugin.errors import UnsupportedRawError
from raw2rgb_plugin.io.raw_file import RawFile
from raw2rgb_plugin.profiles.catalog import installed_default
from raw2rgb_plugin.profiles.store import load_profile

from test_convert import write_scene_dng
from xtrans_helpers import camera_scene, make_xtrans_profile, write_xtrans_scene

CLASSICAL_LINE = "render it with a classical converter (darktable, RawTherapee) until raw2rgb ships one"


def run_cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def xtrans_profile(tmp_path_factory) -> Path:
    return make_xtrans_profile(tmp_path_factory.mktemp("xt") / "xt-camera", "camera")


@pytest.fixture
def files(tmp_path) -> tuple[Path, Path]:
    """A Bayer DNG and an X-Trans DNG."""
    return (write_scene_dng(tmp_path / "canon.dng"),
            write_xtrans_scene(tmp_path / "fuji.dng", camera_scene(60, 84, 1), phase=(1, 2)))


def install(profile: Path, folder: Path, name: str) -> None:
    shutil.copy(profile, folder / f"{name}.safetensors")


def frame_of(path: Path):
    with RawFile(path) as raw:
        return raw.mosaic_frame


def test_the_installed_default_is_picked_by_sensor(isolated_profile_dir, xtrans_profile, without_shipped_xtrans):
    assert installed_default("cpu", "bayer") == "default-lite" and installed_default("cpu", "xtrans") is None
    assert installed_default("cpu", "bayer", "dng") == "develop-lite" and installed_default("cpu", "xtrans", "dng") is None
    install(xtrans_profile, isolated_profile_dir, "xtrans-lite")
    assert installed_default("cpu", "xtrans") == installed_default("cuda", "xtrans") == "xtrans-lite"
    install(xtrans_profile, isolated_profile_dir, "xtrans")
    assert installed_default("cuda", "xtrans") == "xtrans" and installed_default("cpu", "xtrans") == "xtrans-lite"


def test_a_picking_converter_renders_each_file_with_its_sensors_profile(tmp_path, files, tiny_profile, xtrans_profile):
    bayer, xtrans = files
    converter = Converter(load_profile(tiny_profile), device="cpu", lens="off",
                          by_cfa={"xtrans": partial(load_profile, xtrans_profile)})
    results = converter.convert([ConvertJob(bayer, tmp_path / "canon.tif"), ConvertJob(xtrans, tmp_path / "fuji.tif")])
    assert [r.status for r in results] == ["converted", "converted"], [r.error for r in results]
    assert [r.details["profile"] for r in results] == ["tiny", "xt-camera"]
    for result, name in zip(results, ("tiny", "xt-camera")):
        with tifffile.TiffFile(result.output) as tif:
            assert tif.pages[0].tags["Software"].value.endswith(f"(profile {name})")
    # the same picked profile renders `render`'s frames too
    assert converter.render(frame_of(xtrans)).shape == (60, 84, 3)


def test_a_named_profile_of_the_other_sensor_is_refused_in_one_line(files, tiny_profile, xtrans_profile,
                                                                     isolated_profile_dir, without_shipped_xtrans):
    bayer, xtrans = files
    named_bayer = Converter(load_profile(tiny_profile), device="cpu")
    with pytest.raises(UnsupportedRawError) as caught:
        named_bayer.render(frame_of(xtrans))
    assert str(caught.value) == ("is an X-Trans RAW (Fujifilm's 6×6 colour filter array), and profile 'tiny' renders "
                                 f"Bayer sensors only — no X-Trans profile is installed: {CLASSICAL_LINE}")
    install(xtrans_profile, isolated_profile_dir, "xtrans-lite")
    with pytest.raises(UnsupportedRawError, match="convert it with an X-Trans profile: --profile xtrans-lite, or no "
                                                  "--profile \\(convert picks one by the file's sensor\\)$"):
        named_bayer.render(frame_of(xtrans))
    named_xtrans = Converter(load_profile(xtrans_profile), device="cpu")
    with pytest.raises(UnsupportedRawError) as caught:
        named_xtrans.render(frame_of(bayer))
    assert str(caught.value) == ("is a Bayer RAW, and profile 'xt-camera' renders X-Trans sensors only — convert it "
                                 "with a Bayer profile: --profile default-lite, or no --profile (convert picks one by "
                                 "the file's sensor)")


def test_without_an_xtrans_profile_a_picking_converter_refuses_the_file(files, tiny_profile, without_shipped_xtrans):
    converter = Converter(load_profile(tiny_profile), device="cpu", by_cfa={})
    with pytest.raises(UnsupportedRawError) as caught:
        converter.render(frame_of(files[1]))
    assert str(caught.value) == ("is an X-Trans RAW (Fujifilm's 6×6 colour filter array), and no X-Trans profile is "
                                 f"installed — {CLASSICAL_LINE}")


def test_a_user_profile_named_like_the_xtrans_default_but_for_bayer_is_refused(tmp_path, files, tiny_profile,
                                                                              isolated_profile_dir):
    install(tiny_profile, isolated_profile_dir, "xtrans-lite")
    converter = Converter(load_profile(tiny_profile), device="cpu", by_cfa={"xtrans": partial(load_profile, "xtrans-lite")})
    [result] = converter.convert([ConvertJob(files[1], tmp_path / "fuji.tif")])
    assert result.status == "failed" and result.error == (
        f"the profile picked for X-Trans files, {isolated_profile_dir / 'xtrans-lite.safetensors'}, renders Bayer "
        "sensors only — rename or remove it, or name an X-Trans profile with --profile")
    assert not (tmp_path / "fuji.tif").exists()


def test_profiles_show_and_list_name_the_sensor(tiny_profile, xtrans_profile, isolated_profile_dir):
    shown = run_cli("profiles", "show", xtrans_profile)
    assert shown.exit_code == 0 and "sensors: X-Trans 6×6 (cfa: xtrans)" in shown.stdout
    assert json.loads(run_cli("profiles", "show", xtrans_profile, "--json").stdout)["cfa"] == "xtrans"
    assert json.loads(run_cli("profiles", "show", tiny_profile, "--json").stdout)["cfa"] == "bayer"
    install(xtrans_profile, isolated_profile_dir, "xtrans-lite")
    listed = {row["name"]: row["cfa"] for row in json.loads(run_cli("profiles", "list", "--json").stdout)}
    assert listed["xtrans-lite"] == "xtrans" and listed["default-lite"] == "bayer"


def test_info_says_which_profile_would_render_an_xtrans_file(files, xtrans_profile, isolated_profile_dir, without_shipped_xtrans):
    assert "none: no X-Trans profile is installed" in run_cli("info", files[1]).stdout
    install(xtrans_profile, isolated_profile_dir, "xtrans-lite")
    shown = " ".join(run_cli("info", files[1]).stdout.split())  # the table wraps long rows
    assert "with the X-Trans profile xtrans-lite" in shown and "--format dng: none (no scene-linear" in shown
    install(xtrans_profile, isolated_profile_dir, "xtrans-develop-lite")  # any file will do for the lookup
    assert "--format dng: with xtrans-develop-lite" in " ".join(run_cli("info", files[1]).stdout.split())


def test_convert_without_a_profile_renders_each_sensor_with_its_own(tmp_path, files, xtrans_profile,
                                                                    isolated_profile_dir, without_shipped_xtrans):
    bayer, xtrans = files
    refused = run_cli("convert", bayer, xtrans, "-o", tmp_path / "before", "--json", "--quiet")
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert refused.stderr.splitlines() == [f"error: {xtrans}: is an X-Trans RAW (Fujifilm's 6×6 colour filter array), "
                                           f"and no X-Trans profile is installed — {CLASSICAL_LINE}"]
    assert sorted(p.name for p in (tmp_path / "before").iterdir()) == ["canon.tif"]  # the batch went on

    install(xtrans_profile, isolated_profile_dir, "xtrans-lite")
    result = run_cli("convert", bayer, xtrans, "-o", tmp_path / "after", "--json", "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["profile"] == "default-lite" and summary["converted"] == 2
    assert {Path(f["input"]).name: f["profile"] for f in summary["files"]} == {"canon.dng": "default-lite",
                                                                               "fuji.dng": "xt-camera"}
