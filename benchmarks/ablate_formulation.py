"""Which formulation lets a lite G1 demosaic? Equal short runs, scored on held-out validation only.

Every variant trains in one loop on the *same* batches (the same crops, cameras and noise draws,
made once per step), from scratch, for the same number of steps, with L1 on the display image
(the product's attention, perceptual and GAN terms are left out for all of them alike). They are
scored on the corpus's held-out validation images (`OnTheFlyDataset`'s val split: never trained
on, never a test set) at each validation noise level, beside the Malvar–He–Cutler rendering the
gated bases start from. Kodak24 / McMaster18 play no part: they are test sets.

The variants:

- ``srgb-*``: today's input, ``linear-srgb`` (the camera matrix applied at every site, with
  MHC's estimates of the missing colours); G1 renders display sRGB directly.
- ``camera-*``: the white-balanced camera mosaic in (``wb-headroom``), G1 demosaics and denoises
  in camera space, and a fixed rendering after it (the camera → sRGB matrix, sRGB encoding, the
  tone curve) makes the display image the loss sees: demosaicnet's pipeline and most learned ISPs'.
- ``-gated``: G1 blends its image with the classical one per pixel (MHC in that space);
  ``-none``: no classical base.
- ``-fine2``: two residual blocks at the packed resolution before the output conv.

    python benchmarks/ablate_formulation.py --corpus ~/.cache/raw2rgb/corpus/images --steps 1500

prints a table (validation dB per noise level, parameters, forward time) and writes --json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raw2rgb_plugin.models.g1 import G1, G1Config, fuse_batchnorm, g1_from_block, g1_to_block, plain_state_dict  # noqa: E402
from raw2rgb_plugin.models.g1_inference import G1Inference  # noqa: E402
from raw2rgb_plugin.pipeline.classical import mhc_srgb_rendering  # noqa: E402
from raw2rgb_plugin.pipeline.metrics import psnr  # noqa: E402
from raw2rgb_plugin.training.data.device_pairs import Cameras, synthesize_batch  # noqa: E402
from raw2rgb_plugin.training.data.onthefly import (  # noqa: E402
    VALIDATION_ISOS,
    OnTheFlyDataset,
    OnTheFlyOptions,
    to_srgb_matrix,
)
from raw2rgb_plugin.training.data.store import DatasetError  # noqa: E402
from raw2rgb_plugin.training.losses import camera_display  # noqa: E402
from raw2rgb_plugin.training.sampling import seeded_rngs  # noqa: E402

#: name → (network space, residual base, fine blocks)
VARIANTS = {
    "srgb-gated": ("srgb", "mhc-srgb-gated", 0),  # today's default-lite formulation
    "srgb-gated-fine2": ("srgb", "mhc-srgb-gated", 2),
    "srgb-none-fine2": ("srgb", "none", 2),
    "camera-gated": ("camera", "mhc-linear-gated", 0),
    "camera-gated-fine2": ("camera", "mhc-linear-gated", 2),
    "camera-none-fine2": ("camera", "none", 2),
}


class Batches:
    """Batches of one split made on `device` (`device_pairs.synthesize_batch`): each crop's camera,
    noise level and normal draws give both inputs, ``linear-srgb`` and ``wb-headroom``, so the two
    spaces see exactly the same samples. The draws come from `OnTheFlySplit.draws`, as training's."""

    def __init__(self, split, device: torch.device):
        self.split, self.device = split, device
        self._images: dict[int, torch.Tensor] = {}

    def _image(self, k: int) -> torch.Tensor:
        if k not in self._images:
            image, _ = self.split.image_and_saliency(k)
            self._images[k] = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).to(self.device)
        return self._images[k]

    def make(self, keys: list[tuple[int, int]]) -> dict:
        """keys: (item index, seed) → the "srgb" and "camera" inputs, the display "target", the
        "camera_target" (clean headroom-space camera RGB) and "to_srgb" (per-sample 3×3)."""
        size = self.split.options.patch_size
        crops, params, noise = [], [], []
        for index, seed in keys:
            with seeded_rngs(seed):
                draw = self.split.draws(index)
            crop = self._image(draw.image)[:, draw.y : draw.y + size, draw.x : draw.x + size].float()
            crop = torch.rot90(crop, draw.turns, dims=(1, 2))
            crops.append(crop.flip(2) if draw.mirror else crop)
            params.append(draw.params)
            noise.append(draw.noise)
        srgb = torch.stack(crops) / 65535.0
        cameras = Cameras.of(params, self.device)
        levels = torch.tensor(noise, device=self.device)
        generator = torch.Generator(device=self.device).manual_seed(keys[0][1])
        normal = torch.randn((len(keys), 4, size // 2, size // 2), generator=generator, device=self.device)
        display = synthesize_batch(srgb, cameras, levels, normal, with_noise_map=True)
        linear = synthesize_batch(srgb, cameras, levels, normal, with_noise_map=True, linear_target=True)
        return {"srgb": display["raw"], "camera": linear["raw"], "target": display["rgb"], "camera_target": linear["rgb"],
                "to_srgb": torch.stack([to_srgb_matrix(p) for p in params]).to(self.device),
                "iso": [n for n in noise]}


def forward(model: torch.nn.Module, space: str, batch: dict) -> torch.Tensor:
    out = model(batch[space])
    return camera_display(out, batch["to_srgb"]) if space == "camera" else out


def validate(models: dict, batches: list[dict], isos: list[int]) -> dict[str, dict[int, float]]:
    """Mean PSNR per validation noise level of each model and of the Malvar–He–Cutler rendering."""
    scores: dict[str, dict[int, list[float]]] = {name: {iso: [] for iso in set(isos)} for name in [*models, "MHC"]}
    levels = iter(isos)
    with torch.no_grad():
        for batch in batches:
            chunk = [next(levels) for _ in range(len(batch["target"]))]
            outputs = {"MHC": mhc_srgb_rendering(batch["srgb"][:, :4])}
            for name, (model, space) in models.items():
                model.eval()
                outputs[name] = forward(model, space, batch).float().clamp(0, 1)
                model.train()
            for name, out in outputs.items():
                for iso, value in zip(chunk, psnr(out, batch["target"]).tolist()):
                    scores[name][iso].append(value)
    return {name: {iso: float(np.mean(v)) for iso, v in per.items()} for name, per in scores.items()}


def forward_seconds(model: G1, repeats: int = 3) -> float:
    """CPU time of the optimised inference model on a 1.5 MP frame (packed 640×600), float32."""
    plain = g1_from_block(g1_to_block(model))
    plain.load_state_dict(plain_state_dict(model))
    fast = G1Inference(fuse_batchnorm(plain.eval()), 8).eval()
    x = torch.rand(1, 8, 640, 600)
    with torch.no_grad():
        fast(x)
        start = time.perf_counter()
        for _ in range(repeats):
            fast(x)
    return (time.perf_counter() - start) / repeats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--patch-size", type=int, default=128)
    parser.add_argument("--val-items", type=int, default=100, help="validation crops (cycling the noise levels)")
    parser.add_argument("--val-patch-size", type=int, default=128,
                        help="validation crop side; smaller images are skipped (at 256 only 23 of the corpus's 688 "
                             "validation images are large enough)")
    parser.add_argument("--validate-every", type=int, default=500)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--max-minutes", type=float, help="stop training after this long (then validate and report)")
    parser.add_argument("--hard-fraction", type=float, default=0.25,
                        help="share of crops mined for MHC's error (on the CPU: 0 keeps a GPU fed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]: pairs are made there too")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--weights", type=Path, help="folder for each variant's final plain weights")
    args = parser.parse_args(argv)

    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    options = OnTheFlyOptions(patch_size=args.patch_size, patches_per_image=1, clean_fraction=0.2,
                              hard_fraction=args.hard_fraction)
    train = OnTheFlyDataset(args.corpus, options).split("train")
    val_set = OnTheFlyDataset(args.corpus, OnTheFlyOptions(patch_size=args.val_patch_size, patches_per_image=1))
    val_split = val_set.split("val")
    device = torch.device(args.device)
    val_keys, val_isos = [], []
    for k in range(len(val_split)):  # item k's noise level is VALIDATION_ISOS[k mod 5]
        if len(val_keys) == args.val_items:
            break
        try:
            val_split.draws(k)
        except DatasetError:  # an image smaller than the validation crops
            continue
        val_keys.append((k, 10**9 + k))
        val_isos.append(VALIDATION_ISOS[k % len(VALIDATION_ISOS)])
    val_batches = Batches(val_split, device)
    val_items = [val_batches.make(val_keys[i : i + 8]) for i in range(0, len(val_keys), 8)]
    train_batches = Batches(train, device)

    torch.manual_seed(args.seed)
    models, optimisers = {}, {}
    for name in names:
        space, base, fine = VARIANTS[name]
        model = G1(G1Config(width=16, residual_base=base, noise_channels=4, fine_blocks=fine)).to(device).train()
        models[name] = (model, space)
        optimisers[name] = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.5, 0.999))
    order = np.random.default_rng(args.seed)
    history = []
    seconds = {name: 0.0 for name in names}
    start = time.perf_counter()
    deadline = start + 60 * args.max_minutes if args.max_minutes else None
    for step in range(1, args.steps + 1):
        indices = order.integers(0, len(train), size=args.batch_size)
        batch = train_batches.make([(int(i), args.seed * 10**7 + step * 1000 + j) for j, i in enumerate(indices)])
        for name, (model, space) in models.items():
            t0 = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16):
                out = forward(model, space, batch)
            loss = F.l1_loss(out.float(), batch["target"])
            optimisers[name].zero_grad(set_to_none=True)
            loss.backward()
            optimisers[name].step()
            seconds[name] += time.perf_counter() - t0
        last = step == args.steps or (deadline is not None and time.perf_counter() > deadline)
        if step % args.validate_every == 0 or last:
            scores = validate(models, val_items, val_isos)
            history.append({"step": step, "scores": scores})
            best = max(names, key=lambda n: np.mean(list(scores[n].values())))
            # mean over the noise levels (clean input's score): a run stopped early still says both
            means = ", ".join(f"{n} {np.mean(list(scores[n].values())):.2f} ({scores[n].get(0, float('nan')):.2f})"
                              for n in [*names, "MHC"])
            print(f"step {step} ({time.perf_counter() - start:.0f} s): best {best}; {means}", file=sys.stderr, flush=True)
        if last:
            break
    steps = history[-1]["step"]
    final = history[-1]["scores"]
    isos = sorted(set(val_isos))
    levels = " | ".join("clean" if i == 0 else f"ISO {i}" for i in isos)
    print(f"| variant | {levels} | mean | parameters | forward 1.5 MP (s) | train s/step |")
    print("|---" * (len(isos) + 5) + "|")
    rows = []
    for name in [*names, "MHC"]:
        row = {"variant": name, "validation_db": {str(i): final[name][i] for i in isos},
               "mean_db": float(np.mean([final[name][i] for i in isos]))}
        extra = ["–", "–", "–"]
        if name in models:
            model = models[name][0]
            row["parameters"] = sum(p.numel() for p in model.parameters())
            row["forward_seconds"] = forward_seconds(model.cpu())
            row["train_seconds_per_step"] = seconds[name] / steps
            extra = [f"{row['parameters']:,}", f"{row['forward_seconds']:.3f}", f"{row['train_seconds_per_step']:.3f}"]
            if args.weights:
                args.weights.mkdir(parents=True, exist_ok=True)
                torch.save(plain_state_dict(model), args.weights / f"{name}.pt")
        rows.append(row)
        print(f"| {name} | {' | '.join(f'{final[name][i]:.2f}' for i in isos)} | {row['mean_db']:.2f} | {' | '.join(extra)} |")
    if args.json:
        args.json.write_text(json.dumps({"argv": argv if argv is not None else sys.argv[1:], "steps": steps,
                                         "batch_size": args.batch_size, "patch_size": args.patch_size,
                                         "val_crops": len(val_isos), "rows": rows, "history": history}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
