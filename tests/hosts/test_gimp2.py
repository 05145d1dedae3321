"""The GIMP 2.10 C plug-in inside the real gimp-console-2.10 (Debian's GIMP).

`raw2rgb install gimp2` builds the plug-in into a temporary GIMP profile whose gimprc makes it the
RAW importer; Script-Fu batch commands then open RAWs through GIMP's own `gimp-file-load`. This
GIMP exits 0 even when a batch command fails, so the tests read its output and the files.
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
    install_integration,
    option_values,
    recorded_calls,
    run_bounded,
    tiff_summary,
    write_converter_wrapper,
    write_test_raw,
)
from xtrans_helpers import make_xtrans_profile

pytestmark = pytest.mark.hosts

GIMP_TIMEOUT_S = 120
GIMP_PRECISION_U16_NON_LINEAR = 250  # GimpPrecision in GIMP 2.10


@pytest.fixture(scope="module")
def gimp2() -> str:
    if shutil.which("gimp-console-2.10") is None:
        pytest.skip("gimp-console-2.10 is not installed (.ci/install-hosts installs Debian's gimp)")
    if shutil.which("gimptool-2.0") is None or shutil.which("cc") is None:
        pytest.skip("gimptool-2.0 or cc is missing (.ci/install-hosts installs libgimp2.0-dev and gcc)")
    return shutil.which("gimp-console-2.10")


@pytest.fixture
def profile(tmp_path, raw2rgb_exe, tiny_profile, gimp2) -> Path:
    """A GIMP 2.10 profile with the plug-in built in, recording an executable path with spaces and quotes."""
    hostile_bin = tmp_path / "bin dir 'q' \"$x\""
    hostile_bin.mkdir()
    executable = hostile_bin / "raw2rgb"
    executable.symlink_to(raw2rgb_exe)
    profile = tmp_path / "gimp2 profile"
    profile.mkdir()
    install_integration(raw2rgb_exe, "gimp2", profile, "--executable", str(executable),
                        "--profile", str(tiny_profile), "--device", "cpu")
    plug_in = profile / "plug-ins" / "file-raw2rgb" / "file-raw2rgb"
    assert os.access(plug_in, os.X_OK)
    # only one RAW loader is active: ours (Debian's file-darktable would also claim RAWs)
    (profile / "gimprc").write_text(f"(import-raw-plug-in {scheme_string(str(plug_in))})\n", encoding="utf-8")
    return profile


def scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_gimp2(profile: Path, *commands: str, env: dict | None = None):
    """Run the Script-Fu `commands`; the plug-in makes its temporary folders in <test folder>/tmp."""
    tmp = profile.parent / "tmp"
    tmp.mkdir(exist_ok=True)
    env = dict(os.environ, GIMP2_DIRECTORY=str(profile), HOME=str(profile.parent), TMPDIR=str(tmp), **(env or {}))
    command = ["gimp-console-2.10", "-i", "-d", "-f", "-n"]
    for batch in (*commands, "(gimp-quit 0)"):
        command += ["-b", batch]
    finished = run_bounded(command, timeout=GIMP_TIMEOUT_S, env=env, cwd=profile.parent)
    print(f"gimp-console-2.10 ran {finished.seconds:.1f} s")
    return finished


def left_behind(profile: Path) -> list[Path]:
    return list((profile.parent / "tmp").glob("raw2rgb-gimp-*"))


def open_and_save(raw: Path, saved: Path) -> str:
    """Script-Fu: open `raw` through GIMP's RAW importer, describe the image, save it as `saved`."""
    return f"""
        (let* ((image (car (gimp-file-load RUN-NONINTERACTIVE {scheme_string(str(raw))} "raw")))
               (drawable (car (gimp-image-get-active-drawable image))))
          (gimp-message (string-append "raw2rgb-test size "
                                       (number->string (car (gimp-image-width image))) "x"
                                       (number->string (car (gimp-image-height image)))
                                       " precision " (number->string (car (gimp-image-get-precision image)))
                                       " name " (car (gimp-image-get-filename image))))
          (file-tiff-save RUN-NONINTERACTIVE image drawable {scheme_string(str(saved))} "saved" 0))"""


def test_gimp2_opens_a_raw_through_raw2rgb(profile, tmp_path):
    # raw2rgb's JSON summary escapes the quotes and the backslash of the TIFF's path
    raw = write_test_raw(tmp_path / "it's a \"raw\" \\ $(touch pwned) café 写真.dng")
    saved = tmp_path / "saved.tif"

    finished = run_gimp2(profile, open_and_save(raw, saved))

    assert f"raw2rgb-test size 192x128 precision {GIMP_PRECISION_U16_NON_LINEAR} name {raw}" in finished.output, finished.output
    assert tiff_summary(saved)["shape"] == EXPECTED_TIFF["shape"]
    assert tiff_summary(saved)["dtype"] == "uint16"
    assert not list(tmp_path.rglob("pwned"))
    assert not left_behind(profile), "the temporary TIFF was left behind"


