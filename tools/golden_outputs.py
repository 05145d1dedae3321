"""Print (or, with --write, store) the golden output digests that tests/test_golden.py checks.

    python tools/golden_outputs.py [--write]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_golden import golden_inputs, render_digest  # noqa: E402


def main() -> None:
    shared = ROOT.parent / "shared" / "data"
    digests = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in golden_inputs(shared if shared.is_dir() else None).items():
            digests[name] = render_digest(path, Path(tmp))
    text = json.dumps(digests, indent=2, sort_keys=True) + "\n"
    if "--write" in sys.argv:
        (ROOT / "tests" / "golden" / "default-lite.json").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
