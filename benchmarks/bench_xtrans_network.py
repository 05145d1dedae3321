"""The X-Trans G1 against the Bayer G1 on the same sensor size: forward time of the network alone.

    python benchmarks/bench_xtrans_network.py [--variant lite] [--repeats 2]

A 24 MP sensor (6000×4000) is a 3000×2000 packed Bayer frame (4 channels + the 4-channel noise
map, `mhc-srgb-gated`) or a 1000×667 packed X-Trans frame (36 channels + the 36-channel noise map,
`xtrans-srgb-gated`). Both run through the optimised `TorchRunner` the converter uses (tiles under
the CPU memory budget), fp32 and bf16, in the same process; the table gives seconds (best of
`--repeats`) and the X-Trans/Bayer ratio per precision. Issue 25's target is a whole X-Trans
convert at most 1.3× a Bayer one; this measures the network's share of it. Random weights: time
does not depend on them.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from raw2rgb_plugin.models.g1 import G1, G1_SPEC, G1Config
from raw2rgb_plugin.runtime.runner import TorchRunner, cpu_memory_budget


def _seconds(runner: TorchRunner, packed: torch.Tensor, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        runner.run(packed)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="lite")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--scale", type=float, default=1.0, help="sensor size × this (a quick run: 0.25)")
    args = parser.parse_args()
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    bayer_hw = (round(2000 * args.scale), round(3000 * args.scale))
    xtrans_hw = (-(-bayer_hw[0] * 2 // 6), -(-bayer_hw[1] * 2 // 6))  # the same sensor, packed by 6
    cases = {
        "Bayer": (G1(G1Config.for_variant(args.variant, spectral_norm=False, residual_base="mhc-srgb-gated",
                                          noise_channels=4)).eval(), 8, bayer_hw),
        "X-Trans": (G1(G1Config.for_variant(args.variant, spectral_norm=False, period=6, in_channels=36,
                                            residual_base="xtrans-srgb-gated", noise_channels=36)).eval(), 72,
                    xtrans_hw),
    }
    budget = cpu_memory_budget()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, memory budget {budget >> 20} MiB, G1 {args.variant}")
    print(f"{'precision':<10}{'Bayer s':>10}{'X-Trans s':>12}{'ratio':>8}   packed: Bayer {bayer_hw}, X-Trans {xtrans_hw}")
    for dtype in (torch.float32, torch.bfloat16):
        seconds = {}
        for name, (model, channels, (h, w)) in cases.items():
            runner = TorchRunner(model, G1_SPEC, device=cpu, dtype=dtype, optimize=True, memory_budget=budget,
                                 reuse_heap=True)
            packed = torch.rand(1, channels, h, w)
            runner.run(packed[..., : min(h, 256), : min(w, 256)])  # warm the kernels
            seconds[name] = _seconds(runner, packed, args.repeats)
        print(f"{str(dtype).removeprefix('torch.'):<10}{seconds['Bayer']:>10.2f}{seconds['X-Trans']:>12.2f}"
              f"{seconds['X-Trans'] / seconds['Bayer']:>8.2f}")


if __name__ == "__main__":
    main()
