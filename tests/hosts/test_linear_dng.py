"""Raw developers open the LinearRaw DNGs of `raw2rgb convert --format dng` with the right colours.

darktable-cli 4.2 (this Debian), darktable-cli 5.0 (the trixie chroot of .ci/install-hosts) and
rawtherapee-cli 5.9 each develop a DNG of a known patch image (a grey and three colours) to a TIFF.
None may warn about the DNG's colour metadata, and the render must keep the grey grey and each
colour's hue: the hosts fall back silently to another matrix (darktable 4.2, RawTherapee) or to a
black frame (darktable 5.0) when the ColorMatrix1 is missing, and darktable 5.0 and RawTherapee
take a ColorMatrix1 whose rows are scaled to white (dcraw's normalisation) at its word and shift
the colours, so the colours are the real check.

Two DNGs: one written here with tifffile in darktable's own linear-DNG layout (the reference the
checks are proven on, also with its colour tags left out), and raw2rgb's own output.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import make_classical_develop_profile
from hostrun import (
    in_trixie,
    patch_colour_problems,
    run_bounded,
    skip_unless_in_trixie,
    skip_unless_installed,
    write_linear_test_dng,
    write_patch_raw,
)

pytestmark = pytest.mark.hosts

HOST_TIMEOUT_S = 120

#: what the hosts print about a DNG's colour metadata (seen with the tags left out, see
#: test_the_checks_catch_missing_colour_tags): darktable 4.2 with `-d imageio`: "dng illuminant 0"
#: (no CalibrationIlluminant1), "[temperature] failed to read camera white balance" (no
#: AsShotNeutral); darktable 5.0 with `-d imageio`: "undefined CalibrationIlluminant1", "Unknown
#: Illuminant fallback to D65", "[colorin] unsupported input profile has been replaced by linear
#: Rec709 RGB!" (no ColorMatrix1); RawTherapee: "Cannot use camera white balance." (no
#: AsShotNeutral). Newer darktables say "color matrix not found" (darktable#20913).
COLOUR_WARNINGS = re.compile(
    r"matrix not found|unsupported input profile|undefined CalibrationIlluminant|unknown illuminant fallback"
    r"|dng illuminant 0\b|failed to read camera white balance|cannot use camera white balance", re.IGNORECASE)


def colour_warnings(log: str) -> list[str]:
    return [line.strip() for line in log.splitlines() if COLOUR_WARNINGS.search(line)]


def read_render(path: Path):
    import tifffile

    return tifffile.imread(path)


# ------------------------------------------------------------------------------------------
# the hosts, each as a function (DNG, output TIFF, scratch folder) → the program's output


def darktable42(dng: Path, out: Path, work: Path) -> str:
    config = work / "dt42 config"
    config.mkdir()
    # -d imageio: darktable 4.2 prints the DNG's illuminant and white-balance problems only then
    command = ["darktable-cli", str(dng), str(out), "--core", "--configdir", str(config),
               "--cachedir", str(config / "cache"), "--library", ":memory:",
               "--conf", "write_sidecar_files=never", "-d", "imageio"]
    finished = run_bounded(command, timeout=HOST_TIMEOUT_S, env={**os.environ, "HOME": str(work)})
    assert finished.returncode == 0, f"darktable-cli failed ({finished.returncode}):\n{finished.output[-4000:]}"
    return finished.output


def darktable50(dng: Path, out: Path, work: Path) -> str:
    config = work / "dt50 config"
    config.mkdir()
    # the chroot sees only `work` of the host's files
    dng = Path(shutil.copy(dng, work / dng.name))
    command = in_trixie(
        work, "/usr/bin/env", f"HOME={work}",
        "timeout", "-k", "5", str(HOST_TIMEOUT_S),
        "darktable-cli", str(dng), str(out), "--core", "--configdir", str(config),
        "--cachedir", str(config / "cache"), "--library", ":memory:",
        "--conf", "write_sidecar_files=never", "-d", "imageio",
        # darktable 5.0.1 with OMP_NUM_THREADS=1 in its environment (as these tests are run on
        # small machines) but its own thread count left at the core count renders only the top
        # half of a frame, the rest black (seen with Bayer DNGs too): give it one thread itself
        "-t", "1",
    )
    env = {name: value for name, value in os.environ.items() if name != "OMP_NUM_THREADS"}
    finished = run_bounded(command, timeout=HOST_TIMEOUT_S + 20, env=env)
    assert finished.returncode == 0, f"darktable-cli 5.0 failed ({finished.returncode}):\n{finished.output[-4000:]}"
    return finished.output


def rawtherapee(dng: Path, out: Path, work: Path) -> str:
    home = work / "rt home"
    home.mkdir()
    # RawTherapee keeps its options and cache under $HOME/.config and .cache: a fresh, writable one
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_CACHE_HOME": str(home / ".cache")}
    # -t: 16-bit TIFF, -Y: overwrite, -c: the input (last); no -p/-d: RawTherapee's neutral defaults
    command = ["rawtherapee-cli", "-o", str(out), "-t", "-Y", "-c", str(dng)]
    finished = run_bounded(command, timeout=HOST_TIMEOUT_S, env=env)
    assert finished.returncode == 0, f"rawtherapee-cli failed ({finished.returncode}):\n{finished.output[-4000:]}"
    return finished.output


HOSTS = {
    "darktable-4.2": (darktable42, lambda: skip_unless_installed("darktable-cli")),
    "darktable-5.0": (darktable50, lambda: skip_unless_in_trixie("darktable-cli")),
    "rawtherapee": (rawtherapee, lambda: skip_unless_installed("rawtherapee-cli")),
}


def develop(host: str, dng: Path, work: Path):
    """Develop `dng` with `host`; its render and the colour warnings it printed."""
    run, skip_unless_available = HOSTS[host]
    skip_unless_available()
    work.mkdir(parents=True, exist_ok=True)
    out = work / f"{host} render.tif"  # darktable-cli renames its output when the file exists
    log = run(dng, out, work)
    assert out.is_file(), f"{host} wrote no {out.name}:\n{log[-4000:]}"
    return read_render(out), colour_warnings(log)


# ------------------------------------------------------------------------------------------
# the DNGs


@pytest.fixture(scope="module")
def raw2rgb_dng(raw2rgb_exe, tmp_path_factory) -> Path:
    """raw2rgb's own DNG of the patch image (Adobe's layout: a thumbnail in IFD0, the image in a SubIFD)."""
    folder = tmp_path_factory.mktemp("raw2rgb dng")
    raw = write_patch_raw(folder / "patches.dng")
    profile = make_classical_develop_profile(folder / "develop-classical.safetensors")
    out_dir = folder / "developed"
    done = subprocess.run(
        [str(raw2rgb_exe), "convert", str(raw), "--format", "dng", "--profile", str(profile), "--device", "cpu",
         "--output-dir", str(out_dir), "--quiet", "--json"],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, f"raw2rgb convert --format dng failed:\n{done.stdout}\n{done.stderr}"
    (entry,) = json.loads(done.stdout)["files"]
    assert entry["status"] == "converted", entry
    dng = Path(entry["output"])
    assert dng == out_dir / "patches.dng" and dng.is_file(), entry
    return dng


@pytest.fixture
def dng(request, tmp_path) -> Path:
    if request.param == "reference":
        return write_linear_test_dng(tmp_path / "patches linear.dng")
    return request.getfixturevalue("raw2rgb_dng")


# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dng", ["reference", "raw2rgb"], indirect=True)
@pytest.mark.parametrize("host", list(HOSTS))
def test_host_develops_the_linear_dng(host, dng, tmp_path):
    render, warnings = develop(host, dng, tmp_path / "work")

    assert not warnings, f"{host} warned about the DNG's colour metadata: {warnings}"
    assert render.ndim == 3 and render.shape[2] >= 3, render.shape
    assert render.shape[:2] == (128, 192), f"{host} rendered {render.shape[:2]}, not the DNG's 128×192"
    problems = patch_colour_problems(render)
    assert not problems, f"{host} rendered the patches wrongly: {problems}"


#: faults of a DNG's colour tags, as write_linear_test_dng's arguments
FAULTS = {
    "no ColorMatrix1": {"color_matrix": False, "illuminant": False},
    "no CalibrationIlluminant1": {"illuminant": False},
    "no AsShotNeutral": {"as_shot_neutral": False},
    "ColorMatrix1 rows scaled to white": {"matrix_rows_to_white": True},
}
#: which faults each host is seen to reveal, by a warning or by wrong colours
REVEALED = {
    # darktable 4.2 scales the matrix rows to white itself: a white-balanced matrix goes unnoticed
    "darktable-4.2": {"no ColorMatrix1", "no CalibrationIlluminant1", "no AsShotNeutral"},
    "darktable-5.0": set(FAULTS),
    # RawTherapee reads a ColorMatrix1 without its illuminant as D65, without a word
    "rawtherapee": {"no ColorMatrix1", "no AsShotNeutral", "ColorMatrix1 rows scaled to white"},
}


@pytest.mark.parametrize("host", list(HOSTS))
def test_the_checks_catch_faulty_colour_tags(host, tmp_path):
    """The warning scan and the colour check have teeth: each flags a DNG with a faulty colour tag."""
    missed = []
    for fault in sorted(REVEALED[host]):
        dng = write_linear_test_dng(tmp_path / f"{fault}.dng", **FAULTS[fault])
        render, warnings = develop(host, dng, tmp_path / f"work {fault}")
        if not warnings and not patch_colour_problems(render):
            missed.append(fault)
    assert not missed, f"{host} developed DNGs with {missed} with no warning and right colours"
