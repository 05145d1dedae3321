"""Check (or, with --write, store) the golden outputs that tests/test_golden.py compares.

    python tools/golden_outputs.py            # render, compare, print a line per file; exit 1 on a mismatch
    python tools/golden_outputs.py --write    # store new references (a deliberate change of numerics)

Set `ATEN_CPU_CAPABILITY=default|avx2|avx512` to check another CPU's rounding on this one; the
test suite runs this script once under `default` (tests/test_golden.py).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from golden_outputs import compare, golden_inputs, load_references, render, save_references  # noqa: E402


def main() -> int:
    shared = ROOT.parent / "shared" / "data"
    inputs = golden_inputs(shared if shared.is_dir() else None)
    with tempfile.TemporaryDirectory() as tmp:
        renderings = {name: render(path, Path(tmp)) for name, path in inputs.items()}
    if "--write" in sys.argv:
        if len(renderings) < 3:
            print("golden: ../shared/data is absent; refusing to write references for some files only", file=sys.stderr)
            return 2
        save_references(renderings)
        print(f"golden: wrote {len(renderings)} references")
        return 0
    references = load_references()
    failed = False
    for name, pixels in sorted(renderings.items()):
        comparison = compare(pixels, references[name])
        failed |= not comparison.matches
        print(f"{name}: {'matches' if comparison.matches else 'DIFFERS'}: {comparison}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
