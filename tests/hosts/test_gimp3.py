"""The GIMP 3 Python plug-in inside the real GIMP 3.0 (Debian trixie, in a chroot).

Debian 12 has no GIMP 3, so `.ci/install-hosts` debootstraps trixie with GIMP 3.0 into a cached
chroot. Each test runs gimp-console-3.0 there in a private mount namespace with the test folder
bind-mounted at the same path and the host's root under /run/raw2rgb-host: the plug-in runs a
two-line wrapper that chroots back into the host to start the real raw2rgb (Python 3.11 and
torch live on the host), so the plug-in, GIMP and raw2rgb all see the same file paths.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from hostrun import (
    EXPECTED_TIFF,
    RENAMED_TIFF,
    TRIXIE_CHROOT,
    in_trixie,
    install_integration,
    option_values,
    recorded_calls,
    run_bounded,
    run_on_host,
    tiff_summary,
    write_converter_wrapper,
    write_test_raw,
)
from xtrans_helpers import make_xtrans_profile

pytestmark = pytest.mark.hosts

GIMP_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def gimp3() -> Path:
    if not (TRIXIE_CHROOT / ".raw2rgb-ready").is_file():
        pytest.skip(f"no GIMP 3 chroot at {TRIXIE_CHROOT} (.ci/install-hosts builds it; it needs root and debootstrap)")
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("running GIMP 3 in its chroot needs root and unshare (mount namespaces)")
    return TRIXIE_CHROOT


@pytest.fixture
def work(tmp_path, raw2rgb_exe, tiny_profile, gimp3) -> Path:
    """The test folder, with a GIMP 3 profile holding the plug-in as `raw2rgb install gimp` puts it."""
    wrapper = run_on_host(tmp_path / "raw2rgb via host", raw2rgb_exe)
    profile = tmp_path / "gimp3 profile"
    profile.mkdir()
    install_integration(raw2rgb_exe, "gimp", profile, "--executable", str(wrapper),
                        "--profile", str(tiny_profile), "--device", "cpu")
    plug_in = profile / "plug-ins" / "file-raw2rgb" / "file-raw2rgb.py"
    assert os.access(plug_in, os.X_OK)
    # only one RAW loader is active: ours (GIMP's darktable and RawTherapee loaders also claim RAWs)
    (profile / "gimprc").write_text(f"(import-raw-plug-in {json.dumps(str(plug_in))})\n", encoding="utf-8")
    (tmp_path / "tmp").mkdir()
    return tmp_path


def run_gimp3(work: Path, code: str, env: dict | None = None) -> dict:
    """Run `code` in GIMP 3's python-fu batch interpreter; it fills the dict `out`, returned here."""
    result_file = work / "batch-result.json"
    script = (
        "import json\nfrom gi.repository import Gimp, Gio, GLib\nout = {}\n"
        + code
        + f"\nopen({str(result_file)!r}, 'w').write(json.dumps(out))\n"
    )
    command = [
        *in_trixie(
            work, "/usr/bin/env", f"GIMP3_DIRECTORY={work / 'gimp3 profile'}", f"TMPDIR={work / 'tmp'}", f"HOME={work}",
            *(f"{name}={value}" for name, value in (env or {}).items()),
            "timeout", "-k", "5", str(GIMP_TIMEOUT_S),
            "gimp-console-3.0", "-i", "-d", "-f", "--batch-interpreter=python-fu-eval", "-b", script, "--quit",
        ),
    ]
    finished = run_bounded(command, timeout=GIMP_TIMEOUT_S + 20)
    print(f"gimp-console-3.0 ran {finished.seconds:.1f} s")
    assert finished.returncode == 0, f"GIMP 3 batch failed ({finished.returncode}):\n{finished.output[-4000:]}"
    return json.loads(result_file.read_text(encoding="utf-8"))


DESCRIBE_IMAGE = """
def describe(image):
    profile = image.get_color_profile()
    metadata = image.get_metadata()
    return dict(width=image.get_width(), height=image.get_height(),
                precision=image.get_precision().value_nick,
                icc=profile.get_label() if profile else None,
                metadata=metadata.serialize() if metadata else "")
"""


def open_and_save(raw: Path, saved: Path) -> str:
    return DESCRIBE_IMAGE + f"""
image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path({str(raw)!r}))
if image is None:
    out["error"] = Gimp.get_pdb().get_last_error()
else:
    out.update(describe(image))
    Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path({str(saved)!r}), None)
"""


