"""`learn`'s classical stage: the curve + 3D LUT (`lut`) fitted to the base profile's rendering of
the training frames, with its smoothness chosen on the validation frames, cached in the run folder.

Samples come from every training frame, whole (at most LUT_MAX_FRAMES of them): which colours a
card holds decides the fit. On the 100 × 24 MP card (global look, 82 frames, 120 k samples,
smoothness 2e-4; held-out PSNR of the LUT against the camera's JPEGs): a random 384-px window of
each frame (a fifth of a 1024-px pair; the former sampling) 39.37 dB, every frame whole 39.64,
every second frame whole 39.44 (at 2e-5: windows 39.53, 16 windows of 96 px 39.85, whole 39.96).
Rendering a whole pair costs about 1.1 CPU-s against 0.44 for the window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from raw2rgb_plugin.io.files import atomic_output
from raw2rgb_plugin.pipeline.metrics import image_psnr
from raw2rgb_plugin.runtime.runner import TorchRunner
from raw2rgb_plugin.training.learn.lut import LUT_SMOOTHNESS, LUT_SMOOTHNESS_CHOICES, CurveLut, fit_curve_luts
from raw2rgb_plugin.training.learn.pairs import LearnPair
from raw2rgb_plugin.training.learn.report import learn_runner, render, styled

LUT_FILE = "lut.npz"
#: colours the LUT is fitted on (drawn evenly from the training frames): the fit's cost grows with it
LUT_SAMPLES = 120_000
#: training frames rendered for the samples at most (evenly spread over a larger card)
LUT_MAX_FRAMES = 100


def fitted_lut(run_dir: Path, train: list[LearnPair], validation: list[LearnPair], base: torch.nn.Module,
               device: torch.device, emit: Callable[[dict], None]) -> CurveLut:
    """The curve + LUT for the run (from RUN/lut.npz when it was fitted before): fitted at each
    smoothness of LUT_SMOOTHNESS_CHOICES, kept at the one that scores best on the validation
    frames (the default weight without any)."""
    path = Path(run_dir) / LUT_FILE
    if path.is_file():
        with np.load(path) as saved:
            smoothness = float(saved["smoothness"]) if "smoothness" in saved else LUT_SMOOTHNESS
            return CurveLut(saved["curves"], saved["lut"], smoothness)
    t0 = time.perf_counter()
    runner = learn_runner(base, device)
    fits = fit_curve_luts(*_samples(train, runner), LUT_SMOOTHNESS_CHOICES if validation else (LUT_SMOOTHNESS,))
    scores = _validation_psnr(fits, validation, runner) if validation else [float("nan")]
    lut = fits[int(np.argmax(scores))]  # the first best: the smoother of equals
    with atomic_output(path, overwrite=True) as out:
        np.savez(out, curves=lut.curves, lut=lut.lut, smoothness=lut.smoothness,
                 choices=[f.smoothness for f in fits], validation_psnr=scores)
    emit({"event": "lut", "seconds": time.perf_counter() - t0, "smoothness": lut.smoothness,
          "validation_psnr": {f"{f.smoothness:g}": round(s, 3) for f, s in zip(fits, scores, strict=True)}})
    return lut


def _samples(train: list[LearnPair], runner: TorchRunner) -> tuple[np.ndarray, np.ndarray]:
    """LUT_SAMPLES (base rendering, target) colour pairs, low-passed, drawn evenly from whole frames."""
    rng = np.random.default_rng(0)
    frames = train[:: -(-len(train) // LUT_MAX_FRAMES)]
    per_frame = max(1, LUT_SAMPLES // len(frames))
    sources, targets = [], []
    for pair in frames:
        rendered, target = (_lowpassed(a) for a in (render(runner, pair), pair.target))
        pick = rng.choice(rendered.shape[0] * rendered.shape[1], size=min(per_frame, rendered.size // 3), replace=False)
        sources.append(rendered.reshape(-1, 3)[pick])
        targets.append(target.reshape(-1, 3)[pick])
    return np.concatenate(sources), np.concatenate(targets)


def _validation_psnr(fits: list[CurveLut], validation: list[LearnPair], runner: TorchRunner) -> list[float]:
    """Mean PSNR of the base's rendering through each fit against the validation frames' targets."""
    rendered = [render(runner, pair) for pair in validation]
    return [float(np.mean([image_psnr(styled(r, fit.as_look()), p.target) for r, p in zip(rendered, validation, strict=True)]))
            for fit in fits]


def _lowpassed(image: np.ndarray) -> np.ndarray:
    """`finetune.gaussian_lowpass` at σ = 1 (7 taps, reflected borders), as OpenCV computes it:
    equal to 2.4e-7 and 4 ms against 0.49 s for a 1024 × 682 frame on one busy core."""
    return cv2.GaussianBlur(image, (7, 7), 1.0, borderType=cv2.BORDER_REFLECT_101)
