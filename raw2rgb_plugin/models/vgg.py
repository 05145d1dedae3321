"""VGG16 features up to conv4_3 (before its ReLU) for the perceptual loss, without torchvision.

The layers are defined here with torchvision's indices (`features.0` … `features.21`), so its
official ImageNet checkpoint loads as is. Weights come from, in order:

1. `--vgg-weights PATH`: a `.safetensors` file, or a `.pth`/`.pt` read with
   `torch.load(weights_only=True)` (tensors only, nothing unpickled into code);
2. torchvision's official URL through `torch.hub.load_state_dict_from_url`, which downloads once
   into the torch hub cache (`$TORCH_HOME/hub/checkpoints/`) and reads it from there afterwards.

With neither, `VggWeightsError` says how to get them, or to train with `--no-perceptual`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import torch
from torch import nn

from raw2rgb_plugin.errors import Raw2RgbError

#: torchvision's VGG16 ImageNet weights (IMAGENET1K_V1); the name carries the SHA-256 prefix.
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"

#: output channels of VGG16's convolutions up to conv4_3; "M" is a 2×2 max pool.
_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VggWeightsError(Raw2RgbError):
    """The VGG16 weights for the perceptual loss cannot be found, fetched or read."""


class Vgg16Conv4_3(nn.Module):
    """φ(x): VGG16 `features[:22]` — conv4_3's output before its ReLU — on [0, 1] RGB."""

    mean: torch.Tensor  # buffers registered in __init__
    std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for item in _LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(item), 3, padding=1), nn.ReLU(inplace=True)]
                cin = int(item)
        self.features = nn.Sequential(*layers[:-1])  # drop conv4_3's ReLU
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.features((rgb - self.mean) / self.std)


def vgg_cache_path() -> Path:
    """Where `torch.hub` keeps (or will keep) the official weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(VGG16_URL)


def load_vgg16_conv4_3(weights: str | os.PathLike | None = None, *, url: str | None = None) -> Vgg16Conv4_3:
    """A frozen, eval-mode `Vgg16Conv4_3` with ImageNet weights (see the module docstring)."""
    url = url or VGG16_URL
    state = _read_file(Path(weights).expanduser()) if weights is not None else _read_hub(url)
    model = Vgg16Conv4_3()
    model.load_state_dict(_select_features(state, model, weights or url), strict=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _read_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise VggWeightsError(f"VGG16 weights file {path} does not exist", "check --vgg-weights")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable/unsafe file ends in the same user message
        raise VggWeightsError(
            f"cannot read VGG16 weights from {path} ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})",
            "pass torchvision's vgg16-397923af.pth or a .safetensors of its state dict",
        ) from None


def _read_hub(url: str) -> dict[str, torch.Tensor]:
    try:
        # torch.hub announces downloads on stdout, which belongs to `--json` documents.
        with contextlib.redirect_stdout(sys.stderr):
            return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True, check_hash=True, weights_only=True)
    except Exception as exc:  # offline, proxy, hash mismatch, corrupt cache: all need the same choice
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise VggWeightsError(
            f"VGG16 weights for the perceptual loss are not in the torch hub cache ({vgg_cache_path()}) "
            f"and could not be fetched from {url} ({reason})",
            "connect once to download them there, or pass --vgg-weights PATH (.pth or .safetensors), "
            "or train without the perceptual loss with --no-perceptual",
        ) from None


def _select_features(state: object, model: Vgg16Conv4_3, source: object) -> dict[str, torch.Tensor]:
    """The `features.*` tensors `model` needs, from a full VGG16 or a features-only state dict."""
    if not isinstance(state, dict):
        raise VggWeightsError(f"{source} does not hold a state dict", "pass torchvision's VGG16 weights")
    expected = model.state_dict()
    selected: dict[str, torch.Tensor] = {}
    for key, target in expected.items():
        value = state.get(key, state.get(key.removeprefix("features."), None))
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(target.shape):
            found = "missing" if value is None else f"shape {tuple(getattr(value, 'shape', ()))}"
            raise VggWeightsError(
                f"{source} is not a VGG16 checkpoint: {key} is {found}, expected {tuple(target.shape)}",
                "pass torchvision's vgg16-397923af.pth or a .safetensors of its state dict",
            )
        selected[key] = value.to(torch.float32)
    return selected
