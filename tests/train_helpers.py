"""Small in-memory datasets with the dataset store's item layout, and the DDP test's worker.

Items are what `raw2rgb_plugin.training.data.store` hands the trainer: `raw` (4, p, p) packed and
normalised, `rgb` (3, 2p, 2p), `saliency` (1, 2p, 2p), all float32 in [0, 1], and `scene`.
The RGB is a fixed function of the RAW (so there is something to learn) and augmentation draws
from torch's global RNG, as a real dataset may.

Run as a script under torchrun, it trains a few steps and saves each rank's weights:
    torchrun --nproc_per_node 2 tests/train_helpers.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import Dataset


class PairItems(Dataset):
    def __init__(self, count: int, packed: int, *, augment: bool, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.raw = torch.rand(count, 4, packed, packed, generator=g)
        r, gr, gb, b = self.raw.unbind(1)
        half = torch.stack([r, (gr + gb) / 2, b], dim=1)
        self.rgb = F.interpolate(half, scale_factor=2, mode="bilinear", align_corners=False).clamp(0, 1) ** 0.5
        self.saliency = self.rgb.mean(dim=1, keepdim=True)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, index: int) -> dict:
        raw, rgb, saliency = self.raw[index], self.rgb[index], self.saliency[index]
        if self.augment and bool(torch.rand(()) < 0.5):
            # Flipped together; what a flip does to CFA phase does not matter to these tests.
            raw, rgb, saliency = raw.flip(-2), rgb.flip(-2), saliency.flip(-2)
        return {"raw": raw.clone(), "rgb": rgb.clone(), "saliency": saliency.clone(), "scene": f"scene{index}"}


class PairDatasetInMemory:
    """The `open_dataset()` interface: `.manifest` and `.split(name, augment)`."""

    def __init__(self, train: int = 8, val: int = 2, packed: int = 32, input_normalization: str = "wb+ccm"):
        self.counts = {"train": train, "val": val}
        self.packed = packed
        self.manifest = {
            "input_normalization": input_normalization,
            "patch_size": packed,
            "source": "in-memory test pairs",
        }

    def split(self, name: str, augment: bool = False, *, input_normalization: str | None = None) -> PairItems:
        self.requested_normalization = input_normalization
        return PairItems(self.counts[name], self.packed, augment=augment, seed={"train": 0, "val": 1}[name])


def make_vgg_state(seed: int = 1) -> dict[str, torch.Tensor]:
    """Self-made VGG16 weights under torchvision's key names, plus tensors the loader must skip."""
    from raw2rgb_plugin.models.vgg import Vgg16Conv4_3

    torch.manual_seed(seed)
    state = dict(Vgg16Conv4_3().state_dict())
    state["features.24.weight"] = torch.zeros(512, 512, 3, 3)  # beyond conv4_3
    state["classifier.0.weight"] = torch.zeros(8, 8)
    return state


def install_vgg_weights(state: dict[str, torch.Tensor]) -> Path:
    """Put `state` where torch.hub keeps torchvision's VGG16 download (under $TORCH_HOME)."""
    from raw2rgb_plugin.models.vgg import vgg_cache_path

    path = vgg_cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def ddp_worker(out_dir: Path) -> None:
    import torch.distributed as dist

    from raw2rgb_plugin.training.trainer import TrainConfig, Trainer

    torch.set_num_threads(1)
    config = TrainConfig(
        width=8, d_width=8, batch_size=2, stage1_epochs=1, stage2_epochs=1, perceptual=False, device="cpu"
    )
    trainer = Trainer(config, PairDatasetInMemory(train=8, val=3), out_dir / "run", install_profile=False)
    rank = int(__import__("os").environ["RANK"])
    result = trainer.run()
    assert not dist.is_initialized()  # the trainer leaves the process group it joined
    state = {f"g1.{k}": v for k, v in trainer.g1.named_parameters()}
    state.update({f"g2.{k}": v for k, v in trainer.g2.named_parameters()})
    state.update({f"d.{k}": v for k, v in trainer.d.named_parameters()})
    torch.save({k: v.detach().clone() for k, v in state.items()}, out_dir / f"rank{rank}.pt")
    (out_dir / f"rank{rank}.steps").write_text(f"{result.global_step} {trainer.steps_per_epoch}")


if __name__ == "__main__":
    ddp_worker(Path(sys.argv[1]))
