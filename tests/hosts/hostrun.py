"""Running real host programs from tests: bounded in time, killed as a whole process group."""

from __future__ import annotations

import json
import os
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


def raw2rgb_console_script() -> Path | None:
    """The `raw2rgb` console script of the environment running the tests."""
    beside = Path(sys.executable).parent / "raw2rgb"
    if beside.is_file():
        return beside
    found = shutil.which("raw2rgb")
    return Path(found) if found else None


def write_test_raw(path: Path, *, height: int = 128, width: int = 192, seed: int = 0) -> Path:
    """A small synthetic Bayer DNG (RGGB, 12-bit) that darktable, GIMP's loaders and raw2rgb read."""
    from raw2rgb_plugin.io.dng_write import write_bayer_dng
    from raw2rgb_plugin.io.exif_read import PhotoMetadata
    from raw2rgb_plugin.training.data.unprocess import mosaic_rgb

    from helpers import TEST_XYZ_TO_CAMERA, smooth_scene

    black, white = 64, 4095
    scene = smooth_scene(height, width, seed=seed)
    mosaic = mosaic_rgb(np.round(black + scene * (white - black)).astype(np.uint16), "RGGB")
    write_bayer_dng(
        path, mosaic, "RGGB", black_level=black, white_level=white,
        color_matrix1=TEST_XYZ_TO_CAMERA, as_shot_neutral=(0.55, 1.0, 0.7),
        make="raw2rgb", model="Host Test",
        metadata=PhotoMetadata(make="raw2rgb", model="Host Test", exposure_time=Fraction(1, 250),
                               f_number=Fraction(28, 10), iso=TEST_ISO, datetime_original=TEST_DATETIME),
    )
    return path


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
