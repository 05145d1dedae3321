"""A training corpus: natural photographs from named sources, downsampled until they are clean.

`raw2rgb dataset corpus OUT --recipe tools/corpus-recipe.json --sources SRC` rebuilds the
corpus the shipped profiles learn from; `--folder PATH --licence TEXT` adds any folder of
photographs. `train --synthetic OUT/images` then trains on it.

Each photograph is area-averaged in linear light by at least its source's `min_factor`
(2 for camera JPEGs: a pixel of the result averages four, so the camera's demosaicking, noise
and JPEG blocks are gone from the target the network learns to reproduce), and further until its
short side is at most `max_short_side`; one whose short side would end under `min_short_side`
is left out. Results are 16-bit PNGs (the averaging makes values between 8-bit steps).

The field's test sets never enter: files named like Kodak24 (`kodim01`…) and every image whose
16 × 16 thumbnail correlates above 0.97 with one in `--test-images` (../shared/data/rgb:
Kodak24, McMaster18) are excluded and listed in the manifest with the reason. The manifest
(`OUT/manifest.json`) records per image its source, licence, whether the licence is
research-only, the source file's SHA-256 and the factor; a rebuild skips what is already there.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.io.files import write_bytes, write_json
from raw2rgb_plugin.pipeline.colour import srgb_decode, srgb_encode
from raw2rgb_plugin.training.data.images import RGB_EXTENSIONS, load_rgb

FORMAT = "raw2rgb-corpus"
FORMAT_VERSION = 1
IMAGES_DIR = "images"
MANIFEST = "manifest.json"
#: a 16 × 16 thumbnail this correlated with a test image's is that image (resized, recompressed)
TEST_IMAGE_CORRELATION = 0.97
_TEST_SET_NAME = re.compile(r"^kodim\d\d", re.IGNORECASE)


class CorpusError(Raw2RgbError):
    """A corpus source or recipe that cannot be used."""


@dataclass(frozen=True)
class CorpusSource:
    """Photographs under `root` (all of them, or the `files` listed relative to it)."""

    name: str  # "debian:mate-backgrounds", "github:BIDS/BSDS500", "folder:holiday"
    root: Path
    licence: str
    research_only: bool = False
    min_factor: float = 2.0
    files: tuple[str, ...] = ()
    origin: dict = field(default_factory=dict)  # how to get it again: package version, commit

    def images(self) -> list[Path]:
        if not self.root.is_dir():
            raise CorpusError(f"source {self.name}: {self.root} does not exist", _how_to_get(self.origin))
        if self.files:
            missing = [f for f in self.files if not (self.root / f).is_file()]
            if missing:
                raise CorpusError(f"source {self.name}: {len(missing)} listed files are missing (first: {missing[0]})",
                                  _how_to_get(self.origin))
            return [self.root / f for f in self.files]
        return sorted(p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in RGB_EXTENSIONS)


@dataclass(frozen=True)
class CorpusOptions:
    max_short_side: int = 1024
    min_short_side: int = 192  # the on-the-fly trainer's patch (sensor pixels)


def _how_to_get(origin: dict) -> str:
    if origin.get("package"):
        return f"run with --sources pointing at a writable folder: the package {origin['package']} is downloaded there"
    if origin.get("repository"):
        return (f"clone https://github.com/{origin['repository']} at {origin.get('commit', 'HEAD')} into the "
                f"--sources folder as {origin['repository'].replace('/', '+')}")
    return "check the path"


# ---------------------------------------------------------------------------------------------- recipe


def sources_from_recipe(recipe: Path, sources_dir: Path, *, fetch_packages: bool = True) -> list[CorpusSource]:
    """The sources a recipe names, found under `sources_dir` (Debian packages downloaded there)."""
    try:
        document = json.loads(Path(recipe).read_text())
        entries = document["sources"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorpusError(f"cannot read the recipe {recipe} ({exc})", "pass a JSON file with a 'sources' list") from None
    sources = []
    for entry in entries:
        origin = {k: entry[k] for k in ("package", "version", "repository", "commit", "folder", "url") if k in entry}
        if "package" in entry:
            root = _debian_package(entry["package"], Path(sources_dir) / "debian", fetch=fetch_packages)
        elif "repository" in entry:
            root = Path(sources_dir) / entry["repository"].replace("/", "+") / entry.get("folder", "")
        else:
            raise CorpusError(f"recipe entry {entry.get('name')!r} names neither a package nor a repository",
                              "add 'package' or 'repository'")
        sources.append(CorpusSource(name=entry["name"], root=root, licence=entry["licence"],
                                    research_only=bool(entry.get("research_only", False)),
                                    min_factor=float(entry.get("min_factor", 2.0)),
                                    files=tuple(entry.get("files", ())), origin=origin))
    return sources


def _debian_package(package: str, folder: Path, *, fetch: bool) -> Path:
    """The unpacked tree of a Debian package (`apt-get download` + `dpkg-deb -x`, no install)."""
    tree = folder / "x" / package
    if tree.is_dir() or not fetch:
        return tree
    folder.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["apt-get", "download", package], cwd=folder, check=True, capture_output=True, text=True)
        [deb] = sorted(folder.glob(f"{package}_*.deb"))[-1:]
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True, capture_output=True, text=True)
    except (OSError, ValueError, subprocess.CalledProcessError) as exc:
        reason = getattr(exc, "stderr", "") or str(exc)
        raise CorpusError(f"cannot download the Debian package {package} ({reason.strip().splitlines()[-1:]})",
                          "run `apt-get update` first, or unpack the package into the sources folder by hand") from None
    return tree


# ---------------------------------------------------------------------------------------------- building


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """A zero-mean, unit-norm 16 × 16 grey thumbnail: what near-duplicate checks compare."""
    grey = cv2.resize(np.ascontiguousarray(rgb.mean(axis=-1), dtype=np.float32), (16, 16), interpolation=cv2.INTER_AREA)
    grey = grey.ravel() - grey.mean()
    return grey / max(float(np.linalg.norm(grey)), 1e-6)


def thumbnails_of(paths: Iterable[Path]) -> dict[str, np.ndarray]:
    return {p.name: thumbnail(load_rgb(p)[0]) for p in paths}


def downsample(rgb: np.ndarray, factor: float) -> np.ndarray:
    """Area-average an sRGB image by `factor` in linear light; sRGB float32 again."""
    height, width = rgb.shape[:2]
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    linear = srgb_decode(rgb).astype(np.float32)
    return srgb_encode(cv2.resize(linear, size, interpolation=cv2.INTER_AREA)).astype(np.float32)


def _factor(height: int, width: int, source: CorpusSource, options: CorpusOptions) -> float:
    return max(source.min_factor, min(height, width) / options.max_short_side)


def build_corpus(sources: list[CorpusSource], out_dir: Path, options: CorpusOptions = CorpusOptions(), *,
                 tests: dict[str, np.ndarray] | None = None,
                 on_event: Callable[[dict], None] | None = None) -> dict:
    """Write every source's photographs into `out_dir` and its manifest; the manifest."""
    out_dir = Path(out_dir)
    emit = on_event or (lambda event: None)
    manifest_path = out_dir / MANIFEST
    previous = _read_manifest(manifest_path)
    done = {entry["sha256"]: entry for entry in previous.get("images", []) if (out_dir / entry["file"]).is_file()}
    images: list[dict] = []
    excluded: list[dict] = []
    seen: set[str] = set()
    for source in sources:
        paths = source.images()
        emit({"event": "source", "name": source.name, "images": len(paths)})
        for path in paths:
            entry, reason = _one_image(path, source, out_dir, options, tests or {}, done, seen)
            if entry is not None:
                images.append(entry)
            else:
                excluded.append({"source": source.name, "path": _relative(path, source.root), "reason": reason})
            emit({"event": "image", "name": path.name, "kept": entry is not None, "reason": reason})
        # after each source: an interrupted build keeps what it made
        manifest = _manifest(sources, options, images, excluded)
        write_json(manifest_path, manifest)
    return manifest


