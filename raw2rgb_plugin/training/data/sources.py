"""Where a build's RAW/RGB pairs come from: two folders, a CSV, or sRGB images to unprocess.

A `PairSource` lists its pairs up front (the build needs them all to resume and to split by
scene), says what it could not pair (for the report), and may `prepare` each pair in the worker
just before it is processed: the synthetic source writes the pair's DNG there, so a big image
folder never has all its DNGs on disk before any is used, and an interrupted build resumes.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from raw2rgb_plugin.training.data.images import RGB_EXTENSIONS, load_rgb
from raw2rgb_plugin.training.data.store import DatasetError
from raw2rgb_plugin.training.data.unprocess import random_params, write_synthetic_dng
from raw2rgb_plugin.vocabulary import RAW_EXTENSIONS

#: what `prepare` returns besides the pair: run once the pair is stored (or failed).
Cleanup = Callable[[], None]


@dataclass(frozen=True)
class Pair:
    raw: Path
    rgb: Path
    scene: str
    #: extra provenance stored with the shard (e.g. the unprocessing parameters).
    extra: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def shard_name(self) -> str:
        """Stable across runs (it is how a resumed build finds the pair's shard), unique per pair."""
        digest = hashlib.sha1(f"{self.raw.resolve()}|{self.rgb.resolve()}".encode()).hexdigest()[:10]
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", self.raw.stem)[:60]
        return f"{safe}-{digest}"


class PairSource(Protocol):
    def pairs(self) -> list[Pair]:
        """Every pair of the build, in a stable order."""
        ...

    def unmatched(self) -> dict:
        """Files that could not be paired, by kind (for the report)."""
        ...

    def prepare(self, pair: Pair) -> tuple[Pair, Cleanup | None]:
        """Run in the worker before `pair` is processed: the pair to process, and a clean-up."""
        ...


class ListedPairs:
    """Pairs that are already on disk, given as a list."""

    def __init__(self, pairs: Sequence[Pair], unmatched: dict | None = None):
        self._pairs, self._unmatched = list(pairs), dict(unmatched or {})

    def pairs(self) -> list[Pair]:
        return list(self._pairs)

    def unmatched(self) -> dict:
        return dict(self._unmatched)

    def prepare(self, pair: Pair) -> tuple[Pair, Cleanup | None]:
        return pair, None


class FolderPairs(ListedPairs):
    """A RAW folder and an RGB folder, paired by file stem (case-insensitive)."""

    def __init__(self, raw_dir: Path, rgb_dir: Path):
        raw_dir, rgb_dir = _folders(raw_dir, rgb_dir)
        raws = _by_stem(raw_dir, RAW_EXTENSIONS, "RAW")
        rgbs = _by_stem(rgb_dir, RGB_EXTENSIONS, "RGB")
        pairs = [Pair(raws[k], rgbs[k], raws[k].stem) for k in sorted(raws) if k in rgbs]
        if not pairs:
            raise DatasetError(f"no RAW in {raw_dir} has an RGB image of the same name in {rgb_dir}",
                               "name each pair alike (IMG_1.CR2 ↔ IMG_1.jpg) or pass --manifest CSV")
        super().__init__(pairs, {
            "raw_without_rgb": sorted(raws[k].name for k in raws if k not in rgbs),
            "rgb_without_raw": sorted(rgbs[k].name for k in rgbs if k not in raws),
        })


def _folders(raw_dir: Path, rgb_dir: Path) -> tuple[Path, Path]:
    raw_dir, rgb_dir = Path(raw_dir), Path(rgb_dir)
    for folder, what in ((raw_dir, "RAW"), (rgb_dir, "RGB")):
        if not folder.is_dir():
            raise DatasetError(f"{what} folder {folder} does not exist", "check the path")
    return raw_dir, rgb_dir


def _by_stem(folder: Path, suffixes: frozenset[str], what: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in suffixes:
            key = p.stem.lower()
            if key in found:  # which one was meant is anyone's guess
                raise DatasetError(f"{what} files {found[key].name} and {p.name} share the stem {p.stem!r}",
                                   "rename one, or pair them with --manifest CSV")
            found[key] = p
    return found


class CsvPairs(ListedPairs):
    """A CSV with columns raw, rgb[, scene]; relative paths are taken from the two folders.

    The scene column groups several views of one scene so they land in the same split.
    """

    def __init__(self, path: Path, raw_dir: Path, rgb_dir: Path):
        raw_dir, rgb_dir = _folders(raw_dir, rgb_dir)
        path = Path(path)
        if not path.is_file():
            raise DatasetError(f"pair manifest {path} does not exist", "check the path")
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets write a BOM
            rows = list(csv.DictReader(f))
        if not rows or not {"raw", "rgb"} <= set(rows[0]):
            raise DatasetError(f"{path} needs a header with columns raw,rgb (and optionally scene)", "fix the CSV header")
        pairs = []
        for line, row in enumerate(rows, start=2):
            raw = Path(row["raw"]).expanduser()
            rgb = Path(row["rgb"]).expanduser()
            raw = raw if raw.is_absolute() else raw_dir / raw
            rgb = rgb if rgb.is_absolute() else rgb_dir / rgb
            for p in (raw, rgb):
                if not p.is_file():
                    raise DatasetError(f"{path}:{line}: {p} does not exist", "fix the path in the CSV")
            scene = (row.get("scene") or "").strip() or raw.stem
            pairs.append(Pair(raw, rgb, scene))
        super().__init__(pairs)


def pair_source(raw_dir: Path, rgb_dir: Path, manifest_csv: Path | None = None) -> PairSource:
    """The pairs of `raw2rgb dataset build`: from the CSV when one is given, else by file stem."""
    if manifest_csv is not None:
        return CsvPairs(manifest_csv, raw_dir, rgb_dir)
    return FolderPairs(raw_dir, rgb_dir)


def find_pairs(raw_dir: Path, rgb_dir: Path, manifest_csv: Path | None = None) -> tuple[list[Pair], dict]:
    """`pair_source`'s pairs and what could not be paired (nothing, for a CSV)."""
    source = pair_source(raw_dir, rgb_dir, manifest_csv)
    return source.pairs(), source.unmatched()


# ------------------------------------------------------------------------------ synthetic pairs


def find_images(rgb_dir: Path) -> list[Path]:
    """The images under `rgb_dir`, searched recursively, in a stable order."""
    rgb_dir = Path(rgb_dir)
    if not rgb_dir.is_dir():
        raise DatasetError(f"image folder {rgb_dir} does not exist", "check the path")
    images = sorted(p for p in rgb_dir.rglob("*") if p.is_file() and p.suffix.lower() in RGB_EXTENSIONS)
    if not images:
        raise DatasetError(f"{rgb_dir} holds no PNG, JPEG or TIFF images", "point it at a folder of sRGB images")
    return images


class SyntheticPairs(ListedPairs):
    """sRGB images, each unprocessed into `cameras` DNGs in `raw_dir`, one random camera apiece.

    The copies of an image share its scene (its path under `rgb_dir`), so they all land in the
    same split and validation stays unseen.
    """

    def __init__(self, rgb_dir: Path, raw_dir: Path, *, cameras: int = 1, seed: int = 0, noise: bool = True,
                 inverse_tone_curve: bool = True, keep_raw: bool = True):
        rgb_dir = Path(rgb_dir)
        pairs = []
        for image in find_images(rgb_dir):
            key = _image_key(image, rgb_dir)
            scene = image.relative_to(rgb_dir).with_suffix("").as_posix()
            for copy in range(cameras):
                name = key if cameras == 1 else f"{key}-cam{copy}"
                pairs.append(Pair(raw=Path(raw_dir) / f"{name}.dng", rgb=image, scene=scene))
        super().__init__(pairs)
        self.seed, self.noise, self.inverse_tone_curve, self.keep_raw = seed, noise, inverse_tone_curve, keep_raw

    def prepare(self, pair: Pair) -> tuple[Pair, Cleanup | None]:
        """Write the pair's DNG; its unprocessing parameters go into the shard as provenance."""
        # One generator per DNG, seeded by the run seed and its name: resumable, order-free.
        seed = int.from_bytes(hashlib.sha256(f"{self.seed}|{pair.raw.name}".encode()).digest()[:8], "little")
        rng = np.random.default_rng(seed)
        srgb, _ = load_rgb(pair.rgb)
        params = random_params(rng, noise=self.noise, inverse_tone_curve=self.inverse_tone_curve)
        pair.raw.parent.mkdir(parents=True, exist_ok=True)
        write_synthetic_dng(srgb, pair.raw, rng, params=params)
        cleanup = None if self.keep_raw else (lambda: pair.raw.unlink(missing_ok=True))
        return replace(pair, extra={"synthetic": params.to_dict(), "raw_kept": self.keep_raw}), cleanup


def _image_key(image: Path, rgb_dir: Path) -> str:
    # The digest of the relative path tells apart equal names in different subfolders.
    relative = image.relative_to(rgb_dir).as_posix()
    digest = hashlib.sha1(relative.encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', image.stem)[:60]}-{digest}"
