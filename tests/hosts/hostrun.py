"""Running real host programs from tests: bounded in time, killed as a whole process group."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

#: files whose names a shell would act on: spaces, quotes, $, ;, backticks, globs, non-ASCII.
#: Each payload would create a file called pwned* in the working folder if it ever ran.
HOSTILE_STEMS = (
    "with space",
    "it's",
    'say "cheese"',
    "$(touch pwned-dollar)",
    "a;touch pwned-semicolon;b",
    "`touch pwned-backtick`",
    "$HOME and ${PATH}",
    "glob [1] *",
    "café 写真 ünïcødé",
    "-starts-with-dash",
)


TEST_ISO = 400
TEST_DATETIME = "2024:05:06 07:08:09"


@dataclass
class Finished:
    returncode: int
    output: str
    seconds: float


class TimedOut(AssertionError):
    """A host program ran past its time limit and was killed with everything it started."""


def kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_bounded(command: list[str], *, timeout: float, env: dict | None = None, cwd: Path | None = None,
                started_by: Callable[[], bool] | None = None, start_timeout: float = 0.0) -> Finished:
    """Run `command` with stdout+stderr captured; after `timeout` seconds kill its whole group.

    With `started_by`, the program must make that true within `start_timeout` seconds (polled),
    or it is killed and TimedOut says it never started.
    """
    started = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, cwd=cwd, start_new_session=True)

        def output() -> str:
            log.seek(0)
            return log.read().decode("utf-8", "replace")

        try:
            if started_by is not None:
                while not started_by() and process.poll() is None:
                    if time.perf_counter() - started > start_timeout:
                        kill_group(process)
                        process.wait()
                        raise TimedOut(f"{command[0]} did not start within {start_timeout:.0f} s; "
                                       f"its output ended with:\n{output()[-4000:]}")
                    time.sleep(0.2)
            process.wait(timeout=max(1.0, timeout - (time.perf_counter() - started)))
        except subprocess.TimeoutExpired:
            kill_group(process)
            process.wait()
            raise TimedOut(f"{command[0]} ran past {timeout:.0f} s and was killed; its output ended with:\n"
                           f"{output()[-4000:]}") from None
        finally:
            # whatever the program left running in its session (Xvfb, a converter) goes too
            kill_group(process)
        return Finished(process.returncode, output(), time.perf_counter() - started)


#: the Debian trixie chroot that .ci/install-hosts builds: GIMP 3.0 and darktable 5.0.
TRIXIE_CHROOT = Path(os.environ.get("RAW2RGB_HOST_CACHE", "/var/cache/raw2rgb-hosts")) / "gimp3-trixie"
#: where the host's root shows inside the chroot while `in_trixie` runs a command there.
HOST_ROOT_IN_CHROOT = "/run/raw2rgb-host"

# $1 chroot, $2 the test folder, then the command. /tmp and /run of the chroot get a fresh tmpfs,
# so nothing made for a test outlives it; every mount dies with the namespace. The test folder is
# bind-mounted at its own path, so the host and the chroot name every test file alike.
_ENTER_CHROOT = r"""
set -e
root="$1"; work="$2"; shift 2
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/tmp"
mount -t tmpfs tmpfs "$root/run"
mkdir -p "$root$work" "$root/run/raw2rgb-host"
mount --bind "$work" "$root$work"
mount --rbind / "$root/run/raw2rgb-host"
exec chroot "$root" "$@"
"""


def trixie_skip_reason(program: str) -> str | None:
    """Why `program` cannot run in the trixie chroot here, or None when it can."""
    if not (TRIXIE_CHROOT / ".raw2rgb-ready").is_file():
        return f"no trixie chroot at {TRIXIE_CHROOT} (.ci/install-hosts builds it; it needs root and debootstrap)"
    if not (TRIXIE_CHROOT / "usr" / "bin" / program).is_file():
        return f"the trixie chroot has no {program} (run .ci/install-hosts again to add it)"
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "running programs in the trixie chroot needs root and unshare (mount namespaces)"
    return None


def skip_unless_installed(program: str) -> None:
    if shutil.which(program) is None:
        pytest.skip(f"{program} is not installed (.ci/install-hosts installs it)")


def skip_unless_in_trixie(program: str) -> None:
    reason = trixie_skip_reason(program)
    if reason:
        pytest.skip(reason)


def in_trixie(work: Path, *command: str) -> list[str]:
    """The command line that runs `command` inside the trixie chroot, `work` visible at its own path."""
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _ENTER_CHROOT, "sh",
            str(TRIXIE_CHROOT), str(work), *command]


def run_on_host(wrapper: Path, program: Path) -> Path:
    """A two-line script for the chroot that starts `program` (a host path) on the host: raw2rgb,
    its Python and torch live there."""
    wrapper.write_text(f"#!/bin/sh\nexec /usr/sbin/chroot {HOST_ROOT_IN_CHROOT} {shlex.quote(str(program))} \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


def raw2rgb_console_script() -> Path | None:
    """The `raw2rgb` console script of the environment running the tests."""
    beside = Path(sys.executable).parent / "raw2rgb"
    if beside.is_file():
        return beside
    found = shutil.which("raw2rgb")
    return Path(found) if found else None


def write_test_raw(path: Path, *, height: int = 128, width: int = 192, seed: int = 0, cfa: str = "RGGB") -> Path:
    """A small synthetic DNG (12-bit) that darktable, GIMP's loaders and raw2rgb read: Bayer RGGB,
    or X-Trans with `cfa` = "xtrans" (a 6×6 CFAPattern at the X-T3's phase, as Adobe's converter
    writes Fujifilm files)."""
    from raw2rgb_plugin.io.dng_write import write_cfa_dng
    from raw2rgb_plugin.io.exif_read import PhotoMetadata
    from raw2rgb_plugin.pipeline.cfa import xtrans_pattern
    from raw2rgb_plugin.training.data.unprocess import mosaic_rgb

    from helpers import TEST_XYZ_TO_CAMERA, smooth_scene

    black, white = 64, 4095
    pattern = xtrans_pattern() if cfa == "xtrans" else cfa
    scene = smooth_scene(height, width, seed=seed)
    mosaic = mosaic_rgb(np.round(black + scene * (white - black)).astype(np.uint16), pattern)
    write_cfa_dng(
        path, mosaic, pattern, black_level=black, white_level=white,
        color_matrix1=TEST_XYZ_TO_CAMERA, as_shot_neutral=(0.55, 1.0, 0.7),
        make="raw2rgb", model="Host Test",
        metadata=PhotoMetadata(make="raw2rgb", model="Host Test", exposure_time=Fraction(1, 250),
                               f_number=Fraction(28, 10), iso=TEST_ISO, datetime_original=TEST_DATETIME),
    )
    return path


#: linear sRGB → XYZ (D65), to build camera data whose colours a host must reproduce.
_SRGB_TO_XYZ = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
#: the four patches of `patch_scene`, row-major in a 2×2 layout, in linear sRGB: a mid grey and
#: three colours whose dominant channel a host that applies the DNG's colour matrix keeps.
PATCHES = {"grey": (0.18, 0.18, 0.18), "red": (0.4, 0.05, 0.05), "green": (0.05, 0.3, 0.05), "blue": (0.05, 0.05, 0.4)}

#: DNG tags (DNG 1.4 specification, chapter 4) and TIFF datatypes, as tifffile's extratags take them.
_DNG_VERSION, _DNG_BACKWARD_VERSION, _UNIQUE_CAMERA_MODEL = 50706, 50707, 50708
_WHITE_LEVEL, _COLOR_MATRIX_1, _AS_SHOT_NEUTRAL, _CALIBRATION_ILLUMINANT_1 = 50717, 50721, 50728, 50778
_MAKE, _MODEL = 271, 272
_BYTE, _ASCII, _SHORT, _LONG, _RATIONAL, _SRATIONAL = 1, 2, 3, 4, 5, 10
_LINEAR_RAW = 34892


def patch_scene(height: int = 128, width: int = 192) -> np.ndarray:
    """The PATCHES as a linear sRGB image (H, W, 3), one quadrant each."""
    scene = np.zeros((height, width, 3))
    for i, rgb in enumerate(PATCHES.values()):
        row, col = divmod(i, 2)
        scene[row * height // 2:(row + 1) * height // 2, col * width // 2:(col + 1) * width // 2] = rgb
    return scene


def scene_to_camera(scene: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera RGB in [0, 1] of a linear sRGB scene seen by a sensor with TEST_XYZ_TO_CAMERA, and
    that sensor's AsShotNeutral (its response to D65 white, largest channel 1)."""
    from helpers import TEST_XYZ_TO_CAMERA

    camera_from_srgb = TEST_XYZ_TO_CAMERA @ _SRGB_TO_XYZ
    white = camera_from_srgb @ np.ones(3)
    return np.clip(scene @ camera_from_srgb.T / white.max(), 0, 1), white / white.max()