def test_gimp3_opens_a_raw_through_raw2rgb(work):
    # raw2rgb's JSON summary escapes the quotes and the backslash of the TIFF's path
    raw = write_test_raw(work / "it's a \"raw\" \\ $(touch pwned) café 写真.dng")
    saved = work / "saved.tif"

    out = run_gimp3(work, open_and_save(raw, saved))

    assert "error" not in out, out.get("error")
    assert (out["width"], out["height"]) == (192, 128)
    assert out["precision"] == "u16-non-linear"
    assert out["icc"]  # raw2rgb's ICC profile came along
    # raw2rgb's EXIF came along: its own Software tag and the RAW's exposure data
    assert '<tag name="Exif.Image.Software">raw2rgb' in out["metadata"]
    assert '<tag name="Exif.Photo.ISOSpeedRatings">400</tag>' in out["metadata"]
    assert tiff_summary(saved)["shape"] == EXPECTED_TIFF["shape"]
    assert not list(work.rglob("pwned"))
    assert not list((work / "tmp").glob("raw2rgb-gimp-*")), "the temporary TIFF was left behind"


def test_gimp3_opens_the_tiff_that_raw2rgb_reports(work, raw2rgb_exe):
    """The TIFF lands under another name than <stem>.tif, reported in \\u escapes: only a plug-in
    that reads the path from the JSON summary opens it."""
    renaming = write_converter_wrapper(work, raw2rgb_exe, rename=True)
    raw = write_test_raw(work / "renamed é.dng")
    saved = work / "saved.tif"

    out = run_gimp3(work, open_and_save(raw, saved),
                    env={"RAW2RGB_EXECUTABLE": run_on_host(work / "renaming via host", renaming)})

    summary = Path(f"{renaming}.stdout").read_text(encoding="ascii")
    assert Path(json.loads(summary)["files"][0]["output"]).name == RENAMED_TIFF.format(stem="renamed é")
    assert "error" not in out, out.get("error")
    assert (out["width"], out["height"], out["precision"]) == (192, 128, "u16-non-linear")
    assert tiff_summary(saved)["shape"] == EXPECTED_TIFF["shape"]
    assert not list((work / "tmp").glob("raw2rgb-gimp-*")), "the renamed TIFF was left behind"


def test_gimp3_reports_a_failed_conversion(work, raw2rgb_exe):
    recording = write_converter_wrapper(work, raw2rgb_exe)
    bad = work / "broken \"q\" \\ é.dng"
    bad.write_bytes(b"II*\x00" + os.urandom(4000))

    out = run_gimp3(work, f"""
image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path({str(bad)!r}))
out["loaded"] = image is not None
out["error"] = Gimp.get_pdb().get_last_error()
""", env={"RAW2RGB_EXECUTABLE": run_on_host(work / "recording via host", recording)})

    assert out["loaded"] is False
    # the reason is the summary's `error` for the file, not raw2rgb's stderr line ("error: <path>: ...")
    reason = json.loads(Path(f"{recording}.stdout").read_text(encoding="utf-8"))["files"][0]["error"]
    assert reason
    assert out["error"] == f"raw2rgb could not convert {bad.name}: {reason}"
    assert not list((work / "tmp").glob("raw2rgb-gimp-*"))


def test_gimp3_batch_procedure_takes_profile_and_device(work, tiny_profile):
    raw = write_test_raw(work / "batch.dng")
    missing = work / "no such profile.safetensors"

    out = run_gimp3(work, DESCRIBE_IMAGE + f"""
procedure = Gimp.get_pdb().lookup_procedure("plug-in-raw2rgb-open")
for name, profile in (("good", {str(tiny_profile)!r}), ("missing", {str(missing)!r})):
    config = procedure.create_config()
    config.set_property("file", Gio.File.new_for_path({str(raw)!r}))
    config.set_property("profile", profile)
    config.set_property("device", "cpu")
    result = procedure.run(config)
    out[name] = dict(status=result.index(0).value_nick)
    if out[name]["status"] == "success":
        out[name].update(describe(result.index(1)))
    else:
        out[name]["error"] = result.index(1)
""")

    assert out["good"]["status"] == "success"
    assert (out["good"]["width"], out["good"]["height"], out["good"]["precision"]) == (192, 128, "u16-non-linear")
    assert out["missing"]["status"] == "execution-error"
    assert out["missing"]["error"].startswith("raw2rgb could not convert batch.dng: ")
    assert str(missing) in out["missing"]["error"]


