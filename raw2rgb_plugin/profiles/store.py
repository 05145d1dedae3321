"""Profiles: a trained G1 as one safetensors file with its JSON metadata in the header.

A profile is self-describing: the metadata says which architecture and width to build, which
input normalisation the network was trained on, which colour space it outputs and where it came
from. Loading never unpickles anything: safetensors holds only raw tensors, and every tensor is
checked against the architecture the metadata describes before a single weight is used.

Profiles are found by path, or by name in (first match wins) the user's data directory
(`raw2rgb train` installs there), then the profiles shipped inside the package.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from raw2rgb_plugin.errors import ProfileError
from raw2rgb_plugin.io.files import write_bytes
from raw2rgb_plugin.models.g1 import plain_state_dict
from raw2rgb_plugin.models.registry import block_of, build_model, check_block
from raw2rgb_plugin.models.spec import ArchitectureSpec
from raw2rgb_plugin.pipeline.look import Look, check_look

# Finding profiles and reading their metadata needs no torch: profiles/catalog.py (re-exported).
from raw2rgb_plugin.profiles.catalog import (
    FORMAT_VERSION as FORMAT_VERSION,
    METADATA_KEY,
    PROFILE_SUFFIX,
    SHIPPED_PROFILE_DIR as SHIPPED_PROFILE_DIR,
    check_metadata,
    default_profile_name as default_profile_name,
    list_profile_paths as list_profile_paths,
    profile_cfa,
    profile_search_dirs as profile_search_dirs,
    read_profile_metadata,
    resolve_profile_path,
    user_profile_dir as user_profile_dir,
)
from raw2rgb_plugin.vocabulary import VARIANT_WIDTHS

#: the look's tensors beside the network's weights (names no architecture uses)
LOOK_CURVES, LOOK_LUT = "look.curves", "look.lut"


@dataclass
class Profile:
    name: str
    path: Path
    metadata: dict
    model: nn.Module  # eval mode, plain weights (no spectral norm), on the CPU
    architecture: ArchitectureSpec
    #: tone curves + 3D LUT applied to the network's image (`pipeline/look.py`), or None
    look: Look | None = None

    @property
    def input_normalization(self) -> str:
        return self.metadata["input_normalization"]

    @property
    def output_color_space(self) -> str:
        return self.metadata["output_color_space"]

    @property
    def variant(self) -> str:
        return self.metadata.get("variant") or f"width{self.metadata['architecture']['width']}"

    @property
    def output(self) -> str:
        """"display" (a finished sRGB image) or "scene-linear" (for an editable DNG); older profiles: display."""
        return self.metadata.get("output", "display")

    @property
    def scene_linear(self) -> bool:
        return self.output == "scene-linear"

    @property
    def network_space(self) -> str:
        """"srgb" (G1 renders display sRGB itself) or "camera" (G1 renders white-balanced camera RGB
        in headroom space and a fixed rendering after it makes the display image); older profiles: srgb."""
        return self.metadata.get("network_space", "srgb")

    @property
    def cfa(self) -> str:
        """The sensors it renders: "bayer" or "xtrans" (its G1's packing period; older profiles: bayer)."""
        return profile_cfa(self.metadata)

    @property
    def reads_noise(self) -> bool:
        """Whether the network is told each frame's noise (a noise-conditioned G1)."""
        return int(self.metadata["architecture"].get("noise_channels", 0)) > 0


def save_profile(path: Path, model: nn.Module, metadata: dict, *, dtype: torch.dtype = torch.float32,
                 look: Look | None = None) -> Path:
    """Write `model` (plain weights), its `look` if any, and `metadata` to `path`, atomically.

    `metadata` needs `input_normalization` and may carry anything JSON-able (name, training
    provenance, scores). Architecture, format version and the look's sizes are filled in.
    """
    path = Path(path)
    if path.suffix != PROFILE_SUFFIX:
        path = path.with_name(path.name + PROFILE_SUFFIX)
    meta = dict(metadata)
    meta.setdefault("name", path.name[: -len(PROFILE_SUFFIX)])
    meta.setdefault("output_color_space", "srgb")
    meta["format_version"] = FORMAT_VERSION
    meta["architecture"] = block_of(model)
    meta.setdefault("variant", _variant_name(meta["architecture"].get("width")))
    meta.pop("look", None)
    if look is not None:
        problem = check_look(look.curves, look.lut)
        if problem:
            raise ProfileError(f"{path}: {problem}; the profile was not written", "refit the look")
        meta["look"] = {"curve_knots": int(look.curves.shape[1]), "lut_size": int(look.lut.shape[0])}
    check_metadata(meta, path)

    state = {k: v.to("cpu", dtype if v.is_floating_point() and "running" not in k else v.dtype)
             for k, v in plain_state_dict(model).items()}
    if look is not None:  # float32 always: a half-precision LUT node is off by up to 2.4e-4 (16 levels)
        state.update({LOOK_CURVES: look.curves.detach().to("cpu", torch.float32).contiguous(),
                      LOOK_LUT: look.lut.detach().to("cpu", torch.float32).contiguous()})
    broken = _non_finite(state)
    if broken:
        # A diverged run must not ship a profile that renders every photo black.
        raise ProfileError(f"{path}: {broken}; the profile was not written",
                           "the training diverged: resume from an earlier checkpoint, or lower the learning rates")
    return write_bytes(path, save(state, metadata={METADATA_KEY: json.dumps(meta, sort_keys=True)}))


def load_profile(name_or_path: str | os.PathLike) -> Profile:
    path = resolve_profile_path(name_or_path)
    meta = read_profile_metadata(path)
    spec = check_block(meta["architecture"])
    model = build_model(meta["architecture"])
    expected = model.state_dict()
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ProfileError(f"{path} holds unreadable tensors ({exc})", "re-export the profile") from None
    look = _look(state, meta.get("look"), path)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong_shape:
        details = []
        if missing:
            details.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        if wrong_shape:
            k = wrong_shape[0]
            details.append(f"{len(wrong_shape)} tensors of the wrong shape (e.g. {k}: {tuple(state[k].shape)} "
                           f"instead of {tuple(expected[k].shape)})")
        raise ProfileError(
            f"{path}: weights do not match the metadata's architecture ({_describe(meta['architecture'])}): "
            + "; ".join(details),
            "the file is damaged or its metadata was edited; re-export it",
        )
    broken = _non_finite(state)
    if broken:
        raise ProfileError(f"{path}: {broken}", "the profile is broken (a diverged training run?); re-export or re-download it")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
    model.eval()
    return Profile(name=meta.get("name", path.stem), path=path, metadata=meta, model=model, architecture=spec,
                   look=look)


def _look(state: dict[str, torch.Tensor], block: dict | None, path: Path) -> Look | None:
    """The profile's look, taken out of `state`, checked against its metadata block."""
    curves, lut = state.pop(LOOK_CURVES, None), state.pop(LOOK_LUT, None)
    if block is None and curves is None and lut is None:
        return None
    if block is None or curves is None or lut is None:
        raise ProfileError(f"{path}: its look table is incomplete (metadata and tensors disagree)", "re-export the profile")
    problem = check_look(curves.float(), lut.float())
    if problem is None and (curves.shape[1], lut.shape[0]) != (block["curve_knots"], block["lut_size"]):
        problem = f"look of {curves.shape[1]} knots / {lut.shape[0]}³ where the metadata says otherwise"
    if problem:
        raise ProfileError(f"{path}: {problem}", "the file is damaged or was edited; re-export it")
    return Look(curves.float(), lut.float())


def _non_finite(state: dict[str, torch.Tensor]) -> str | None:
    """What is wrong when some weights are NaN or infinite, or None."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if not bad:
        return None
    return f"{len(bad)} of {len(state)} weight tensors hold NaN or infinite values (e.g. {bad[0]})"


def _describe(block: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in block.items() if k in ("name", "width", "residual_base"))


def _variant_name(width: object) -> str:
    for name, w in VARIANT_WIDTHS.items():
        if w == width:
            return name
    return f"width{width}"
