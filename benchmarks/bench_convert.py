"""Conversion benchmark: `raw2rgb convert` per runtime choice, with LibRaw's own rendering as baseline.

For synthetic Bayer DNGs (written here, so no data is needed) it measures, in one run:

- stages: decode (rawpy + BayerFrame), the baseline LibRaw `postprocess` (AHD, 16-bit, camera
  WB), TIFF write (uncompressed, deflate);
- per runtime choice (converter-default: what `Converter` builds by itself; eager fp32 / bf16:
  the plain model with the runner's original tile policy; optimized fp32 / bf16: the exact
  inference rewrites of models/g1_inference.py, tiles by memory budget, heap reuse), each
  **in its own subprocess** so its peak memory is that of a whole `convert` process: the
  network alone on the frame ("G1", best of
  `--repeat`), `Converter.render` (network input + G1 + to uint16), end-to-end `Converter.convert`
  of `--batch` files (files/s and its ratio to AHD's time per file), and the process's peak RSS
  (on CUDA also the peak GPU memory);
- training on the CPU (`--train-steps`): lite G1 steps with L1 loss at batch 8 on 96-px packed
  patches, fp32 against bf16 autocast.

With `--cfa bayer,xtrans` each size also gets an X-Trans DNG (the same mosaic values under the 6×6
CFA, issue 25): its baseline is LibRaw's X-Trans rendering (3-pass Markesteijn), its profile a
random-weight X-Trans G1 of the same variant (36-site packing, `xtrans-srgb-gated`), and the table
ends with X-Trans ÷ Bayer per file for each runtime (the issue's target: ≤ 1.3 per 24 MP frame).
`--noise-map` (on by default with xtrans) gives both profiles the noise map that `default-lite`
and the synthetic-trained X-Trans profiles read, so their convert estimates each file's noise.

Random weights: speed does not depend on their values. Timings on a shared machine are noisy:
every time is the best of several runs, and a table meant for the docs should be regenerated on
a quiet machine.

    python benchmarks/bench_convert.py                                  # lite, 12 MP, CPU, all runtimes
    python benchmarks/bench_convert.py --sizes 12MP,24MP --json > bench.json
    python benchmarks/bench_convert.py --device cuda --variants base,lite --runtimes eager-bf16,optimized-bf16
    python benchmarks/bench_convert.py --sizes 24MP --cfa bayer,xtrans --runtimes converter-default --repeat 1 --batch 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import rawpy
import torch
from rich.console import Console
from rich.table import Table

from raw2rgb_plugin.engine.converter import Converter, ConvertJob
from raw2rgb_plugin.io.dng_write import write_bayer_dng, write_cfa_dng
from raw2rgb_plugin.io.exif_read import PhotoMetadata
from raw2rgb_plugin.io.icc import icc_profile_bytes
from raw2rgb_plugin.io.noise_profile import noise_model_for
from raw2rgb_plugin.io.raw_file import RawFile
from raw2rgb_plugin.io.tiff_write import write_rgb16_tiff
from raw2rgb_plugin.models.g1 import G1, G1Config
from raw2rgb_plugin.pipeline.cfa import xtrans_pattern
from raw2rgb_plugin.pipeline.normalization import network_input
from raw2rgb_plugin.profiles.store import load_profile, save_profile
from raw2rgb_plugin.runtime.device import choose_device
from raw2rgb_plugin.runtime.precision import cpu_model_name
from raw2rgb_plugin.runtime.runner import build_runner

SIZES = {"tiny": (256, 384), "small": (600, 900), "12MP": (3000, 4000), "24MP": (4000, 6000)}
#: "converter-default" is whatever `Converter` builds by itself (before the runtime change: eager
#: fp32, whole frame where free memory allows; after it: the optimised runtime and measured precision).
RUNTIMES = {"converter-default": ("default", None),
            "eager-fp32": ("eager", torch.float32), "eager-bf16": ("eager", torch.bfloat16),
            "optimized-fp32": ("optimized", torch.float32), "optimized-bf16": ("optimized", torch.bfloat16),
            "onnx-fp32": ("onnx", torch.float32),
            "openvino-fp32": ("openvino", torch.float32), "openvino-bf16": ("openvino", torch.bfloat16)}
XYZ_TO_CAMERA = np.array([[0.6722, -0.0635, -0.0963], [-0.4287, 1.2460, 0.2028], [-0.0908, 0.2162, 0.5668]])


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def best_time(fn, repeat: int) -> float:
    """Best wall time of `repeat` calls (CUDA synchronised): the least disturbed by other load."""
    times = []
    for _ in range(max(1, repeat)):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


#: EXIF that lensfun matches (the 550D's kit zoom at its wide end, wide open): what `--lens auto` costs
LENS_EXIF = {"make": "Canon", "model": "Canon EOS 550D",
             "metadata": PhotoMetadata(make="Canon", model="Canon EOS 550D", lens_model="EF-S18-55mm f/3.5-5.6 IS",
                                       focal_length=Fraction(18), f_number=Fraction(7, 2))}


def synthetic_dng(path: Path, height: int, width: int, *, lens: bool = False, cfa: str = "bayer") -> Path:
    """A 12-bit DNG of `cfa` (bayer: RGGB; xtrans: the X-T3's phase) holding the same mosaic values."""
    rng = np.random.default_rng(0)
    # Smooth gradients plus noise: LibRaw's AHD cost does not depend much on content.
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 0.3 + 0.2 * np.sin(x / 97.0) * np.cos(y / 61.0)
    mosaic = (64 + (4095 - 64) * np.clip(base + rng.normal(0, 0.01, base.shape), 0, 1)).astype(np.uint16)
    camera = LENS_EXIF if lens else {"make": "raw2rgb", "model": "Benchmark"}
    levels = {"black_level": 64, "white_level": 4095, "color_matrix1": XYZ_TO_CAMERA, "as_shot_neutral": [0.5, 1.0, 0.7]}
    if cfa == "xtrans":
        write_cfa_dng(path, mosaic, xtrans_pattern(), **levels, **camera)
    else:
        write_bayer_dng(path, mosaic, "RGGB", **levels, **camera)
    return path


def decode_frame(dng: Path):
    """The frame of any sensor, as `convert` decodes it (decode_raw takes Bayer files only)."""
    with RawFile(dng) as raw:
        return raw.mosaic_frame


def bench_profile(folder: Path, variant: str, cfa: str, noise_map: bool) -> Path:
    """A random-weight profile of `variant` for `cfa`, with the shipped profiles' input and base."""
    torch.manual_seed(0)
    sites = 36 if cfa == "xtrans" else 4
    shape = {"period": 6, "in_channels": 36} if cfa == "xtrans" else {}
    base = "xtrans-srgb-gated" if cfa == "xtrans" else "mhc-srgb-gated"
    model = G1(G1Config.for_variant(variant, residual_base=base, spectral_norm=False,
                                    noise_channels=sites if noise_map else 0, **shape)).eval()
    suffix = ("-xtrans" if cfa == "xtrans" else "") + ("-noise" if noise_map else "")
    return save_profile(folder / f"{variant}{suffix}.safetensors", model, {"input_normalization": "linear-srgb"})


def measure_stages(frame: str, dng: Path, tmp: Path, console: Console) -> tuple[list[dict], float]:
    """Decode, LibRaw's own rendering (AHD; on an X-Trans file that code runs its 3-pass
    Markesteijn) and TIFF writes of one frame: (stage rows, the LibRaw baseline's seconds)."""
    decode_s = best_time(lambda: decode_frame(dng), 3)

    def libraw() -> None:
        with rawpy.imread(str(dng)) as raw:
            raw.postprocess(demosaic_algorithm=rawpy.DemosaicAlgorithm.AHD, output_bps=16,
                            use_camera_wb=True, no_auto_bright=True)

    baseline_s = best_time(libraw, 3)
    xtrans = frame.endswith("X-Trans")
    baseline = "LibRaw postprocess X-Trans (3-pass Markesteijn) 16-bit" if xtrans else "LibRaw postprocess AHD 16-bit"
    console.print(f"{frame}: decode {decode_s:.2f} s, {baseline} {baseline_s:.2f} s")
    stages = [{"frame": frame, "stage": f"decode (rawpy + {'XTransFrame' if xtrans else 'BayerFrame'})", "seconds": decode_s},
              {"frame": frame, "stage": f"baseline: {baseline}", "seconds": baseline_s}]
    height, width = decode_frame(dng).mosaic.shape
    pixels = np.random.default_rng(1).integers(0, 65535, (height, width, 3), dtype=np.uint16)
    icc = icc_profile_bytes("srgb")
    for compress in (False, True):
        out = tmp / f"w{int(compress)}.tif"

        def write() -> None:
            write_rgb16_tiff(out, pixels, icc=icc, metadata=None, software="bench", compress=compress, overwrite=True)

        stages.append({"frame": frame, "stage": f"TIFF write ({'deflate' if compress else 'uncompressed'})",
                       "seconds": best_time(write, 2)})
    return stages, baseline_s


def cfa_ratios(rows: list[dict]) -> list[dict]:
    """X-Trans ÷ Bayer seconds per converted file, per size, variant and runtime measured for both."""
    done = {(r["frame"].removesuffix(" X-Trans"), r["variant"], r["runtime"], r["cfa"]): r["convert_s_per_file"]
            for r in rows if "convert_s_per_file" in r}
    return [{"frame": size, "variant": variant, "runtime": runtime, "bayer_s": seconds,
             "xtrans_s": done[(size, variant, runtime, "xtrans")], "ratio": done[(size, variant, runtime, "xtrans")] / seconds}
            for (size, variant, runtime, cfa), seconds in done.items()
            if cfa == "bayer" and (size, variant, runtime, "xtrans") in done]


def peak_rss_bytes() -> int:
    """This process's peak resident memory (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


# ------------------------------------------------------------------------------------------------
# one runtime choice, in its own process


def worker(spec: dict) -> dict:
    """Time one (profile, frame, runtime) in this process; its peak memory is the whole process's."""
    device = choose_device(spec["device"])
    profile = load_profile(spec["profile"])
    converter = bench_converter(profile, device, spec, spec["tile"])
    dng = Path(spec["dng"])
    frame = decode_frame(dng)
    runner = converter.runner
    noise = noise_model_for(frame) if converter.reads_noise else None
    packed = network_input(frame, profile.input_normalization, device, noise=noise).packed
    g1_s, (packed_h, packed_w) = _network_time(runner, packed, spec["repeat"])
    render_s = best_time(lambda: converter.render(frame), max(1, spec["repeat"] - 1))
    out_dir = Path(spec["out_dir"])
    jobs = [ConvertJob(dng, out_dir / f"{i}.tif") for i in range(spec["batch"])]
    start = time.perf_counter()
    results = converter.convert(jobs, overwrite=True)
    elapsed = time.perf_counter() - start
    assert all(r.status == "converted" for r in results), results
    tile = runner.tile_for(packed_h, packed_w) if hasattr(runner, "tile_for") else None
    row = {"runtime": spec["runtime"], "runner": getattr(runner, "name", type(runner).__name__), "tile": tile,
           "g1_s": g1_s, "render_s": render_s, "convert_s_per_file": elapsed / len(jobs),
           "files_per_s": len(jobs) / elapsed, "peak_rss_gib": peak_rss_bytes() / 2**30}
    if device.type == "cuda":
        row["peak_gpu_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    if spec.get("lens_dng"):
        row.update(lens_cost(profile, device, spec, Path(spec["lens_dng"]), out_dir))
    if spec.get("check_tiles"):
        row.update(tile_check(converter, bench_converter(profile, device, spec, 0), frame))
    return row


def bench_converter(profile, device, spec: dict, tile: int | None) -> Converter:
    """A converter with the runtime choice under test (`converter-default`: whatever it builds)."""
    runtime, dtype = RUNTIMES[spec["runtime"]]
    converter = Converter(profile, device=device, tile=tile, threads=spec["threads"])
    if runtime != "default":  # the converter picks its own runner; here the runner is the choice under test
        converter.runner = build_runner(profile.model, profile.architecture, device=device, dtype=dtype,
                                        tile=tile, runtime=runtime, architecture_block=profile.metadata["architecture"])
        converter.dtype = converter.runner.dtype
    return converter


def tile_check(tiled: Converter, whole: Converter, frame) -> dict:
    """How the render in tiles (the runner's own choice) compares with one whole-frame pass."""
    a = tiled.render(frame).astype(np.float64) / 65535.0
    b = whole.render(frame).astype(np.float64) / 65535.0
    mse = float(np.mean((a - b) ** 2))
    return {"tiles_vs_whole_db": 10 * np.log10(1 / mse) if mse > 0 else float("inf"),
            "tiles_vs_whole_max_levels": int(round(float(np.abs(a - b).max()) * 65535))}


def lens_cost(profile, device, spec: dict, dng: Path, out_dir: Path) -> dict:
    """Seconds per file of a whole `convert` of a file naming a lensfun lens, with `--lens off` and
    `auto`, alternated and best of `repeat` (the same converter otherwise)."""
    converters = {mode: Converter(profile, device=device, tile=spec["tile"], threads=spec["threads"], lens=mode)
                  for mode in ("off", "auto")}
    jobs = [ConvertJob(dng, out_dir / f"lens-{i}.tif") for i in range(spec["batch"])]
    best = {"off": float("inf"), "auto": float("inf")}
    for _ in range(max(2, spec["repeat"])):
        for mode, converter in converters.items():
            start = time.perf_counter()
            results = converter.convert(jobs, overwrite=True)
            best[mode] = min(best[mode], (time.perf_counter() - start) / len(jobs))
            assert all(r.status == "converted" for r in results), results
            assert (results[0].details["lens"] is not None) == (mode == "auto"), results[0].details
    return {"lens_off_s_per_file": best["off"], "lens_auto_s_per_file": best["auto"]}


def _network_time(runner, packed: torch.Tensor, repeat: int) -> tuple[float, tuple[int, int]]:
    runner.run(packed)  # warm-up: allocator, kernel selection, cudnn autotune
    return best_time(lambda: runner.run(packed), repeat), (packed.shape[-2], packed.shape[-1])


def run_worker(spec: dict) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"runtime": spec["runtime"], "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------
# training speed per precision (CPU)


def training_steps_per_s(precision: str, steps: int, *, batch: int = 8, side: int = 96) -> float:
    """Lite G1 (as training builds it: spectral norm, gated base) steps/s with L1 loss on the CPU (best step)."""
    torch.manual_seed(0)
    model = G1(G1Config.for_variant("lite", residual_base="mhc-srgb-gated")).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    raw = torch.rand(batch, 4, side, side)
    target = torch.rand(batch, 3, 2 * side, 2 * side)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = model(raw)
        loss = torch.nn.functional.l1_loss(out.float(), target)
        loss.backward()
        optimiser.step()

    step()  # warm-up
    return 1.0 / best_time(step, steps)


# ------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="lite", help="comma-separated G1 variants (lite, slim, base)")
    parser.add_argument("--sizes", default="12MP", help=f"comma-separated frame sizes ({', '.join(SIZES)})")
    parser.add_argument("--device", default="cpu", help="cpu, cuda[:N] or auto")
    parser.add_argument("--runtimes", default=None,
                        help=f"comma-separated, of {', '.join(RUNTIMES)} (default: all on a CPU, the bf16 ones on CUDA)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default: all this process may use). On a machine shared with other "
                             "jobs, 1 gives steadier relative numbers: two OpenMP threads stall on each other")
    parser.add_argument("--tile", type=int, default=None, help="force a tile size (packed px); default: by memory budget")
    parser.add_argument("--batch", type=int, default=2, help="files in each end-to-end run")
    parser.add_argument("--repeat", type=int, default=3, help="G1 runs per choice (the best counts)")
    parser.add_argument("--train-steps", type=int, default=5, help="CPU training steps per precision (0: skip)")
    parser.add_argument("--cfa", default="bayer",
                        help="comma-separated sensors per size: bayer, xtrans (bayer,xtrans: X-Trans ÷ Bayer per file)")
    parser.add_argument("--noise-map", action=argparse.BooleanOptionalAction, default=None,
                        help="profiles read the noise map, as default-lite does (default: on when --cfa has xtrans)")
    parser.add_argument("--check-tiles", action="store_true",
                        help="X-Trans frames: PSNR of the tiled render against one whole-frame pass (one more render)")
    parser.add_argument("--no-lens", action="store_true",
                        help="skip the --lens auto / off comparison (converter-default only)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    parser.add_argument("--output", type=Path, help="also write the table (text) and the JSON next to it")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    device = choose_device(args.device)
    from raw2rgb_plugin.runtime.onnx_runner import onnx_available
    from raw2rgb_plugin.runtime.openvino_runner import openvino_available

    installed = {"onnx": onnx_available(), "openvino": openvino_available()}
    cpu_runtimes = [name for name in RUNTIMES if installed.get(name.split("-")[0], True)]
    runtimes = (args.runtimes or ("eager-bf16,optimized-bf16" if device.type == "cuda" else ",".join(cpu_runtimes))).split(",")
    console = Console(stderr=True)
    stages: list[dict] = []
    rows: list[dict] = []
    cfas = args.cfa.split(",")
    noise_map = args.noise_map if args.noise_map is not None else "xtrans" in cfas
    load_at_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory(prefix="raw2rgb-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for size_name in args.sizes.split(","):
            for cfa in cfas:
                frame = size_name + (" X-Trans" if cfa == "xtrans" else "")
                dng = synthetic_dng(tmp / f"{size_name}-{cfa}.dng", *SIZES[size_name], cfa=cfa)
                frame_stages, baseline_s = measure_stages(frame, dng, tmp, console)
                stages += frame_stages
                for variant in args.variants.split(","):
                    profile = bench_profile(tmp, variant, cfa, noise_map)
                    for runtime in runtimes:
                        out_dir = tmp / f"out-{size_name}-{cfa}-{variant}-{runtime}"
                        out_dir.mkdir()
                        spec = {"profile": str(profile), "dng": str(dng), "device": str(device), "runtime": runtime,
                                "tile": args.tile, "threads": args.threads, "batch": args.batch, "repeat": args.repeat,
                                "out_dir": str(out_dir), "check_tiles": args.check_tiles and cfa == "xtrans"}
                        if runtime == "converter-default" and not args.no_lens and cfa == "bayer":
                            spec["lens_dng"] = str(synthetic_dng(tmp / f"{size_name}-lens.dng", *SIZES[size_name],
                                                                 lens=True))
                        row = {"frame": frame, "cfa": cfa, "variant": variant + ("+noise" if noise_map else ""),
                               "device": device.type, **run_worker(spec)}
                        if "convert_s_per_file" in row:
                            row["vs_ahd"] = row["convert_s_per_file"] / baseline_s
                        rows.append(row)
                        console.print(row)

    training = []
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.train_steps > 0:
        for precision in ("fp32", "bf16"):
            training.append({"precision": precision, "model": "G1 lite, L1, batch 8, 96-px packed",
                             "steps_per_s": training_steps_per_s(precision, args.train_steps)})

    machine = {"cpu": cpu_model_name(), "isa": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
               "torch": torch.__version__, "python": platform.python_version(), "load_average_at_start": load_at_start,
               "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}
    if device.type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(device)
    report = {"machine": machine, "stages": stages, "runtimes": rows, "training": training,
              "xtrans_vs_bayer": cfa_ratios(rows)}
    text = render_tables(report)
    Console(stderr=args.json, width=160).print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with args.output.open("w") as handle:
            Console(file=handle, width=160).print(text)
        args.output.with_suffix(".json").write_text(json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report, indent=2))


def render_tables(report: dict) -> Table:
    machine = report["machine"]
    title = (f"raw2rgb convert benchmark — {machine['cpu']} ({machine['isa']}), {machine['threads']} threads, "
             f"torch {machine['torch']}" + (f", {machine['gpu']}" if "gpu" in machine else ""))
    loads = [f"{', '.join(f'{x:.1f}' for x in machine.get(key) or [])}" for key in ("load_average_at_start", "load_average")]
    table = Table(title=title, caption=f"best of several runs; load average at the start: {loads[0]}, at the end: {loads[1]}")
    for column in ("frame", "what", "runner", "tile", "G1 s", "render s", "convert s/file", "files/s", "× LibRaw",
                   "peak RSS GiB"):
        table.add_column(column, justify="left" if column in ("frame", "what", "runner", "tile") else "right")
    for stage in report["stages"]:
        table.add_row(stage["frame"], stage["stage"], "", "", "", "", f"{stage['seconds']:.3f}", "", "", "")
    for row in report["runtimes"]:
        if "error" in row:
            table.add_row(row["frame"], f"G1 {row['variant']} {row['runtime']}", f"failed: {row['error']}")
            continue
        tile = row["tile"]
        peak = f"{row['peak_rss_gib']:.2f}" + (f" (GPU {row['peak_gpu_gib']:.2f})" if "peak_gpu_gib" in row else "")
        table.add_row(row["frame"], f"G1 {row['variant']} {row['runtime']}", row["runner"],
                      "whole" if not tile else "×".join(map(str, tile if isinstance(tile, list) else [tile, tile])),
                      f"{row['g1_s']:.3f}", f"{row['render_s']:.3f}", f"{row['convert_s_per_file']:.3f}",
                      f"{row['files_per_s']:.3f}", f"{row['vs_ahd']:.2f}", peak)
    for row in report["runtimes"]:
        if "lens_auto_s_per_file" in row:
            off, auto = row["lens_off_s_per_file"], row["lens_auto_s_per_file"]
            table.add_row(row["frame"], f"G1 {row['variant']} {row['runtime']}: --lens off → auto (kit zoom)", "", "",
                          "", "", f"{off:.3f} → {auto:.3f}", f"+{100 * (auto / off - 1):.1f} %", "", "")
    for row in report["runtimes"]:
        if "tiles_vs_whole_db" in row:
            table.add_row(row["frame"], f"G1 {row['variant']} {row['runtime']}: tiles vs whole frame (≥ 50 dB)", "", "",
                          "", "", f"{row['tiles_vs_whole_db']:.1f} dB", f"max {row['tiles_vs_whole_max_levels']} levels",
                          "", "")
    for row in report.get("xtrans_vs_bayer", []):
        table.add_row(row["frame"], f"X-Trans ÷ Bayer, G1 {row['variant']} {row['runtime']} (target ≤ 1.3)", "", "", "",
                      "", f"{row['xtrans_s']:.3f} / {row['bayer_s']:.3f}", f"{row['ratio']:.2f}×", "", "")
    for row in report["training"]:
        table.add_row("train", f"{row['model']}, {row['precision']}", "", "", "", "", "", f"{row['steps_per_s']:.2f} it/s",
                      "", "")
    return table


if __name__ == "__main__":
    main()
