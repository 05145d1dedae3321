"""Conversion benchmark: each stage of `raw2rgb convert`, with LibRaw's own rendering as baseline.

For synthetic 12 MP and 24 MP Bayer DNGs (written here, so no data is needed), prints one table:

- decode: rawpy open + unpack + our BayerFrame (what the engine's decode threads do);
- G1 per variant and device (random weights: speed does not depend on their values), whole-frame
  or tiled as `convert` would choose, after one warm-up run;
- TIFF write, uncompressed and deflate;
- end-to-end `Converter.convert` files/s on a small batch;
- the classical baseline in the same run: rawpy `postprocess` (AHD, 16-bit, camera WB), and the
  ratio of our end-to-end time to it.

    python benchmarks/bench_convert.py                     # lite+slim on CPU, 12 and 24 MP
    python benchmarks/bench_convert.py --variants base --device cuda --json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import rawpy
import torch
from rich.console import Console
from rich.table import Table

from raw2rgb_plugin.engine.converter import Converter, ConvertJob
from raw2rgb_plugin.io.dng_write import write_bayer_dng
from raw2rgb_plugin.io.icc import icc_profile_bytes
from raw2rgb_plugin.io.raw_file import decode_raw
from raw2rgb_plugin.io.tiff_write import write_rgb16_tiff
from raw2rgb_plugin.models.g1 import G1, G1Config
from raw2rgb_plugin.profiles.store import load_profile, save_profile
from raw2rgb_plugin.runtime.device import choose_device, inference_dtype

SIZES = {"12MP": (3000, 4000), "24MP": (4000, 6000)}
XYZ_TO_CAMERA = np.array([[0.6722, -0.0635, -0.0963], [-0.4287, 1.2460, 0.2028], [-0.0908, 0.2162, 0.5668]])


def timed(fn, repeat: int = 1) -> float:
    """Median wall time of `repeat` calls (CUDA synchronised)."""
    times = []
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def synthetic_dng(path: Path, height: int, width: int) -> Path:
    rng = np.random.default_rng(0)
    # Smooth gradients plus noise: LibRaw's AHD cost does not depend much on content.
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 0.3 + 0.2 * np.sin(x / 97.0) * np.cos(y / 61.0)
    mosaic = (64 + (4095 - 64) * np.clip(base + rng.normal(0, 0.01, base.shape), 0, 1)).astype(np.uint16)
    write_bayer_dng(path, mosaic, "RGGB", black_level=64, white_level=4095, color_matrix1=XYZ_TO_CAMERA,
                    as_shot_neutral=[0.5, 1.0, 0.7], make="raw2rgb", model="Benchmark")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="lite,slim", help="comma-separated G1 variants (lite, slim, base)")
    parser.add_argument("--sizes", default="12MP,24MP", help="comma-separated frame sizes (12MP, 24MP)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tile", type=int, default=None, help="force a tile size (packed px); default as convert")
    parser.add_argument("--batch", type=int, default=3, help="files in the end-to-end run")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON on stdout")
    args = parser.parse_args()

    device = choose_device(args.device)
    dtype = inference_dtype(device)
    console = Console(stderr=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="raw2rgb-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for size_name in args.sizes.split(","):
            height, width = SIZES[size_name]
            dng = synthetic_dng(tmp / f"{size_name}.dng", height, width)
            decode_s = timed(lambda: decode_raw(dng), repeat=3)

            def ahd() -> None:
                with rawpy.imread(str(dng)) as raw:
                    raw.postprocess(demosaic_algorithm=rawpy.DemosaicAlgorithm.AHD, output_bps=16,
                                    use_camera_wb=True, no_auto_bright=True)

            ahd_s = timed(ahd, repeat=2)
            console.print(f"{size_name}: decode {decode_s:.2f} s, LibRaw AHD {ahd_s:.2f} s")
            rows.append({"frame": size_name, "stage": "decode (rawpy + BayerFrame)", "device": "cpu", "seconds": decode_s})
            rows.append({"frame": size_name, "stage": "baseline: LibRaw postprocess AHD 16-bit", "device": "cpu",
                         "seconds": ahd_s})

            pixels = np.random.default_rng(1).integers(0, 65535, (height, width, 3), dtype=np.uint16)
            icc = icc_profile_bytes("srgb")
            for compress in (False, True):
                out = tmp / f"w{int(compress)}.tif"

                def write() -> None:
                    write_rgb16_tiff(out, pixels, icc=icc, metadata=None, software="bench", compress=compress, overwrite=True)

                rows.append({"frame": size_name, "stage": f"TIFF write ({'deflate' if compress else 'uncompressed'})",
                             "device": "cpu", "seconds": timed(write, repeat=2)})

            frame = decode_raw(dng)
            for variant in args.variants.split(","):
                torch.manual_seed(0)
                # The shipped profiles' input and residual base: their cost is part of the render.
                model = G1(G1Config.for_variant(variant, residual_base="mhc-srgb-gated")).eval()
                profile_path = save_profile(tmp / f"{variant}.safetensors", model, {"input_normalization": "linear-srgb"})
                converter = Converter(load_profile(profile_path), device=device, tile=args.tile)
                converter.render(frame)  # warm-up: allocator, cudnn autotune
                g1_s = timed(lambda: converter.render(frame), repeat=2 if device.type == "cpu" else 5)
                rows.append({"frame": size_name, "stage": f"G1 {variant} render", "device": f"{device.type} ({str(dtype)[6:]})",
                             "seconds": g1_s})
                batch_dir = tmp / f"batch-{size_name}-{variant}"
                batch_dir.mkdir()
                jobs = [ConvertJob(dng, batch_dir / f"{i}.tif") for i in range(args.batch)]
                start = time.perf_counter()
                results = converter.convert(jobs, overwrite=True)
                elapsed = time.perf_counter() - start
                assert all(r.status == "converted" for r in results), results
                per_file = elapsed / len(jobs)
                rows.append({"frame": size_name, "stage": f"end-to-end convert, {variant}", "device": device.type,
                             "seconds": per_file, "files_per_s": 1 / per_file, "vs_ahd": per_file / ahd_s})
                console.print(f"{size_name} {variant}: G1 {g1_s:.2f} s, end-to-end {per_file:.2f} s/file")

    cpu = platform.processor() or platform.machine()
    title = f"raw2rgb convert benchmark — torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {cpu}"
    if device.type == "cuda":
        title += f", {torch.cuda.get_device_name(device)}"
    table = Table(title=title)
    for column in ("frame", "stage", "device", "s / frame", "files/s", "× AHD time"):
        table.add_column(column, justify="right" if column not in ("stage", "device") else "left")
    for row in rows:
        table.add_row(row["frame"], row["stage"], row["device"], f"{row['seconds']:.3f}",
                      f"{row['files_per_s']:.2f}" if "files_per_s" in row else "",
                      f"{row['vs_ahd']:.2f}" if "vs_ahd" in row else "")
    Console(stderr=args.json).print(table)
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
