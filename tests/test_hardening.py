"""Hardening: nothing lost, true geometry, one clear line for every mistake, a smooth first use.

Each test names the problem it guards against; together with the bad-input corpus at the end
(every file of ../shared/data/bad plus generated cases in one batch) they pin down that a bad
input costs one line naming the file and the reason, and never a source, a traceback or a
stray library line.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from typer.testing import CliRunner

from raw2rgb_cli.main import app
from raw2rgb_plugin.engine.converter import Converter
from raw2rgb_plugin.engine.jobs import ConvertJob
from raw2rgb_plugin.engine.plan import plan_jobs
from raw2rgb_plugin.engine.scheduler import Stages, schedule
from raw2rgb_plugin.errors import OutputExistsError, ProfileError, RawDecodeError
from raw2rgb_plugin.io.dng_write import write_bayer_dng, write_cfa_dng
from raw2rgb_plugin.io.exif_read import PhotoMetadata
from raw2rgb_plugin.io.raw_file import decode_raw
from raw2rgb_plugin.models.g1 import G1, G1Config
from raw2rgb_plugin.pipeline.cfa import xtrans_pattern
from raw2rgb_plugin.profiles.store import METADATA_KEY, SHIPPED_PROFILE_DIR, load_profile, save_profile

from helpers import TEST_XYZ_TO_CAMERA, default_sigint
from test_convert import BLACK, NEUTRAL, WHITE, write_scene_dng

#: the profiles the package ships, as `profiles list` names them (shipped ones after the user's).
SHIPPED_NAMES = sorted(p.stem for p in SHIPPED_PROFILE_DIR.glob("*.safetensors"))

ROOT = Path(__file__).resolve().parents[1]
LATIN1_NAME = os.fsdecode(b"caf\xe9.dng")  # a Latin-1 file name: not valid UTF-8


def run_cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def cli_process(*args: object, prefix: list[str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    """`raw2rgb ARGS` in a subprocess (real file descriptors, real signals); bytes out."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [*(prefix or []), sys.executable, "-m", "raw2rgb_cli.main", *(os.fsdecode(a) if isinstance(a, bytes) else str(a)
                                                                              for a in args)]
    return subprocess.run(command, capture_output=True, env=env, cwd=ROOT, timeout=600, **kwargs)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stderr_lines(stderr: bytes) -> list[str]:
    return [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]


# --- data safety ---------------------------------------------------------------------------------


def test_a_raw_named_tif_converted_with_overwrite_is_never_replaced(tmp_path, tiny_profile):
    source = tmp_path / "shot.tif"  # a RAW whose name ends in .tif
    shutil.copy(write_scene_dng(tmp_path / "scene.dng"), source)
    before = digest(source)
    result = run_cli("convert", source, "--overwrite", "--profile", tiny_profile, "--json")
    assert result.exit_code == 1
    assert digest(source) == before
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "shot.tif" in line and "would replace an input" in line


def test_an_output_that_is_the_input_under_another_name_is_refused(tmp_path):
    """A hard link (or another case on a case-insensitive disk) is the same file: refused too."""
    source = tmp_path / "shot.dng"
    source.write_bytes(b"raw")
    os.link(source, tmp_path / "shot.tif")
    plan = plan_jobs([source], None)
    assert plan.jobs == [] and "would replace an input" in plan.refused[0][1]


def _nan_profile(tiny_profile: Path, path: Path) -> Path:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(tiny_profile), "pt") as f:
        header = f.metadata()
    state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in load_file(str(tiny_profile)).items()}
    save_file(state, str(path), metadata=header)
    return path


def test_non_finite_weights_are_refused_at_load_and_at_export(tmp_path, tiny_profile):
    broken = _nan_profile(tiny_profile, tmp_path / "nan.safetensors")
    with pytest.raises(ProfileError, match="NaN or infinite"):
        load_profile(broken)
    result = run_cli("convert", write_scene_dng(tmp_path / "a.dng"), "-o", tmp_path / "out", "--profile", broken)
    assert result.exit_code == 2 and "NaN or infinite" in result.stderr and not (tmp_path / "out" / "a.tif").exists()

    model = G1(G1Config(width=8)).eval()
    with torch.no_grad():
        next(model.parameters()).fill_(float("inf"))  # a diverged training run
    with pytest.raises(ProfileError, match="not written"):
        save_profile(tmp_path / "diverged", model, {"input_normalization": "wb+ccm"})
    assert not list(tmp_path.glob("diverged*")) and not list(tmp_path.glob(".diverged*"))


