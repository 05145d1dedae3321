"""The GIMP 2.10 C plug-in inside the real gimp-console-2.10 (Debian's GIMP).

`raw2rgb install gimp2` builds the plug-in into a temporary GIMP profile whose gimprc makes it the
RAW importer; Script-Fu batch commands then open RAWs through GIMP's own `gimp-file-load`. This
GIMP exits 0 even when a batch command fails, so the tests read its output and the files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hostrun import EXPECTED_TIFF, install_integration, run_bounded, tiff_summary, write_test_raw

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


def run_gimp2(profile: Path, *commands: str):
    env = dict(os.environ, GIMP2_DIRECTORY=str(profile), HOME=str(profile.parent))
    command = ["gimp-console-2.10", "-i", "-d", "-f", "-n"]
    for batch in (*commands, "(gimp-quit 0)"):
        command += ["-b", batch]
    finished = run_bounded(command, timeout=GIMP_TIMEOUT_S, env=env, cwd=profile.parent)
    print(f"gimp-console-2.10 ran {finished.seconds:.1f} s")
    return finished


def test_gimp2_opens_a_raw_through_raw2rgb(profile, tmp_path):
    raw = write_test_raw(tmp_path / "it's a \"raw\" $(touch pwned) café.dng")
    saved = tmp_path / "saved.tif"

    finished = run_gimp2(profile, f"""
        (let* ((image (car (gimp-file-load RUN-NONINTERACTIVE {scheme_string(str(raw))} "raw")))
               (drawable (car (gimp-image-get-active-drawable image))))
          (gimp-message (string-append "raw2rgb-test size "
                                       (number->string (car (gimp-image-width image))) "x"
                                       (number->string (car (gimp-image-height image)))
                                       " precision " (number->string (car (gimp-image-get-precision image)))
                                       " name " (car (gimp-image-get-filename image))))
          (file-tiff-save RUN-NONINTERACTIVE image drawable {scheme_string(str(saved))} "saved" 0))""")

    assert f"raw2rgb-test size 192x128 precision {GIMP_PRECISION_U16_NON_LINEAR} name {raw}" in finished.output, finished.output
    assert tiff_summary(saved)["shape"] == EXPECTED_TIFF["shape"]
    assert tiff_summary(saved)["dtype"] == "uint16"
    assert not list(tmp_path.rglob("pwned"))


def test_gimp2_reports_a_failed_conversion(profile, tmp_path):
    bad = tmp_path / "broken.dng"
    bad.write_bytes(b"II*\x00" + os.urandom(4000))
    saved = tmp_path / "saved.tif"

    finished = run_gimp2(profile, f"""
        (let* ((image (car (gimp-file-load RUN-NONINTERACTIVE {scheme_string(str(bad))} "raw")))
               (drawable (car (gimp-image-get-active-drawable image))))
          (file-tiff-save RUN-NONINTERACTIVE image drawable {scheme_string(str(saved))} "saved" 0))""")

    assert finished.returncode == 0  # this GIMP says nothing by its exit status
    assert "Procedure execution of gimp-file-load failed: raw2rgb could not convert broken.dng: " in finished.output, finished.output
    assert str(bad) in finished.output  # the converter's own one-line reason names the file
    assert not saved.exists()


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