def test_gimp3_denoise_argument_reaches_raw2rgb(work, raw2rgb_exe, tiny_profile):
    # recorded by the installer: the default of both procedures' "denoise" argument
    install_integration(raw2rgb_exe, "gimp", work / "gimp3 profile", "--executable", str(work / "raw2rgb via host"),
                        "--profile", str(tiny_profile), "--device", "cpu", "--denoise", "0.25")
    recording = write_converter_wrapper(work, raw2rgb_exe)
    raw = write_test_raw(work / "grain.dng")

    out = run_gimp3(work, f"""
raw = Gio.File.new_for_path({str(raw)!r})
pdb = Gimp.get_pdb()
for name in ("file-raw2rgb-raw-load", "plug-in-raw2rgb-open"):
    procedure = pdb.lookup_procedure(name)
    config = procedure.create_config()
    out[name + " default"] = config.get_property("denoise")
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("file", raw)
    config.set_property("denoise", 0.5)
    out[name] = procedure.run(config).index(0).value_nick
# GIMP's own file loading passes no denoise: the argument's default
out["file_load"] = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, raw) is not None
""", env={"RAW2RGB_EXECUTABLE": run_on_host(work / "recording via host", recording)})

    assert out["file-raw2rgb-raw-load default"] == out["plug-in-raw2rgb-open default"] == 0.25
    assert (out["file-raw2rgb-raw-load"], out["plug-in-raw2rgb-open"], out["file_load"]) == ("success", "success", True)
    calls = recorded_calls(recording)
    assert [call[0] for call in calls] == ["convert"] * 3
    assert [option_values(call, "--denoise") for call in calls] == [["0.5"], ["0.5"], ["0.25"]], calls


def test_gimp3_lens_argument_reaches_raw2rgb(work, raw2rgb_exe):
    recording = write_converter_wrapper(work, raw2rgb_exe)
    raw = write_test_raw(work / "lens.dng")

    out = run_gimp3(work, f"""
raw = Gio.File.new_for_path({str(raw)!r})
pdb = Gimp.get_pdb()
for name in ("file-raw2rgb-raw-load", "plug-in-raw2rgb-open"):
    procedure = pdb.lookup_procedure(name)
    config = procedure.create_config()
    out[name + " default"] = config.get_property("lens-corrections")
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("file", raw)
    config.set_property("lens-corrections", False)
    out[name] = procedure.run(config).index(0).value_nick
# GIMP's own file loading passes no lens-corrections: the argument's default, on (--lens auto)
out["file_load"] = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, raw) is not None
# a Script-Fu call written before the argument existed still runs, with that default
script_fu = pdb.lookup_procedure("plug-in-script-fu-eval")
config = script_fu.create_config()
config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
config.set_property("script", '(plug-in-raw2rgb-open RUN-NONINTERACTIVE "' + raw.get_path() + '" "" "cpu" 1.0)')
out["script-fu"] = script_fu.run(config).index(0).value_nick
""", env={"RAW2RGB_EXECUTABLE": run_on_host(work / "recording via host", recording)})

    assert out["file-raw2rgb-raw-load default"] is out["plug-in-raw2rgb-open default"] is True
    assert (out["file-raw2rgb-raw-load"], out["plug-in-raw2rgb-open"], out["file_load"]) == ("success", "success", True)
    assert out["script-fu"] == "success"
    calls = recorded_calls(recording)
    assert [option_values(call, "--lens") for call in calls] == [["off"], ["off"], ["auto"], ["auto"]], calls


def test_gimp3_opens_an_xtrans_raw_with_the_installed_xtrans_profile(work, raw2rgb_exe, isolated_profile_dir):
    """Issue 25: the loader as `raw2rgb install gimp` sets it up without --profile, so convert picks
    each file's sensor's profile: here a small X-Trans test profile installed as xtrans-lite."""
    shutil.copyfile(make_xtrans_profile(work / "xtrans-lite", "srgb", classical=True),
                    isolated_profile_dir / "xtrans-lite.safetensors")
    install_integration(raw2rgb_exe, "gimp", work / "gimp3 profile", "--executable", str(work / "raw2rgb via host"),
                        "--device", "cpu")
    recording = write_converter_wrapper(work, raw2rgb_exe)
    raw = write_test_raw(work / "DSCF0001.dng", cfa="xtrans")
    saved = work / "saved.tif"

    out = run_gimp3(work, open_and_save(raw, saved),
                    env={"RAW2RGB_EXECUTABLE": run_on_host(work / "recording via host", recording)})

    assert "error" not in out, out.get("error")
    assert (out["width"], out["height"], out["precision"]) == (192, 128, "u16-non-linear")
    assert '<tag name="Exif.Photo.ISOSpeedRatings">400</tag>' in out["metadata"]
    [converted] = json.loads(Path(f"{recording}.stdout").read_text(encoding="utf-8"))["files"]
    assert (converted["status"], converted["profile"]) == ("converted", "xtrans-lite")
    assert option_values(recorded_calls(recording)[0], "--profile") == []
    assert tiff_summary(saved)["shape"] == EXPECTED_TIFF["shape"]
    assert not list((work / "tmp").glob("raw2rgb-gimp-*")), "the temporary TIFF was left behind"
