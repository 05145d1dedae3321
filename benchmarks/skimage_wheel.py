"""Public-domain and CC0 photographs read straight out of a scikit-image wheel.

scikit-image bundles a few sample photographs with clear licences. We need four of them (the
example RAW and the held-out quality test set), not scikit-image itself, so the wheel is only
downloaded (`pip download --no-deps`) and read as a zip file; every image is checked against the
SHA-256 recorded here, so any platform's wheel of the pinned version gives the same pixels.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SKIMAGE_VERSION = "0.26.0"


@dataclass(frozen=True)
class SampleImage:
    name: str
    member: str  # path inside the wheel
    sha256: str
    title: str
    licence: str


#: Licences as scikit-image's `skimage/data/_fetchers.py` docstrings state them.
SAMPLE_IMAGES: dict[str, SampleImage] = {
    image.name: image
    for image in (
        SampleImage("astronaut", "skimage/data/astronaut.png",
                    "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
                    "Eileen Collins, NASA astronaut (NASA Great Images database)",
                    "public domain (NASA; no known copyright restrictions)"),
        SampleImage("coffee", "skimage/data/coffee.png",
                    "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
                    "Coffee cup, courtesy of Pikolo Espresso Bar (photo: Rachel Michetti)",
                    "CC0 (by the photographer)"),
        SampleImage("chelsea", "skimage/data/chelsea.png",
                    "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
                    "Chelsea the cat (photo: Stefan van der Walt)",
                    "CC0 (by the photographer)"),
        SampleImage("rocket", "skimage/data/rocket.jpg",
                    "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
                    "Falcon 9 launching DSCOVR (SpaceX photo)",
                    "public domain (released by SpaceX)"),
    )
}


class WheelError(RuntimeError):
    """The wheel cannot be found, fetched or read; the message says what to do."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "raw2rgb" / "skimage-wheel"


def find_or_download_wheel(wheel: str | os.PathLike | None = None, *, cache_dir: Path | None = None) -> Path:
    """`wheel` if given, else a cached scikit-image wheel of the pinned version, else pip-download one."""
    if wheel is not None:
        path = Path(wheel)
        if not path.is_file():
            raise WheelError(f"{path} does not exist — pass the path of a scikit_image-{SKIMAGE_VERSION} wheel")
        return path
    cache_dir = cache_dir or default_cache_dir()
    cached = sorted(cache_dir.glob(f"scikit_image-{SKIMAGE_VERSION}-*.whl"))
    if cached:
        return cached[0]
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "--quiet", f"scikit-image=={SKIMAGE_VERSION}", "-d", tmp]
        result = subprocess.run(command, capture_output=True, text=True)
        downloaded = sorted(Path(tmp).glob("scikit_image-*.whl"))
        if result.returncode != 0 or not downloaded:
            raise WheelError(
                f"could not download scikit-image {SKIMAGE_VERSION} ({result.stderr.strip().splitlines()[-1:] or 'no wheel'})"
                f" — run `pip download --no-deps scikit-image=={SKIMAGE_VERSION} -d DIR` where there is a network "
                "and pass the wheel with --skimage-wheel"
            )
        target = cache_dir / downloaded[0].name
        os.replace(downloaded[0], target)
    return target


def read_sample_bytes(wheel: Path, name: str) -> bytes:
    """The encoded file of sample image `name`, checked against its recorded SHA-256."""
    image = SAMPLE_IMAGES[name]
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(image.member)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise WheelError(f"cannot read {image.member} from {wheel} ({exc}) — "
                         f"pass a scikit_image-{SKIMAGE_VERSION} wheel") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != image.sha256:
        raise WheelError(f"{image.member} in {wheel} has SHA-256 {digest[:12]}…, expected {image.sha256[:12]}… "
                         f"— use a scikit_image-{SKIMAGE_VERSION} wheel")
    return data


def read_sample_image(wheel: Path, name: str) -> np.ndarray:
    """Sample image `name` as float64 sRGB (H, W, 3) in [0, 1]."""
    from PIL import Image

    with Image.open(io.BytesIO(read_sample_bytes(wheel, name))) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.float64)
    return rgb / 255.0
