"""Pack a share of a training corpus small enough to travel to a GPU machine (the device tool
copies 64 MiB of working tree).

    python tools/pack_corpus.py ~/.cache/raw2rgb/corpus .gpudata/corpus [--max-mib 48] [--side 384]

Images are taken round-robin across the corpus's sources (so a large source does not crowd out
the rest), one random crop of at most SIDE × SIDE each, written as JPEG at quality 97 without
chroma subsampling (about 45 KB for 384 × 384; its error is well under one 8-bit level RMS on these
already-averaged photographs), until MAX_MIB is reached. `pack.json` lists each file with its
corpus entry (source, licence, research-only).
"""

from __future__ import annotations

import argparse
import io
import json
import random
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--max-mib", type=float, default=48.0)
    parser.add_argument("--side", type=int, default=384)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    manifest = json.loads((args.corpus / "manifest.json").read_text())
    rng = random.Random(args.seed)
    by_source: dict[str, list[dict]] = defaultdict(list)
    for entry in manifest["images"]:
        by_source[entry["source"]].append(entry)
    for entries in by_source.values():
        rng.shuffle(entries)
    args.out.mkdir(parents=True, exist_ok=True)
    budget, used, packed = args.max_mib * 2**20, 0, []
    queues = [list(v) for _, v in sorted(by_source.items())]
    while used < budget and any(queues):
        for queue in queues:
            if not queue or used >= budget:
                continue
            entry = queue.pop()
            data = _crop_jpeg(args.corpus / entry["file"], args.side, rng)
            name = f"{len(packed):05d}.jpg"
            (args.out / name).write_bytes(data)
            used += len(data)
            packed.append({"file": name, **{k: entry[k] for k in ("source", "licence", "research_only", "sha256")}})
    (args.out / "pack.json").write_text(json.dumps({"corpus": str(args.corpus), "side": args.side, "images": packed}, indent=1))
    print(f"packed {len(packed)} images, {used / 2**20:.1f} MiB, into {args.out}")


def _crop_jpeg(path: Path, side: int, rng: random.Random) -> bytes:
    # OpenCV keeps a 48-bit PNG's 16 bits (PIL truncates it to 8); rounded to 8 bits here.
    pixels = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
    if pixels.dtype == np.uint16:
        pixels = np.rint(pixels.astype(np.float64) / 257.0).astype(np.uint8)
    h, w = pixels.shape[:2]
    y, x = rng.randrange(0, max(1, h - side + 1)), rng.randrange(0, max(1, w - side + 1))
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels[y : y + side, x : x + side, :3])).save(
        buffer, format="JPEG", quality=97, subsampling=0)
    return buffer.getvalue()


if __name__ == "__main__":
    main()