def _one_image(path: Path, source: CorpusSource, out_dir: Path, options: CorpusOptions,
               tests: dict[str, np.ndarray], done: dict[str, dict], seen: set[str]) -> tuple[dict | None, str]:
    if _TEST_SET_NAME.match(path.name):
        return None, "named like a test-set image"
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest in seen:
        return None, "the same file as another source's"
    seen.add(digest)
    if digest in done:
        return done[digest], "kept"
    try:
        rgb, _ = load_rgb(path)
    except Raw2RgbError as exc:
        return None, f"unreadable ({exc})"
    height, width = rgb.shape[:2]
    factor = _factor(height, width, source, options)
    if min(height, width) / factor < options.min_short_side:
        return None, f"too small ({width}×{height} → short side {min(height, width) / factor:.0f} < {options.min_short_side})"
    thumb = thumbnail(rgb)
    for name, test in tests.items():
        if float(thumb @ test) > TEST_IMAGE_CORRELATION:
            return None, f"looks like the test image {name}"
    small = downsample(rgb, factor)
    pixels = cv2.cvtColor(np.rint(np.clip(small, 0, 1) * 65535).astype(np.uint16), cv2.COLOR_RGB2BGR)
    ok, png = cv2.imencode(".png", pixels)
    if not ok:
        return None, "PNG encoding failed"
    file = f"{IMAGES_DIR}/{_slug(source.name)}/{path.stem[:40]}-{digest[:10]}.png"
    write_bytes(out_dir / file, png.tobytes())
    entry = {"file": file, "source": source.name, "path": _relative(path, source.root), "licence": source.licence,
             "research_only": source.research_only, "sha256": digest, "original": [width, height],
             "size": [int(small.shape[1]), int(small.shape[0])], "factor": round(factor, 4)}
    return entry, "kept"


def _manifest(sources: list[CorpusSource], options: CorpusOptions, images: list[dict], excluded: list[dict]) -> dict:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "options": asdict(options),
            "sources": [{"name": s.name, "licence": s.licence, "research_only": s.research_only,
                         "min_factor": s.min_factor, **s.origin,
                         "kept": sum(e["source"] == s.name for e in images)} for s in sources],
            "counts": {"images": len(images), "research_only": sum(e["research_only"] for e in images),
                       "excluded": len(excluded)},
            "images": images, "excluded": excluded}


def _read_manifest(path: Path) -> dict:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) and document.get("format") == FORMAT else {}


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")


def iter_sources(recipe: Path | None, sources_dir: Path | None, folders: Iterable[tuple[Path, str]]) -> Iterator[CorpusSource]:
    """The recipe's sources (when given), then each extra folder with its licence."""
    if recipe is not None:
        if sources_dir is None:
            raise CorpusError("--recipe needs --sources", "pass the folder the recipe's sources are (or go) in")
        yield from sources_from_recipe(recipe, sources_dir)
    for folder, licence in folders:
        yield CorpusSource(name=f"folder:{Path(folder).name}", root=Path(folder), licence=licence,
                           origin={"folder": str(Path(folder).resolve())})
