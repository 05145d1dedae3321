"""The engine's pieces on their own: planning, options, the streaming scheduler, RawFile, writers."""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile

from raw2rgb_plugin.engine.converter import Converter
from raw2rgb_plugin.engine.jobs import ConvertJob, DoneEvent, StageEvent
from raw2rgb_plugin.engine.options import ConvertOptions
from raw2rgb_plugin.engine.plan import plan_jobs
from raw2rgb_plugin.engine.scheduler import Stages, schedule
from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.io.raw_file import RawFile
from raw2rgb_plugin.profiles.store import load_profile

from helpers import cuda_test
from test_convert import write_scene_dng


def test_plan_refuses_an_output_that_would_replace_an_input(tmp_path):
    raw_named_tif = tmp_path / "shot.tif"  # a RAW whose name ends in .tif
    raw_named_tif.write_bytes(b"raw")
    other = tmp_path / "other.dng"
    plan = plan_jobs([raw_named_tif, other], None)
    assert [job.input for job in plan.jobs] == [other]
    [(path, reason)] = plan.refused
    assert path == raw_named_tif and "would replace an input" in reason


def test_plan_refuses_two_inputs_with_one_output(tmp_path):
    a, b = tmp_path / "a" / "x.dng", tmp_path / "b" / "x.nef"
    plan = plan_jobs([a, b], tmp_path / "out")
    assert [job.input for job in plan.jobs] == [a] and plan.refused[0][0] == b


@pytest.mark.parametrize("options, words", [
    (ConvertOptions(tile=-5), "negative"),
    (ConvertOptions(tile=64, overlap=64), "smaller than --tile"),
    (ConvertOptions(overlap=-1), "negative"),
])
def test_options_that_cannot_work_fail_in_one_line(options, words):
    with pytest.raises(Raw2RgbError, match=words):
        options.check()


def _fake_stages(tmp_path: Path, log: list[str]) -> Stages:
    def decode(job: ConvertJob) -> str:
        if job.input.name.startswith("bad"):
            raise Raw2RgbError("not a RAW", "pass a RAW file")
        log.append(f"decode {job.input.name}")
        return job.input.name

    def render(name: str) -> np.ndarray:
        if name.startswith("crash"):
            raise ZeroDivisionError("bug")
        return np.zeros((2, 3, 3), np.uint16)

    def write(job: ConvertJob, pixels: np.ndarray, decoded: str) -> None:
        job.output.write_bytes(b"x")

    return Stages(decode=decode, render=render, write=write)


def test_scheduler_streams_an_endless_source_lazily(tmp_path):
    log: list[str] = []
    endless = (ConvertJob(tmp_path / f"{i}.dng", tmp_path / f"{i}.out") for i in itertools.count())
    results = schedule(endless, _fake_stages(tmp_path, log), decode_workers=1)
    first = list(itertools.islice(results, 5))
    results.close()
    assert [r.status for r in first] == ["converted"] * 5
    # Beyond what was asked for, only what the bounded stages hold was ever decoded: two queued
    # for the writer, one being written, one being rendered, two in the decode look-ahead.
    assert len(log) <= 5 + 2 + 1 + 1 + 2


def test_scheduler_gives_one_result_per_job_and_events_in_order(tmp_path):
    names = ["a.dng", "bad.dng", "crash.dng", "done.dng", "b.dng"]
    (tmp_path / "done.out").write_bytes(b"already")
    jobs = [ConvertJob(tmp_path / n, tmp_path / (Path(n).stem + ".out")) for n in names]
    events: list = []
    lock = threading.Lock()

    def on_event(event):
        with lock:
            events.append(event)

    results = {r.input.name: r for r in schedule(jobs, _fake_stages(tmp_path, []), on_event=on_event)}
    assert {n: r.status for n, r in results.items()} == {
        "a.dng": "converted", "bad.dng": "failed", "crash.dng": "failed", "done.dng": "skipped", "b.dng": "converted"}
    assert "not a RAW" in results["bad.dng"].error and "unexpected rendering error" in results["crash.dng"].error
    for job in jobs:
        kinds = [type(e).__name__ + (f":{e.stage}" if isinstance(e, StageEvent) else "") for e in events if e.job == job]
        assert kinds[-1] == "DoneEvent" and sum(isinstance(e, DoneEvent) for e in events if e.job == job) == 1
    assert (tmp_path / "done.out").read_bytes() == b"already"