def _output_with(packed: torch.Tensor, bad: float, everywhere: bool) -> torch.Tensor:
    out = torch.full((1, 3, packed.shape[-2] * 2, packed.shape[-1] * 2), bad if everywhere else 0.5)
    out[0, 1, 5, 7] = bad
    return out


@pytest.mark.parametrize(("bad", "everywhere"), [(float("nan"), True), (float("nan"), False), (float("inf"), False),
                                                 (float("-inf"), False)])
def test_a_frame_whose_output_is_not_finite_fails_instead_of_going_black(tmp_path, tiny_profile, monkeypatch, bad,
                                                                         everywhere):
    converter = Converter(load_profile(tiny_profile), device="cpu")
    monkeypatch.setattr(converter.runner, "run", lambda packed: _output_with(packed, bad, everywhere))
    source = write_scene_dng(tmp_path / "a.dng")
    [result] = converter.convert([ConvertJob(source, tmp_path / "a.tif")])
    assert result.status == "failed" and "not finite" in result.error
    assert not (tmp_path / "a.tif").exists()


def _hostile_profile(path: Path, tiny_profile: Path) -> Path:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(tiny_profile), "pt") as f:
        meta = json.loads(f.metadata()[METADATA_KEY])
    meta["architecture"]["width"] = 100000
    save_file(load_file(str(tiny_profile)), str(path), metadata={METADATA_KEY: json.dumps(meta)})
    return path


def test_an_unbounded_profile_is_one_line_in_convert_and_profiles(tmp_path, tiny_profile, isolated_profile_dir):
    hostile = _hostile_profile(isolated_profile_dir / "huge.safetensors", tiny_profile)
    shutil.copy(tiny_profile, isolated_profile_dir / "fine.safetensors")

    converted = run_cli("convert", write_scene_dng(tmp_path / "a.dng"), "--profile", hostile, "--json")
    assert converted.exit_code == 2 and "width 100000" in converted.stderr
    assert "width 100000" in json.loads(converted.stdout)["error"]

    listed = run_cli("profiles", "list", "--json")
    assert listed.exit_code == 0 and [p["name"] for p in json.loads(listed.stdout)] == ["fine", *SHIPPED_NAMES]
    [line] = listed.stderr.splitlines()
    assert "huge.safetensors" in line and "width 100000" in line and line.count(str(hostile)) == 1

    shown = run_cli("profiles", "show", "huge", "--json")
    assert shown.exit_code == 2 and len(shown.stderr.splitlines()) == 1 and "Traceback" not in shown.output
    assert "width 100000" in json.loads(shown.stdout)["error"]


def test_an_output_path_that_is_a_folder_is_a_failure_not_a_skip(tmp_path, tiny_profile):
    (tmp_path / "out" / "a.tif").mkdir(parents=True)
    result = run_cli("convert", write_scene_dng(tmp_path / "a.dng"), "-o", tmp_path / "out", "--profile", tiny_profile,
                     "--json", "--overwrite")
    assert result.exit_code == 1
    [entry] = json.loads(result.stdout)["files"]
    assert entry["status"] == "failed" and "is a folder" in entry["error"]
    again = run_cli("convert", tmp_path / "a.dng", "-o", tmp_path / "out", "--profile", tiny_profile, "--json")
    assert again.exit_code == 1 and json.loads(again.stdout)["files"][0]["status"] == "failed"


