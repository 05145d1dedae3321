"""Make `examples/astronaut.dng`: a camera RAW unprocessed from a public-domain photograph.

The source is scikit-image's bundled `astronaut.png` (NASA photograph of Eileen Collins, public
domain), read out of the scikit-image wheel with zipfile — scikit-image is not a dependency.
It is unprocessed with the project's own `raw2rgb_plugin.training.data.unprocess` (Brooks et al. 2019) with a
fixed seed and a plausible camera: GRBG, 12 bits, black level 256, mild shot/read noise, and
written as a Bayer DNG with its colour matrix, as-shot white balance and EXIF metadata.

    python examples/make_example_raw.py                       # pip-downloads the wheel once
    python examples/make_example_raw.py --skimage-wheel scikit_image-0.26.0-…whl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from raw2rgb_plugin.io.exif_read import PhotoMetadata  # noqa: E402
from raw2rgb_plugin.training.data.unprocess import random_params, write_synthetic_dng  # noqa: E402

from skimage_wheel import SAMPLE_IMAGES, SKIMAGE_VERSION, WheelError, find_or_download_wheel, read_sample_image  # noqa: E402

SEED = 20190615  # fixed, so the example is the same file on every run
CFA = "GRBG"
BITS = 12
BLACK_LEVEL = 256
#: a low-ISO-like noise level on Brooks et al.'s shot/read line (log read = 2.18 log shot + 1.2).
SHOT_NOISE = 5e-4
READ_NOISE = float(np.exp(2.18 * np.log(SHOT_NOISE) + 1.2))

METADATA = PhotoMetadata(
    make="raw2rgb",
    model="Example (unprocessed astronaut)",
    artist="NASA",
    copyright="Public domain",
    orientation=1,
)


def make_example(out: Path, wheel: Path) -> dict:
    srgb = read_sample_image(wheel, "astronaut")
    rng = np.random.default_rng(SEED)
    params = replace(
        random_params(rng, cfa_pattern=CFA, noise=False),
        bits=BITS,
        black_level=BLACK_LEVEL,
        white_level=2**BITS - 1,
        shot_noise=SHOT_NOISE,
        read_noise=READ_NOISE,
    )
    write_synthetic_dng(srgb, out, rng, params=params, metadata=METADATA)
    return {
        "output": str(out),
        "bytes": out.stat().st_size,
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "source": f"{SAMPLE_IMAGES['astronaut'].member} from scikit-image {SKIMAGE_VERSION} ({wheel.name})",
        "source_sha256": SAMPLE_IMAGES["astronaut"].sha256,
        "size": [int(srgb.shape[1]), int(srgb.shape[0])],
        "camera": params.to_dict(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skimage-wheel", type=Path,
                        help=f"a scikit_image-{SKIMAGE_VERSION} wheel (default: cached or pip-downloaded)")
    parser.add_argument("--out", type=Path, default=ROOT / "examples" / "astronaut.dng")
    args = parser.parse_args(argv)
    try:
        wheel = find_or_download_wheel(args.skimage_wheel)
    except WheelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(make_example(args.out, wheel), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
