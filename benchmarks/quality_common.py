"""What the quality report's modules share: method names, the `Method` record, table formatting."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from raw2rgb_plugin.io.raw_file import BayerFrame
from raw2rgb_plugin.pipeline.metrics import psnr, ssim
from raw2rgb_plugin.pipeline.noise import NoiseModel

AHD, DHT, DEMOSAICNET = "LibRaw AHD", "LibRaw DHT", "demosaicnet"

#: render(path of the file, its decoded frame, its noise model or None) → sRGB float64 (H, W, 3)
#: in [0, 1]. The noise model is what `raw2rgb convert` estimates for the file; only
#: noise-aware profiles read it.
Render = Callable[[Path, BayerFrame, "NoiseModel | None"], np.ndarray]


@dataclass
class Method:
    name: str
    kind: str  # "profile" or "classical"
    render: Render
    info: dict = field(default_factory=dict)
    converter: object | None = None  # the profile's engine `Converter` (profiles only)

    @property
    def reads_noise(self) -> bool:
        return bool(getattr(self.converter, "reads_noise", False))


def is_lite_like(method: Method) -> bool:
    """Whether the issue's targets for `default-lite` apply: that profile, its successors
    (`default-lite-…`) or any lite-variant profile measured from a path (a candidate)."""
    if method.kind != "profile":
        return False
    return str(method.info.get("profile", "")).startswith("default-lite") or \
        (method.info.get("metadata") or {}).get("variant") == "lite"


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]


def score(output: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """PSNR and SSIM of a rendering (H, W, 3) against the truth, both in [0, 1]."""
    out, ref = _tensor(output), _tensor(truth)
    return float(psnr(out, ref)[0]), float(ssim(out, ref)[0])


def fmt_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def verdict(ok: bool | None) -> str:
    return "**PASS**" if ok else ("**FAIL**" if ok is False else "n/a")