def _rationals(values, denominator: int = 10000) -> tuple[int, ...]:
    out: list[int] = []
    for value in values:
        fraction = Fraction(float(value)).limit_denominator(denominator)
        out += [fraction.numerator, fraction.denominator]
    return tuple(out)


def write_linear_test_dng(path: Path, *, color_matrix: bool = True, illuminant: bool = True,
                          as_shot_neutral: bool = True, matrix_rows_to_white: bool = False) -> Path:
    """A LinearRaw DNG of `patch_scene` laid out as darktable's own linear DNG writer does: one
    IFD0 image, PhotometricInterpretation 34892, 3×16-bit camera RGB, black 0, white 65535,
    ColorMatrix1 (XYZ → camera) with CalibrationIlluminant1 = D65 and AsShotNeutral. The flags
    leave tags out, or (`matrix_rows_to_white`) scale each row of the matrix so that D65 white
    maps to (1, 1, 1), a white-balanced matrix that the camera-native pixels and AsShotNeutral
    contradict: to see what a host says about such DNGs."""
    import tifffile

    from helpers import TEST_XYZ_TO_CAMERA

    camera, neutral = scene_to_camera(patch_scene())
    matrix = TEST_XYZ_TO_CAMERA
    if matrix_rows_to_white:
        matrix = matrix / (matrix @ (_SRGB_TO_XYZ @ np.ones(3)))[:, None]
    tags = [
        (_DNG_VERSION, _BYTE, 4, (1, 4, 0, 0), True),
        (_DNG_BACKWARD_VERSION, _BYTE, 4, (1, 1, 0, 0), True),
        (_MAKE, _ASCII, 0, "raw2rgb", True),
        (_MODEL, _ASCII, 0, "Host Test", True),
        (_UNIQUE_CAMERA_MODEL, _ASCII, 0, "raw2rgb Host Test", True),
        (_WHITE_LEVEL, _LONG, 1, 65535, True),
    ]
    if color_matrix:
        tags.append((_COLOR_MATRIX_1, _SRATIONAL, 9, _rationals(matrix.ravel()), True))
    if illuminant:
        tags.append((_CALIBRATION_ILLUMINANT_1, _SHORT, 1, 21, True))
    if as_shot_neutral:
        tags.append((_AS_SHOT_NEUTRAL, _RATIONAL, 3, _rationals(neutral), True))
    pixels = np.round(camera * 65535).astype(np.uint16)
    tifffile.imwrite(path, pixels, photometric=_LINEAR_RAW, planarconfig="contig", subfiletype=0,
                     extratags=tags, software=False, metadata=None)
    return path


