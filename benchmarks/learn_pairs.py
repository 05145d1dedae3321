"""`raw2rgb learn`'s pair stage timed on a few frames of a `learn_card.py` card: wall and CPU
seconds per `build_pair`, and the process's peak memory.

    python benchmarks/learn_pairs.py                       # frames 10…15 of the 100 × 24 MP card
    PYTHONPATH=/other/checkout python benchmarks/learn_pairs.py   # the same frames, other code

Frames the card lacks are made first (as `learn_card.py` makes them, not timed). One warm-up pair
(imports, caches) comes before the timed ones. Run it on one thread (`OMP_NUM_THREADS=1`) to
compare code, as each worker of `learn`'s pool of pair builders runs.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--card", type=Path, default=Path("/tmp/raw2rgb-learn-card/global-100x24MP"))
    parser.add_argument("--first", type=int, default=10)
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--megapixels", type=float, default=24.0, help="of frames made when the card lacks them")
    parser.add_argument("--max-side", type=int, default=1024)
    args = parser.parse_args()

    names = [f"IMG_{i:04d}" for i in range(args.first - 1, args.first + args.count)]
    if not all((args.card / f"{name}.dng").is_file() for name in names):
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from learn_card import make_card  # its own imports put this checkout first on the path

        make_card(args.card, args.first + args.count, args.megapixels, ROOT.parent / "shared" / "data" / "rgb",
                  "global", sidecar_only=False)
    import raw2rgb_plugin
    from raw2rgb_plugin.training.learn.pairs import build_pair

    build_pair(args.card / f"{names[0]}.dng", "auto", args.max_side)  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    for name in names[1:]:
        build_pair(args.card / f"{name}.dng", "auto", args.max_side)
    wall, cpu = (time.perf_counter() - wall) / args.count, (time.process_time() - cpu) / args.count
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{args.count} pairs of {args.card.name} ({Path(raw2rgb_plugin.__file__).parents[1]}): "
          f"{wall:.2f} s wall, {cpu:.2f} s CPU per pair; peak RSS {peak:.2f} GiB")


if __name__ == "__main__":
    main()