def test_an_output_written_meanwhile_is_skipped_not_failed(tmp_path):
    """Another run finishing a file while this one decodes it: skipped before rendering."""
    job = ConvertJob(tmp_path / "a.dng", tmp_path / "a.out")
    rendered = []

    def decode(j):
        j.output.write_bytes(b"the other run")  # appears after the look-ahead check
        return "a"

    stages = Stages(decode=decode, render=lambda d: rendered.append(d) or np.zeros((1, 1, 3), np.uint16),
                    write=lambda j, p, d: None)
    [result] = schedule([job], stages)
    assert result.status == "skipped" and rendered == []


def test_rawfile_yields_frame_metadata_and_preview(tmp_path):
    path = write_scene_dng(tmp_path / "scene.dng")
    with RawFile(path) as raw:
        assert raw.frame.mosaic.shape == (96, 128)
        assert raw.metadata is raw.metadata  # read once
        preview = raw.preview()
    assert preview is None or preview.format in ("jpeg", "bitmap")


def test_converter_stream_writes_tiffs_as_they_finish(tmp_path, tiny_profile):
    converter = Converter(load_profile(tiny_profile), device="cpu")
    inputs = [write_scene_dng(tmp_path / f"s{i}.dng", seed=i) for i in range(3)]
    jobs = (ConvertJob(p, tmp_path / f"{p.stem}.tif") for p in inputs)
    seen = []
    for result in converter.stream(jobs):
        assert result.status == "converted" and tifffile.imread(result.output).dtype == np.uint16
        seen.append(result.input)
    assert sorted(seen) == sorted(inputs)
    assert json.dumps([str(p) for p in seen])


def test_info_reports_the_noise_model_of_a_file(tmp_path):
    """A synthetic RAW with known shot/read noise: `info --json` carries its noise model."""
    from typer.testing import CliRunner

    from raw2rgb_cli.main import app
    from raw2rgb_plugin.training.data.unprocess import random_params, write_synthetic_dng

    from helpers import smooth_scene

    rng = np.random.default_rng(5)
    params = random_params(rng, cfa_pattern="RGGB", noise=False)
    params = params.__class__(**{**params.__dict__, "shot_noise": 4e-4, "read_noise": 4e-6, "bits": 14,
                                 "black_level": 0, "white_level": 16383})
    write_synthetic_dng(smooth_scene(512, 768, seed=5), tmp_path / "n.dng", rng, params=params)
    result = CliRunner().invoke(app, ["info", "--json", str(tmp_path / "n.dng")])
    assert result.exit_code == 0, result.output
    noise = json.loads(result.stdout)[0]["noise"]
    assert noise["source"] == "image estimate"
    assert 0.7 * 4e-4 < noise["a"] < 1.3 * 4e-4


def test_the_script_api_is_importable_from_the_package():
    import raw2rgb_plugin

    for name in ("Converter", "ConvertJob", "FileResult", "load_profile", "RawFile", "decode_raw", "Raw2RgbError"):
        assert getattr(raw2rgb_plugin, name).__name__ == name


@cuda_test
@pytest.mark.parametrize("profile_name, output_format", [("default-lite", "tiff"), ("develop-lite", "dng")])
def test_shipped_profiles_convert_on_cuda_as_on_the_cpu(tmp_path, profile_name, output_format):
    """The whole engine on the GPU (decode, device-resident G1 in its tiles, writer) against the CPU."""
    import rawpy

    example = Path(__file__).resolve().parents[1] / "examples" / "astronaut.dng"
    outputs = {}
    for device in ("cpu", "cuda"):
        converter = Converter(load_profile(profile_name), device=device, tile=256, output_format=output_format)
        target = tmp_path / device / f"astronaut.{output_format[:3]}"
        target.parent.mkdir()
        [result] = converter.convert([ConvertJob(example, target)])
        assert result.status == "converted", result
        outputs[device] = target
    if output_format == "dng":  # what a raw developer sees: LibRaw's rendering of each DNG
        def read(p):
            with rawpy.imread(str(p)) as raw:
                return raw.postprocess(output_bps=16, no_auto_bright=True, use_camera_wb=True)
    else:
        read = tifffile.imread
    cpu, gpu = (read(outputs[d]).astype(np.float64) / 65535 for d in ("cpu", "cuda"))
    assert cpu.shape == gpu.shape
    psnr = 10 * np.log10(1 / np.mean((cpu - gpu) ** 2))
    assert psnr >= 40, psnr  # bf16 on both sides, tiles on the GPU: measured on an H200