def test_a_write_another_run_won_counts_as_skipped(tmp_path):
    """Between our check and our write another run finished the file: its output is as good."""
    job = ConvertJob(tmp_path / "a.dng", tmp_path / "a.out")

    def write(j, pixels, decoded):
        raise OutputExistsError(f"{j.output} appeared while it was being written", "another process wrote it")

    stages = Stages(decode=lambda j: "a", render=lambda d: np.zeros((1, 1, 3), np.uint16), write=write)
    [result] = schedule([job], stages)
    assert result.status == "skipped" and "another run" in result.error


@pytest.mark.slow
def test_two_concurrent_runs_into_one_folder_report_no_failures(tmp_path, tiny_profile):
    inputs = [write_scene_dng(tmp_path / f"c{i}.dng", height=64, width=96, seed=i) for i in range(10)]
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "raw2rgb_cli.main", "convert", *map(str, inputs), "-o", str(out),
               "--profile", str(tiny_profile), "--quiet", "--json"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT) for _ in range(2)]
    finished = [run.communicate(timeout=600) for run in runs]
    summaries = [json.loads(stdout) for stdout, _ in finished]
    for run, (_, stderr), summary in zip(runs, finished, summaries):
        assert run.returncode == 0, stderr.decode()
        assert summary["failed"] == 0 and summary["converted"] + summary["skipped"] == len(inputs)
    assert sum(s["converted"] for s in summaries) >= len(inputs)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"c{i}.tif" for i in range(10))  # no partials
    for tif in out.iterdir():
        assert tifffile.imread(tif).shape == (64, 96, 3)


def test_stale_partials_of_ours_are_cleaned_fresh_and_foreign_ones_kept(tmp_path, tiny_profile):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".x.tif.partial-0123456789ab"  # a killed run's
    fresh = out / ".y.tif.partial-ba9876543210"  # a concurrent run's, being written now
    foreign = out / ".z.tif.partial-notours"
    for path in (stale, fresh, foreign):
        path.write_bytes(b"half a tiff")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    os.utime(foreign, (two_hours_ago, two_hours_ago))
    result = run_cli("convert", write_scene_dng(tmp_path / "a.dng"), "-o", out, "--profile", tiny_profile, "--quiet")
    assert result.exit_code == 0
    assert not stale.exists() and fresh.exists() and foreign.exists() and (out / "a.tif").exists()