def test_gimp2_opens_the_tiff_that_raw2rgb_reports(profile, tmp_path, raw2rgb_exe):
    """The TIFF lands under another name than <stem>.tif, reported in \\u escapes: only a plug-in
    that reads the path from the JSON summary, and decodes it right, opens it."""
    renaming = write_converter_wrapper(tmp_path, raw2rgb_exe, rename=True)
    raw = write_test_raw(tmp_path / "renamed é.dng")
    saved = tmp_path / "saved.tif"

    finished = run_gimp2(profile, open_and_save(raw, saved), env={"RAW2RGB_EXECUTABLE": str(renaming)})

    summary = Path(f"{renaming}.stdout").read_text(encoding="ascii")
    reported = json.loads(summary)["files"][0]["output"]
    assert Path(reported).name == RENAMED_TIFF.format(stem="renamed é") and "\\ud83d\\ude00" in summary
    assert f"raw2rgb-test size 192x128 precision {GIMP_PRECISION_U16_NON_LINEAR} name {raw}" in finished.output, finished.output
    assert tiff_summary(saved)["shape"] == EXPECTED_TIFF["shape"]
    assert not left_behind(profile), "the renamed TIFF was left behind"


def test_gimp2_reports_a_failed_conversion(profile, tmp_path, raw2rgb_exe):
    recording = write_converter_wrapper(tmp_path, raw2rgb_exe)
    bad = tmp_path / "broken \"q\" \\ é.dng"
    bad.write_bytes(b"II*\x00" + os.urandom(4000))
    saved = tmp_path / "saved.tif"

    finished = run_gimp2(profile, f"""
        (let* ((image (car (gimp-file-load RUN-NONINTERACTIVE {scheme_string(str(bad))} "raw")))
               (drawable (car (gimp-image-get-active-drawable image))))
          (file-tiff-save RUN-NONINTERACTIVE image drawable {scheme_string(str(saved))} "saved" 0))""",
        env={"RAW2RGB_EXECUTABLE": str(recording)})

    assert finished.returncode == 0  # this GIMP says nothing by its exit status
    # the reason is the summary's `error` for the file, not raw2rgb's stderr line ("error: <path>: ...")
    reason = json.loads(Path(f"{recording}.stdout").read_text(encoding="utf-8"))["files"][0]["error"]
    assert reason
    message = f"raw2rgb could not convert {bad.name}: {reason}"
    lines = [line.strip() for line in finished.output.splitlines()]
    assert f"Error: Procedure execution of gimp-file-load failed: {message}" in lines, finished.output
    assert message in lines  # GIMP's own report of the error, the message alone on its line
    assert not saved.exists()
    assert not left_behind(profile)


def test_gimp2_batch_procedure_takes_profile_and_device(profile, tmp_path, tiny_profile):
    raw = write_test_raw(tmp_path / "batch.dng")
    missing = tmp_path / "no such profile.safetensors"

    finished = run_gimp2(
        profile,
        f"""(let* ((image (car (plug-in-raw2rgb-open RUN-NONINTERACTIVE {scheme_string(str(raw))}
                                                      {scheme_string(str(tiny_profile))} "cpu"))))
              (gimp-message (string-append "raw2rgb-test width " (number->string (car (gimp-image-width image))))))""",
        f"""(plug-in-raw2rgb-open RUN-NONINTERACTIVE {scheme_string(str(raw))} {scheme_string(str(missing))} "cpu")""",
    )

    assert "raw2rgb-test width 192" in finished.output, finished.output
    assert "Procedure execution of plug-in-raw2rgb-open failed: raw2rgb could not convert batch.dng: " in finished.output
    assert str(missing) in finished.output


