"""Golden outputs: the shipped default profile renders three files to fixed pixels.

The references were taken on main before the engine-v2 layout (4db6a3a) through the whole
`convert` path (decode → G1 → TIFF on disk, read back with tifffile). A refactor that keeps
behaviour keeps these bit for bit; a change that alters numerics on purpose (a new runtime, a
new profile) regenerates them with `python tools/golden_outputs.py --write` and says why in its
commit. The expected values are the SHA-256 of the uint16 pixel array and its shape.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import tifffile

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = json.loads((ROOT / "tests" / "golden" / "default-lite.json").read_text())


def golden_inputs(shared: Path | None) -> dict[str, Path]:
    files = {"astronaut.dng": ROOT / "examples" / "astronaut.dng"}
    if shared is not None:
        files["RAW_CANON_D30_SRGB.CRW"] = shared / "raw" / "RAW_CANON_D30_SRGB.CRW"
        files["RAW_KODAK_DC50.KDC"] = shared / "raw" / "RAW_KODAK_DC50.KDC"
    return files


def render_digest(raw: Path, out_dir: Path) -> dict:
    """Convert `raw` with the shipped default-lite on the CPU; the written pixels' digest."""
    import torch

    from raw2rgb_plugin.engine.converter import Converter, ConvertJob
    from raw2rgb_plugin.profiles.store import load_profile

    # fp32 pinned: the automatic CPU precision may pick bf16 on one machine and not another.
    converter = Converter(load_profile("default-lite"), device="cpu", threads=2, dtype=torch.float32)
    output = out_dir / f"{raw.stem}.tif"
    [result] = converter.convert([ConvertJob(raw, output)])
    assert result.status == "converted", result.error
    pixels = tifffile.imread(output)
    return {"shape": list(pixels.shape), "dtype": str(pixels.dtype),
            "sha256": hashlib.sha256(pixels.tobytes()).hexdigest()}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_shipped_profile_output_is_unchanged(name, tmp_path, request):
    shared = ROOT.parent / "shared" / "data"
    inputs = golden_inputs(shared if shared.is_dir() else None)
    if name not in inputs:
        pytest.skip("../shared/data is absent")
    assert render_digest(inputs[name], tmp_path) == GOLDEN[name]