@pytest.mark.slow
@pytest.mark.parametrize("stop, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_stopping_a_batch_says_how_far_it_got_and_leaves_no_partial(tmp_path, tiny_profile, stop, code):
    count = 12
    inputs = [write_scene_dng(tmp_path / f"f{i}.dng", height=384, width=512, seed=i) for i in range(count)]
    out = tmp_path / "out"
    command = [sys.executable, "-m", "raw2rgb_cli.main", "convert", *map(str, inputs), "-o", str(out),
               "--profile", str(tiny_profile), "--quiet"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=default_sigint)
    deadline = time.monotonic() + 120
    while not (out.exists() and any(out.glob("*.tif"))) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(stop)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code
    [line] = stderr_lines(stderr)
    done = len(list(out.glob("*.tif")))
    assert line.startswith("interrupted") and f"{done} of {count} files finished" in line
    assert "run the same command again" in line and "Traceback" not in line
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


# --- geometry ------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale, size", [((1, 2), (96, 64)), ((2, 1), (48, 128))])
def test_non_square_pixels_are_resampled_to_square_ones_like_libraw(tmp_path, tiny_profile, scale, size):
    import rawpy

    rng = np.random.default_rng(0)
    mosaic = (BLACK + (WHITE - BLACK) * rng.uniform(0.2, 0.8, (48, 64))).astype(np.uint16)
    source = tmp_path / "aspect.dng"
    write_bayer_dng(source, mosaic, "RGGB", black_level=BLACK, white_level=WHITE, color_matrix1=TEST_XYZ_TO_CAMERA,
                    as_shot_neutral=NEUTRAL, default_scale=scale)
    with rawpy.imread(str(source)) as raw:
        libraw_size = raw.postprocess().shape[:2]
    assert libraw_size == size
    result = run_cli("convert", source, "-o", tmp_path / "out", "--profile", tiny_profile, "--quiet")
    assert result.exit_code == 0, result.output
    assert tifffile.imread(tmp_path / "out" / "aspect.tif").shape[:2] == size
    half = run_cli("convert", source, "-o", tmp_path / "half", "--profile", tiny_profile, "--quiet", "--half-size")
    assert half.exit_code == 0 and tifffile.imread(tmp_path / "half" / "aspect.tif").shape[:2] == (size[0] // 2, size[1] // 2)

    info = run_cli("info", source, "--json")
    [doc] = json.loads(info.stdout)
    assert doc["pixel_aspect"] == scale[0] / scale[1]
    assert (doc["output_size"]["height"], doc["output_size"]["width"]) == size
    assert "resampled to square pixels" in run_cli("info", source).stdout


# --- one clear line, never a traceback ----------------------------------------------------------


@pytest.mark.slow
def test_a_file_name_that_is_not_utf8_converts_and_reports(tmp_path, tiny_profile):
    folder = tmp_path / "in"
    folder.mkdir()
    source = write_scene_dng(folder / LATIN1_NAME)
    other = write_scene_dng(folder / "plain.dng", seed=1)
    result = cli_process("convert", folder, "-o", tmp_path / "out", "--profile", tiny_profile, "--json", "--quiet")
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    summary = json.loads(result.stdout.decode("utf-8"))  # valid UTF-8, whatever the names
    assert summary["converted"] == 2
    assert sorted(os.fsencode(p.name) for p in (tmp_path / "out").iterdir()) == [b"caf\xe9.tif", b"plain.tif"]
    assert {f["input"] for f in summary["files"]} == {str(source), str(other)}  # the name's bytes come back

    info = cli_process("info", source, other, "--json")
    assert info.returncode == 0, info.stderr.decode(errors="replace")
    assert [doc["file"] for doc in json.loads(info.stdout.decode("utf-8"))] == [str(source), str(other)]
    assert "caf" in cli_process("info", source).stdout.decode("utf-8")


def test_usage_mistakes_are_one_line_and_a_json_document(tmp_path, tiny_profile):
    source = write_scene_dng(tmp_path / "a.dng")
    (tmp_path / "file").write_text("a file, not a folder")
    cases = [
        (["-o", tmp_path / "file" / "sub"], "cannot create the output folder"),
        (["--tile", "64", "--overlap", "64"], "must be smaller than --tile"),
        (["--overlap", "100", "--tile", "32"], "must be smaller than --tile"),
        (["--tile", "-5"], "negative"),
        (["--device", "gpu"], "unknown device"),
        (["--profile", "nowhere"], f"no profile named 'nowhere' (installed: {', '.join(SHIPPED_NAMES)})"),
    ]
    for extra, words in cases:
        profile = [] if "--profile" in extra else ["--profile", tiny_profile]
        result = run_cli("convert", source, *extra, *profile, "--json")
        assert result.exit_code == 2, (extra, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        [line] = result.stderr.splitlines()
        assert words in line, (extra, line)
        assert words in json.loads(result.stdout)["error"]
    usage = run_cli("convert", source, "--jobs", "0", "--json")
    assert usage.exit_code == 2 and "--jobs" in json.loads(usage.stdout)["error"]


def _unprivileged() -> list[str] | None:
    """A command prefix under which a file with mode 000 cannot be read, or None."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    # Root without the capabilities that bypass file permissions: our Python (under /root) still runs.
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    with tempfile.TemporaryDirectory() as folder:
        locked = Path(folder) / "locked"
        locked.write_bytes(b"x")
        locked.chmod(0)
        probe = subprocess.run([*prefix, sys.executable, "-c", f"open({str(locked)!r}, 'rb')"], capture_output=True)
    return prefix if probe.returncode != 0 and b"PermissionError" in probe.stderr else None


def test_each_unreadable_input_says_its_own_reason(tmp_path, tiny_profile, shared_data):
    loop = tmp_path / "loop.nef"
    os.symlink(tmp_path / "loop2.nef", loop)
    os.symlink(loop, tmp_path / "loop2.nef")
    truncated = tmp_path / "cut.crw"
    truncated.write_bytes((shared_data / "raw" / "RAW_CANON_D30_SRGB.CRW").read_bytes()[:300_000])
    result = run_cli("convert", loop, truncated, "-o", tmp_path / "out", "--profile", tiny_profile, "--quiet")
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and "Traceback" not in result.output
    assert any("loop.nef" in line and "symbolic link loop" in line for line in lines)
    assert any("cut.crw" in line and "Canon CRW file that LibRaw cannot read: damaged or truncated" in line for line in lines)


@pytest.mark.slow
def test_permission_denied_is_said_as_such(tmp_path, tiny_profile):
    prefix = _unprivileged()
    if prefix is None:
        pytest.skip("no way to drop root's permission override here")
    source = write_scene_dng(tmp_path / "locked.dng")
    source.chmod(0)
    result = cli_process("convert", source, "-o", tmp_path / "out", "--profile", tiny_profile, "--quiet", prefix=prefix)
    [line] = stderr_lines(result.stderr)
    assert result.returncode == 1 and "locked.dng" in line and "permission denied" in line and "damaged" not in line
    info = cli_process("info", source, prefix=prefix)
    assert "permission denied" in stderr_lines(info.stderr)[0]


@pytest.mark.slow
def test_libraw_lines_become_our_notes_not_stray_stderr(shared_data):
    nikon = shared_data / "bad" / "exiftool" / "Nikon.nef"
    with pytest.raises(RawDecodeError, match="data corrupted at"):
        decode_raw(nikon)
    result = cli_process("info", nikon)
    [line] = stderr_lines(result.stderr)
    assert line.startswith("error:") and "Nikon.nef" in line and "data corrupted at" in line


def test_the_stderr_capture_does_not_serialise_decoding(tmp_path, monkeypatch):
    """Decoding threads run LibRaw at once under one capture: no lock is held around LibRaw."""
    import rawpy

    from raw2rgb_plugin.io import libraw

    inside, most = [0], [0]
    guard = threading.Lock()

    def slow_imread(name):
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.3)  # LibRaw releases the GIL while it reads
        with guard:
            inside[0] -= 1
        raise rawpy.LibRawFileUnsupportedError(b"Unsupported file format or not RAW file")

    monkeypatch.setattr(libraw.rawpy, "imread", slow_imread)
    files = []
    for i in range(4):
        files.append(tmp_path / f"{i}.nef")
        files[-1].write_bytes(b"\x00" * 64)
    errors: list[BaseException] = []

    def decode(path: Path) -> None:
        try:
            decode_raw(path)
        except BaseException as exc:  # collected: an assertion in a thread would be lost
            errors.append(exc)

    threads = [threading.Thread(target=decode, args=(p,)) for p in files]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [type(e) for e in errors] == [RawDecodeError] * 4 and all("not a RAW format" in str(e) for e in errors)
    assert most[0] == 4 and time.perf_counter() - started < 1.0


# --- first use -----------------------------------------------------------------------------------


def test_readme_says_the_first_commands_run_in_a_checkout():
    readme = (ROOT / "README.md").read_text()
    first_command = readme.index("pip install torch==2.13.0 . && raw2rgb convert")
    before = readme[:first_command]
    assert "git clone" in before and "cd raw2rgb" in before


def test_version():
    from raw2rgb_plugin import __version__

    result = run_cli("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"raw2rgb {__version__}"


def test_listing_profiles_imports_no_torch(tiny_profile, isolated_profile_dir):
    shutil.copy(tiny_profile, isolated_profile_dir / "mine.safetensors")
    code = ("import sys, json; from typer.testing import CliRunner; from raw2rgb_cli.main import app; "
            "r = CliRunner().invoke(app, ['profiles', 'list', '--json']); "
            "print(json.dumps([[p['name'] for p in json.loads(r.stdout)], 'torch' in sys.modules]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    names, torch_loaded = json.loads(result.stdout)
    assert names == ["mine", *SHIPPED_NAMES] and torch_loaded is False


def test_nothing_to_convert_loads_no_model_and_draws_no_bar(tmp_path, tiny_profile, monkeypatch):
    from raw2rgb_plugin.profiles import store

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded with nothing to convert")

    monkeypatch.setattr(store, "load_profile", no_model)
    source = write_scene_dng(tmp_path / "a.dng")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.tif").write_bytes(b"done before")
    result = run_cli("convert", source, "-o", tmp_path / "out", "--profile", tiny_profile, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["skipped"] == 1 and summary["profile"] is None
    assert "0/0" not in result.stderr and "converting" not in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = run_cli("convert", empty, "--profile", tiny_profile)
    assert nothing.exit_code == 1 and "0/0" not in nothing.stderr
    assert len(nothing.stderr.splitlines()) == 1 and "holds no RAW files" in nothing.stderr


def test_profile_default_falls_back_like_convert_does(tmp_path):
    source = write_scene_dng(tmp_path / "a.dng", height=48, width=64)
    result = run_cli("convert", source, "-o", tmp_path / "out", "--profile", "default", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["profile"] == "default-lite"
    installed = ", ".join(SHIPPED_NAMES)
    assert f"no profile named 'default' is installed (installed: {installed}); using 'default-lite'" in result.stderr


def test_train_picks_the_variant_that_fits_the_device_and_says_so(tmp_path, monkeypatch):
    from raw2rgb_plugin.training.config import resolve_variant

    assert resolve_variant("auto", "cpu", resume=False, init=None)[0] == "lite"
    assert resolve_variant("base", "cpu", resume=False, init=None) == ("base", None)
    seen = {}

    class StopHere(Exception):
        pass

    def fake_trainer(config, *args, **kwargs):
        seen["variant"] = config.variant
        raise StopHere

    monkeypatch.setattr("raw2rgb_plugin.training.trainer.Trainer", fake_trainer)
    (tmp_path / "rgb").mkdir()
    monkeypatch.setattr("raw2rgb_plugin.training.data.open_training_data", lambda *a: None)
    result = run_cli("train", "--synthetic", tmp_path / "rgb", "-o", tmp_path / "run", "--device", "cpu")
    assert isinstance(result.exception, StopHere) and seen["variant"] == "lite"
    assert "training the lite variant (G1 width 16) on cpu" in result.stderr


def test_info_imports_no_torch(repo_root):
    """`raw2rgb info` decodes, reads EXIF and estimates noise with numpy: importing torch was 1.3 s of
    its 3.5 s on the D30 (now 0.8 s in all)."""
    code = ("import sys; from raw2rgb_cli.main import app\n"
            "try:\n    app(['info', sys.argv[1]])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('torch' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, str(repo_root / "examples" / "astronaut.dng")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "False"


def test_info_speaks_to_photographers(tmp_path):
    metadata = PhotoMetadata(make="Canon", model="Canon PowerShot G2", iso=100, focal_length=Fraction(7),
                             f_number=Fraction(28, 10))
    source = write_scene_dng(tmp_path / "g2.dng", orientation=6, metadata=metadata)
    text = run_cli("info", source).stdout
    assert "Canon PowerShot G2" in text and "Canon Canon" not in text
    assert "LibRaw flip" not in text and text.count("rotated 90° clockwise") == 1
    assert "7 mm" in text and "f/2.8" in text
    assert not re.search(r"\d\.\d{6,}", text)  # no float32 noise such as 1.600000023841858
    [doc] = json.loads(run_cli("info", source, "--json").stdout)
    assert doc["white_balance"]["rgb_gains"] == [2.0, 1.0, 1.6] and doc["camera"]["name"] == "Canon PowerShot G2"


# --- the bad-input corpus ------------------------------------------------------------------------


@pytest.mark.slow
def test_every_bad_input_in_one_batch_is_one_line_and_nothing_else(tmp_path, tiny_profile):
    """Every file of ../shared/data/bad (when present) and generated bad inputs, with good files,
    in one `convert` run: one line per bad file naming it and why, the good ones converted, no
    traceback, no foreign library line, nothing left behind, every input unchanged."""
    from PIL import Image

    inputs = tmp_path / "in"
    inputs.mkdir()
    bad: dict[Path, str] = {}  # bad input → words its line must hold
    shared = ROOT.parent / "shared" / "data"
    if (shared / "bad").is_dir():
        for path in sorted(p for p in (shared / "bad").rglob("*") if p.is_file()):
            # Unique stems (CanonRaw.cr2, .cr3 and .crw would share an output): each file's own reason shows.
            copy = inputs / f"{path.parent.name}-{path.stem}-{path.suffix[1:]}{path.suffix}"
            shutil.copy(path, copy)
            bad[copy] = ""
    good = [write_scene_dng(inputs / "good1.dng"), write_scene_dng(inputs / LATIN1_NAME, seed=2)]
    (inputs / "zero.nef").write_bytes(b"")
    bad[inputs / "zero.nef"] = "is empty"
    xtrans = np.random.default_rng(4).integers(64, 4095, (48, 60), dtype=np.uint16)
    write_cfa_dng(inputs / "fuji.dng", xtrans, xtrans_pattern(), black_level=64, white_level=4095,
                  color_matrix1=TEST_XYZ_TO_CAMERA, as_shot_neutral=NEUTRAL)
    bad[inputs / "fuji.dng"] = "is an X-Trans RAW"  # decoded, but the named profile renders Bayer only
    (inputs / "random.cr2").write_bytes(np.random.default_rng(1).bytes(100_000))
    bad[inputs / "random.cr2"] = "not a RAW format"
    whole = write_scene_dng(tmp_path / "whole.dng", height=256, width=320).read_bytes()
    (inputs / "cut.dng").write_bytes(whole[: len(whole) // 3])
    bad[inputs / "cut.dng"] = "damaged or truncated"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(inputs / "holiday.nef", format="PNG")
    bad[inputs / "holiday.nef"] = "is a PNG image, not a camera RAW"
    (inputs / "folder.arw").mkdir()
    bad[inputs / "folder.arw"] = "holds no RAW files"
    (inputs / os.fsdecode(b"d\xe9fect.nef")).write_bytes(b"not a raw at all")
    bad[inputs / os.fsdecode(b"d\xe9fect.nef")] = "not a RAW format"
    os.symlink(inputs / "nowhere.dng", inputs / "dangling.dng")
    bad[inputs / "dangling.dng"] = "broken symbolic link"
    os.symlink(inputs / "loop-b.nef", inputs / "loop-a.nef")
    os.symlink(inputs / "loop-a.nef", inputs / "loop-b.nef")
    bad[inputs / "loop-a.nef"] = "symbolic link loop"
    bad[inputs / "loop-b.nef"] = "symbolic link loop"
    prefix = _unprivileged()
    if prefix is not None:
        locked = write_scene_dng(inputs / "locked.dng", seed=3)
        locked.chmod(0)
        bad[locked] = "permission denied"

    files = list(inputs.iterdir())
    before = {p: digest(p) for p in files if p.is_file() and not p.is_symlink()}
    out = tmp_path / "out"
    result = cli_process("convert", *sorted(files), "-o", out, "--profile", tiny_profile, "--quiet", "--json",
                         prefix=prefix or [])
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 1 and "Traceback" not in stderr

    def on_screen(path: Path) -> str:  # how a line names a file (non-UTF-8 bytes as \xNN)
        return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")

    lines = stderr_lines(result.stderr)
    assert all(line.startswith("error: ") for line in lines), lines  # nothing LibRaw printed itself
    for path, words in bad.items():
        mine = [line for line in lines if line.startswith(f"error: {on_screen(path)}: ")]
        assert len(mine) == 1, (path, lines)
        assert words in mine[0] and " — " in mine[0] and "also the output of" not in mine[0], mine[0]
    assert len(lines) == len(bad)

    summary = json.loads(result.stdout.decode("utf-8"))
    assert summary["converted"] == len(good) and summary["failed"] == len(bad)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.stem + ".tif" for p in good)  # nothing else left behind
    assert sorted(p.name for p in inputs.iterdir()) == sorted(p.name for p in files)
    assert {p: digest(p) for p in before} == before