def test_gimp2_denoise_setting_reaches_raw2rgb(profile, tmp_path, raw2rgb_exe, tiny_profile):
    """GIMP 2.10 cannot pass the strength as an argument (see file-raw2rgb.c): it is the one
    `raw2rgb install gimp2 --denoise` recorded, or RAW2RGB_DENOISE."""
    install_integration(raw2rgb_exe, "gimp2", profile, "--executable", str(raw2rgb_exe),
                        "--profile", str(tiny_profile), "--device", "cpu", "--denoise", "0.5")
    recording = write_converter_wrapper(tmp_path, raw2rgb_exe)
    raw = write_test_raw(tmp_path / "grain.dng")
    saved = tmp_path / "saved.tif"
    env = {"RAW2RGB_EXECUTABLE": str(recording)}
    open_proc = f"""(plug-in-raw2rgb-open RUN-NONINTERACTIVE {scheme_string(str(raw))} "" "cpu")"""

    recorded = run_gimp2(profile, open_and_save(raw, saved), open_proc, env=env)
    from_env = run_gimp2(profile, open_and_save(raw, saved), env={**env, "RAW2RGB_DENOISE": "0.25"})
    bad = run_gimp2(profile, open_and_save(raw, saved), env={**env, "RAW2RGB_DENOISE": "2,5"})

    assert "raw2rgb-test size 192x128" in recorded.output and "raw2rgb-test size 192x128" in from_env.output
    calls = recorded_calls(recording)
    assert [option_values(call, "--denoise") for call in calls] == [["0.5"], ["0.5"], ["0.25"]], calls
    assert ("raw2rgb: the denoise strength '2,5' is not a number from 0 to 2 — fix RAW2RGB_DENOISE "
            "or run `raw2rgb install gimp2 --denoise S` again") in bad.output, bad.output
    assert len(recorded_calls(recording)) == 3  # a bad strength runs no converter
    assert not left_behind(profile)


def test_gimp2_lens_setting_reaches_raw2rgb(profile, tmp_path, raw2rgb_exe):
    """The loader and the four-argument plug-in-raw2rgb-open take RAW2RGB_LENS, else auto;
    plug-in-raw2rgb-open2 takes the denoise strength and the lens corrections as arguments."""
    recording = write_converter_wrapper(tmp_path, raw2rgb_exe)
    raw = write_test_raw(tmp_path / "lens.dng")
    saved = tmp_path / "saved.tif"
    env = {"RAW2RGB_EXECUTABLE": str(recording)}
    open_proc = f"""(plug-in-raw2rgb-open RUN-NONINTERACTIVE {scheme_string(str(raw))} "" "cpu")"""

    def open2(denoise: str, lens_corrections: str) -> str:
        return (f"""(plug-in-raw2rgb-open2 RUN-NONINTERACTIVE {scheme_string(str(raw))} "" "cpu" """
                f"""{denoise} {lens_corrections})""")

    default = run_gimp2(profile, open_and_save(raw, saved), open_proc, open2("0.5", "FALSE"), open2("1.0", "TRUE"),
                        env=env)
    from_env = run_gimp2(profile, open_and_save(raw, saved), open_proc, env={**env, "RAW2RGB_LENS": "off"})
    bad = run_gimp2(profile, open_and_save(raw, saved), open2("2.5", "TRUE"), env={**env, "RAW2RGB_LENS": "none"})

    assert "raw2rgb-test size 192x128" in default.output and "raw2rgb-test size 192x128" in from_env.output
    calls = recorded_calls(recording)
    assert [option_values(call, "--lens") for call in calls] == [["auto"], ["auto"], ["off"], ["auto"], ["off"], ["off"]]
    assert [option_values(call, "--denoise") for call in calls[2:4]] == [["0.5"], ["1"]], calls
    assert "raw2rgb: RAW2RGB_LENS is 'none' — set it to auto" in bad.output, bad.output
    assert "raw2rgb: the denoise strength 2.5 is not from 0 to 2" in bad.output, bad.output
    assert len(recorded_calls(recording)) == 6  # a bad setting runs no converter
    assert not left_behind(profile)


def test_gimp2_opens_an_xtrans_raw_with_the_installed_xtrans_profile(profile, tmp_path, raw2rgb_exe,
                                                                     isolated_profile_dir):
    """Issue 25: the plug-in as `raw2rgb install gimp2` builds it without --profile, so convert picks
    each file's sensor's profile: here a small X-Trans test profile installed as xtrans-lite."""
    shutil.copyfile(make_xtrans_profile(tmp_path / "xtrans-lite", "srgb", classical=True),
                    isolated_profile_dir / "xtrans-lite.safetensors")
    install_integration(raw2rgb_exe, "gimp2", profile, "--executable", str(raw2rgb_exe), "--device", "cpu")
    recording = write_converter_wrapper(tmp_path, raw2rgb_exe)
    raw = write_test_raw(tmp_path / "DSCF0001.dng", cfa="xtrans")
    saved = tmp_path / "saved.tif"

    finished = run_gimp2(profile, open_and_save(raw, saved), env={"RAW2RGB_EXECUTABLE": str(recording)})

    assert f"raw2rgb-test size 192x128 precision {GIMP_PRECISION_U16_NON_LINEAR} name {raw}" in finished.output, finished.output
    [converted] = json.loads(Path(f"{recording}.stdout").read_text(encoding="utf-8"))["files"]
    assert (converted["status"], converted["profile"]) == ("converted", "xtrans-lite")
    assert option_values(recorded_calls(recording)[0], "--profile") == []
    assert tiff_summary(saved)["shape"] == EXPECTED_TIFF["shape"]
    assert not left_behind(profile), "the temporary TIFF was left behind"
