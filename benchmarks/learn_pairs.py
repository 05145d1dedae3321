"""`raw2rgb learn`'s pair stage timed on a few frames of a `learn_card.py` card: wall and CPU
seconds per `build_pair`, and the process's peak memory.

    python benchmarks/learn_pairs.py                       # frames 10…15 of the 100 × 24 MP card
    PYTHONPATH=/other/checkout python benchmarks/learn_pairs.py   # the same frames, other code
    OMP_NUM_THREADS=2 python benchmarks/learn_pairs.py --stage --count 12   # the stage as learn runs it

Frames the card lacks are made first (as `learn_card.py` makes them, not timed). One warm-up pair
(imports, caches) comes before the timed ones. Run it on one thread (`OMP_NUM_THREADS=1`) to
compare code, as each worker of `learn`'s pool of pair builders runs; `--stage` times the whole
stage as `learn` runs it (its pool, on torch's thread count) into a fresh run folder.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI sets it, before torch starts OpenMP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--card", type=Path, default=Path("/tmp/raw2rgb-learn-card/global-100x24MP"))
    parser.add_argument("--first", type=int, default=10)
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--megapixels", type=float, default=24.0, help="of frames made when the card lacks them")
    parser.add_argument("--max-side", type=int, default=1024)
    parser.add_argument("--stage", action="store_true", help="time learn's pair stage (no warm-up pair)")
    args = parser.parse_args()

    names = [f"IMG_{i:04d}" for i in range(args.first - 1, args.first + args.count)]
    if not all((args.card / f"{name}.dng").is_file() for name in names):
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from learn_card import make_card  # its own imports put this checkout first on the path

        make_card(args.card, args.first + args.count, args.megapixels, ROOT.parent / "shared" / "data" / "rgb",
                  "global", sidecar_only=False)
    import raw2rgb_plugin

    wall, cpu = _stage(args, names[1:]) if args.stage else _loop(args, names)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{args.count} pairs of {args.card.name} ({Path(raw2rgb_plugin.__file__).parents[1]}"
          f"{', the stage' if args.stage else ''}): {wall:.2f} s wall, {cpu:.2f} s CPU per pair; peak RSS {peak:.2f} GiB")


def _loop(args: argparse.Namespace, names: list[str]) -> tuple[float, float]:
    from raw2rgb_plugin.training.learn.pairs import build_pair

    build_pair(args.card / f"{names[0]}.dng", "auto", args.max_side)  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    for name in names[1:]:
        build_pair(args.card / f"{name}.dng", "auto", args.max_side)
    return (time.perf_counter() - wall) / args.count, (time.process_time() - cpu) / args.count


def _stage(args: argparse.Namespace, names: list[str]) -> tuple[float, float]:
    import shutil
    import tempfile

    from raw2rgb_plugin.training.learn.options import LearnOptions
    from raw2rgb_plugin.training.learn.run import _pairs

    run = Path(tempfile.mkdtemp(prefix="learn-pairs-"))
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        _pairs([args.card / f"{name}.dng" for name in names], run, LearnOptions("bench", max_side=args.max_side),
               lambda event: None, {})
        return (time.perf_counter() - wall) / args.count, (time.process_time() - cpu) / args.count
    finally:
        shutil.rmtree(run)

if __name__ == "__main__":
    main()