def write_patch_raw(path: Path) -> Path:
    """A Bayer DNG (RGGB, 12-bit) of `patch_scene`, with the colour tags of write_linear_test_dng."""
    from raw2rgb_plugin.io.dng_write import write_bayer_dng
    from raw2rgb_plugin.training.data.unprocess import mosaic_rgb

    from helpers import TEST_XYZ_TO_CAMERA

    black, white = 64, 4095
    camera, neutral = scene_to_camera(patch_scene())
    mosaic = mosaic_rgb(np.round(black + camera * (white - black)).astype(np.uint16), "RGGB")
    write_bayer_dng(path, mosaic, "RGGB", black_level=black, white_level=white, color_matrix1=TEST_XYZ_TO_CAMERA,
                    as_shot_neutral=tuple(neutral), make="raw2rgb", model="Host Test")
    return path


def patch_means(image: np.ndarray, inset: int = 12) -> dict[str, np.ndarray]:
    """The mean RGB (scaled to [0, 1]) of the middle of each PATCHES quadrant of a host's render."""
    scale = float(np.iinfo(image.dtype).max) if image.dtype.kind in "ui" else 1.0
    height, width = image.shape[:2]
    means = {}
    for i, name in enumerate(PATCHES):
        row, col = divmod(i, 2)
        block = image[row * height // 2 + inset:(row + 1) * height // 2 - inset,
                      col * width // 2 + inset:(col + 1) * width // 2 - inset, :3]
        means[name] = block.reshape(-1, 3).mean(axis=0) / scale
    return means


def patch_colour_problems(image: np.ndarray) -> list[str]:
    """What is wrong with a host's display-referred render of `patch_scene` (empty: nothing).

    Tone curves differ between hosts and versions, so only what any correct colour pipeline keeps
    is checked: the grey stays grey and mid-toned, each colour patch keeps its dominant channel
    well above the two others, which stay close to each other. A host that ignored the colour
    matrix (seen: darktable 4.2 and RawTherapee fall back to another matrix, darktable 5.0 to a
    black frame) fails these.
    """
    problems = []
    means = patch_means(image)
    grey = means["grey"]
    if not 0.15 <= grey.mean() <= 0.85:
        problems.append(f"the grey patch has a mean of {grey.mean():.3f} (black, blown or garbage)")
    if np.ptp(grey) > 0.04:
        problems.append(f"the grey patch is tinted: RGB {np.round(grey, 3).tolist()}")
    for channel, name in enumerate(("red", "green", "blue")):
        rgb = means[name]
        others = np.delete(rgb, channel)
        if rgb[channel] - others.max() < 0.15:
            problems.append(f"the {name} patch is not {name}: RGB {np.round(rgb, 3).tolist()}")
        elif np.ptp(others) > 0.05:
            problems.append(f"the {name} patch has a wrong hue: RGB {np.round(rgb, 3).tolist()}")
    return problems


def tiff_summary(path: Path) -> dict:
    """Shape, dtype, whether it has an ICC profile, and the EXIF that write_test_raw put in the RAW."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        exif = page.tags["ExifTag"].value if "ExifTag" in page.tags else {}
        return {
            "shape": page.shape,
            "dtype": str(page.dtype),
            "icc": "InterColorProfile" in page.tags,
            "iso": exif.get("ISOSpeedRatings"),
            "datetime_original": exif.get("DateTimeOriginal"),
        }


#: what tiff_summary says of a TIFF that raw2rgb made from write_test_raw's RAW.
EXPECTED_TIFF = {
    "shape": (128, 192, 3), "dtype": "uint16", "icc": True, "iso": TEST_ISO, "datetime_original": TEST_DATETIME,
}


#: what `write_converter_wrapper(rename=True)` calls each TIFF: characters that JSON escapes
#: (quotes, backslash) or that `ensure_ascii` writes as \u escapes, one beyond the BMP (a
#: surrogate pair). {stem} is the RAW's own stem.
RENAMED_TIFF = 'developed "{stem}" \\ 写真 😀.tif'

_CONVERTER_WRAPPER = r"""
import json, os, subprocess, sys

# one JSON line per call: the arguments exactly as the plug-in passed them
with open(__file__ + ".argv", "a", encoding="utf-8", errors="surrogateescape") as calls:
    calls.write(json.dumps(sys.argv[1:], ensure_ascii=True) + "\n")
done = subprocess.run([REAL_RAW2RGB, *sys.argv[1:]], stdout=subprocess.PIPE)
output = done.stdout
if RENAME_TO and output.strip():
    summary = json.loads(output.decode("utf-8", "surrogateescape"))
    for entry in summary["files"]:
        if entry["status"] == "converted":
            folder, name = os.path.split(entry["output"])
            renamed = os.path.join(folder, RENAME_TO.format(stem=os.path.splitext(name)[0]))
            os.rename(entry["output"], renamed)
            entry["output"] = renamed
    output = (json.dumps(summary, indent=2, ensure_ascii=True) + "\n").encode("ascii")
with open(__file__ + ".stdout", "wb") as copy:
    copy.write(output)
sys.stdout.buffer.write(output)
sys.exit(done.returncode)
"""


def write_converter_wrapper(folder: Path, raw2rgb_exe: Path, *, rename: bool = False) -> Path:
    """An executable that runs the real raw2rgb with its arguments and keeps its stdout.

    The stdout (the `--json` summary when asked for) is copied to `<wrapper>.stdout`, so a test
    can compare what a plug-in shows with what raw2rgb said; the arguments of every call are
    appended to `<wrapper>.argv` (read them with `recorded_calls`). With `rename`, every TIFF raw2rgb
    reports is moved to RENAMED_TIFF in the same folder and the summary reports that path
    instead, written with every non-ASCII character as a \\u escape: a loader that guesses
    `<stem>.tif`, or decodes the JSON's escapes wrongly, cannot open it.
    """
    wrapper = folder / ("raw2rgb renaming" if rename else "raw2rgb recording")
    wrapper.write_text(
        f"#!{sys.executable}\n"
        f"REAL_RAW2RGB = {str(raw2rgb_exe)!r}\n"
        f"RENAME_TO = {RENAMED_TIFF if rename else ''!r}\n"
        + _CONVERTER_WRAPPER,
        encoding="utf-8",
    )
    wrapper.chmod(0o755)
    return wrapper


def recorded_calls(wrapper: Path) -> list[list[str]]:
    """The arguments of each call of a `write_converter_wrapper` executable, in order."""
    log = Path(f"{wrapper}.argv")
    if not log.is_file():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]


def option_values(argv: list[str], option: str) -> list[str]:
    """The value after each occurrence of `option` in `argv`."""
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == option]


def install_integration(raw2rgb_exe: Path, host: str, config_dir: Path, *extra: str) -> str:
    """`raw2rgb install HOST --config-dir DIR ...` through the real console script; its stdout."""
    done = subprocess.run(
        [str(raw2rgb_exe), "install", host, "--config-dir", str(config_dir), *extra],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, f"raw2rgb install {host} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout
