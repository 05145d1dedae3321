"""What a learn run shows: held-out scores of the base, the fitted curve + LUT and the learned
profile against the camera's own rendering, crops of all four side by side, and the timings.

Scores are PSNR (dB) and median CIEDE2000 against the target JPEG (the only truth a card has),
on frames the fine-tune and the LUT never saw; with fewer than four usable files nothing can be
held out and the report says the scores are on training frames. Detail is the mean absolute
Laplacian of the learned rendering over the base's on the same frames (1 = the base's detail;
a look with more contrast raises it a little, blur lowers it), beside the camera JPEG's own over
the base's: a learned profile should keep at least as much detail as the camera's rendering has.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from raw2rgb_plugin.io.files import atomic_output, write_json, write_text
from raw2rgb_plugin.models.registry import ARCHITECTURES
from raw2rgb_plugin.pipeline.look import Look, apply_look
from raw2rgb_plugin.pipeline.metrics import image_psnr
from raw2rgb_plugin.runtime.runner import TorchRunner, input_channels
from raw2rgb_plugin.training.color_difference import delta_e2000, srgb_to_lab
from raw2rgb_plugin.training.learn.lut import CurveLut
from raw2rgb_plugin.training.learn.pairs import LearnPair
from raw2rgb_plugin.training.learn.patches import pair_input

REPORT_DIR = "report"
CROP = 256  # side of the report's crops, pair px
METHODS = ("base", "lut", "learned")
#: detail over the base's: the learned rendering's, then the camera JPEG's (what the look itself has)
DETAILS = ("detail_vs_base", "target_detail_vs_base")
_LABELS = {"base": "base profile", "lut": "curve + 3D LUT", "learned": "learned profile", "target": "camera JPEG"}


def learn_runner(model: nn.Module, device: torch.device | str = "cpu") -> TorchRunner:
    """`model` run as `convert` runs it (a copy; G1's inference rewrites, float32, whole frame, the
    runner's padding). The rewrites: 0.29 against 0.41 s CPU for a 1024 × 682 pair, equal to the
    eager model's output to 2.4e-7."""
    return TorchRunner(model, ARCHITECTURES["g1"], device=torch.device(device), dtype=torch.float32, tile=0,
                       optimize=True)


def styled(image: np.ndarray, look: Look) -> np.ndarray:
    """(H, W, 3) through a profile's look table, as the engine applies it (`pipeline.look`):
    equal to `CurveLut.apply` to 2.4e-7, and 0.19 against 1.4 s for a 1024 × 682 frame."""
    t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    return np.ascontiguousarray(apply_look(t, look)[0].permute(1, 2, 0).numpy())


@torch.no_grad()
def render(runner: TorchRunner, pair: LearnPair) -> np.ndarray:
    """A whole pair rendered by the runner's model (its noise map from the pair) → (H, W, 3) float32."""
    noise_channels = input_channels(runner.source_model) - 4
    x = pair_input(pair, pair.linear, noise_channels=noise_channels)[None].to(runner.device)
    out = runner.run(x)[0].clamp(0, 1)
    return np.ascontiguousarray(out.permute(1, 2, 0).cpu().numpy(), dtype=np.float32)


def laplacian_energy(image: np.ndarray) -> float:
    gray = np.ascontiguousarray(image.mean(axis=-1), dtype=np.float32)
    return float(np.mean(np.abs(cv2.Laplacian(gray, cv2.CV_32F))))


def score_frames(pairs: list[LearnPair], base: nn.Module, learned: nn.Module, lut: CurveLut, run_dir: Path,
                 device: torch.device | str = "cpu") -> dict:
    """Per-frame and mean scores of the three renderings, with crops written to RUN/report/."""
    folder = Path(run_dir) / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    look = lut.as_look()
    base_runner = learn_runner(base, device)
    # The base's weights kept (the table alone did best): the learned rendering is the table's.
    learned_runner = None if _same_weights(base, learned) else learn_runner(learned, device)
    for pair in pairs:
        shown = {"base": render(base_runner, pair)}
        shown["lut"] = styled(shown["base"], look)
        shown["learned"] = shown["lut"] if learned_runner is None else styled(render(learned_runner, pair), look)
        row = {"name": pair.name, "raw": Path(pair.info["raw"]).name, "kind": pair.info["kind"],
               **_scores(shown, pair.target), **_details(shown, pair.target)}
        row["crops"] = str(_write_crops(folder / f"{pair.name}.png", {**shown, "target": pair.target}).relative_to(run_dir))
        frames.append(row)
    means = {m: {k: round(float(np.mean([f[m][k] for f in frames])), 2) for k in ("psnr", "delta_e2000")} for m in METHODS}
    details = {k: round(float(np.mean([f[k] for f in frames])), 3) for k in DETAILS}
    return {"frames": frames, "mean": means, **details}


def _details(shown: dict[str, np.ndarray], target: np.ndarray) -> dict[str, float]:
    """Mean |Laplacian| of the learned rendering and of the camera JPEG, each over the base's."""
    base = max(laplacian_energy(shown["base"]), 1e-9)
    return {key: round(laplacian_energy(image) / base, 3) for key, image in zip(DETAILS, (shown["learned"], target))}


def _scores(shown: dict[str, np.ndarray], target: np.ndarray) -> dict[str, dict[str, float]]:
    """PSNR and median ΔE2000 of each rendering (the target's Lab once; one rendering shown twice, scored once)."""
    target_lab = srgb_to_lab(target)
    scored: dict[int, dict[str, float]] = {}
    for image in shown.values():
        if id(image) not in scored:
            delta_e = float(np.median(delta_e2000(srgb_to_lab(image), target_lab)))
            scored[id(image)] = {"psnr": round(image_psnr(image, target), 2), "delta_e2000": round(delta_e, 2)}
    return {method: dict(scored[id(shown[method])]) for method in METHODS}


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def _write_crops(path: Path, images: dict[str, np.ndarray]) -> Path:
    """base | LUT | learned | target, the same crop (the most detailed window) of each, labelled."""
    from PIL import Image, ImageDraw

    target = images["target"]
    h, w = target.shape[:2]
    side = min(CROP, h, w)
    y, x = _busiest_window(target, side)
    panels = [np.clip(images[k][y : y + side, x : x + side], 0, 1) for k in ("base", "lut", "learned", "target")]
    strip = Image.fromarray((np.concatenate(panels, axis=1) * 255 + 0.5).astype(np.uint8))
    canvas = Image.new("RGB", (strip.width, strip.height + 16), (255, 255, 255))
    canvas.paste(strip, (0, 16))
    draw = ImageDraw.Draw(canvas)
    for k, name in enumerate(("base", "lut", "learned", "target")):
        draw.text((k * side + 4, 2), _LABELS[name], fill=(0, 0, 0))
    with atomic_output(path, overwrite=True) as out:
        canvas.save(out, format="PNG")
    return path


def _busiest_window(image: np.ndarray, side: int) -> tuple[int, int]:
    """Top-left of the side×side window with the most edges (a crop worth looking at)."""
    energy = np.abs(cv2.Laplacian(np.ascontiguousarray(image.mean(axis=-1), dtype=np.float32), cv2.CV_32F))
    window = cv2.boxFilter(energy, -1, (side, side), normalize=True, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
    h, w = image.shape[:2]
    valid = window[: h - side + 1, : w - side + 1]
    y, x = np.unravel_index(int(np.argmax(valid)), valid.shape)
    return int(y), int(x)


def write_report(run_dir: Path, document: dict) -> Path:
    """RUN/report.json (everything) and RUN/report.md (for people)."""
    run_dir = Path(run_dir)
    write_json(run_dir / "report.json", document)
    return write_text(run_dir / "report.md", _markdown(document))


def _markdown(d: dict) -> str:
    scores = d["scores"]
    where = "held-out frames" if scores["held_out"] else "training frames (too few files to hold any out)"
    lines = [
        f"# raw2rgb learn: `{d['profile']}`",
        "",
        f"Camera: {d['camera'] or 'unknown'} — {d['files']['used']} of {d['files']['found']} files used "
        f"({', '.join(f'{n} {k}' for k, n in d['files']['sources'].items())}), base profile `{d['base_profile']}`.",
        "",
        f"## Scores on {len(scores['frames'])} {where}, against the camera's rendering",
        "",
        "| rendering | PSNR (dB) | median ΔE2000 |",
        "|---|---|---|",
    ]
    for method in METHODS:
        m = scores["mean"][method]
        lines.append(f"| {_LABELS[method]} | {m['psnr']:.2f} | {m['delta_e2000']:.2f} |")
    lines += ["", f"Detail vs the base (mean |Laplacian|): learned {scores['detail_vs_base']:.3f}, "
                  f"camera JPEG {scores['target_detail_vs_base']:.3f}.", ""]
    lines += [f"![{f['raw']}]({f['crops']}) — {f['raw']}: base {f['base']['psnr']:.2f} dB, LUT {f['lut']['psnr']:.2f} dB, "
              f"learned {f['learned']['psnr']:.2f} dB" for f in scores["frames"]]
    lines += ["", "## Time", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {stage} | {seconds:.1f} |" for stage, seconds in d["seconds"].items()]
    skipped = d["files"].get("skipped") or {}
    if skipped:
        lines += ["", "## Skipped files", ""] + [f"- {name}: {why}" for name, why in skipped.items()]
    return "\n".join(lines) + "\n"


def read_report(run_dir: Path) -> dict | None:
    path = Path(run_dir) / "report.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None
