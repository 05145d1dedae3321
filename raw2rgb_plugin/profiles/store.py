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
import tempfile
from dataclasses import dataclass
from pathlib import Path

import platformdirs
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from raw2rgb_plugin.errors import ProfileError
from raw2rgb_plugin.models.g1 import VARIANT_WIDTHS, plain_state_dict
from raw2rgb_plugin.models.registry import block_of, build_model, check_block
from raw2rgb_plugin.models.spec import ArchitectureSpec
from raw2rgb_plugin.pipeline.normalization import INPUT_NORMALIZATIONS

FORMAT_VERSION = 1
PROFILE_SUFFIX = ".safetensors"
METADATA_KEY = "raw2rgb.profile"

OUTPUT_COLOR_SPACES = ("srgb",)

SHIPPED_PROFILE_DIR = Path(__file__).resolve().parent / "shipped"


def user_profile_dir() -> Path:
    """Where trained profiles are installed (`RAW2RGB_PROFILE_DIR` overrides, for tests and CI)."""
    override = os.environ.get("RAW2RGB_PROFILE_DIR")
    if override:
        return Path(override)
    return Path(platformdirs.user_data_dir("raw2rgb", appauthor=False)) / "profiles"


def profile_search_dirs() -> list[Path]:
    return [user_profile_dir(), SHIPPED_PROFILE_DIR]


@dataclass
class Profile:
    name: str
    path: Path
    metadata: dict
    model: nn.Module  # eval mode, plain weights (no spectral norm), on the CPU
    architecture: ArchitectureSpec

    @property
    def input_normalization(self) -> str:
        return self.metadata["input_normalization"]

    @property
    def output_color_space(self) -> str:
        return self.metadata["output_color_space"]

    @property
    def variant(self) -> str:
        return self.metadata.get("variant") or f"width{self.metadata['architecture']['width']}"


def save_profile(path: Path, model: nn.Module, metadata: dict, *, dtype: torch.dtype = torch.float32) -> Path:
    """Write `model` (plain weights) and `metadata` to `path`, atomically.

    `metadata` needs `input_normalization` and may carry anything JSON-able (name, training
    provenance, scores). Architecture and format version are filled in from the model.
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
    _check_metadata(meta, path)

    state = {k: v.to("cpu", dtype if v.is_floating_point() and "running" not in k else v.dtype)
             for k, v in plain_state_dict(model).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata={METADATA_KEY: json.dumps(meta, sort_keys=True)})
        # mkstemp creates 0600; a profile is a plain file anyone who may read the folder may read.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def resolve_profile_path(name_or_path: str | os.PathLike) -> Path:
    """A path that exists, or a profile name looked up in the search directories."""
    candidate = Path(name_or_path).expanduser()
    looks_like_path = candidate.suffix == PROFILE_SUFFIX or os.sep in str(name_or_path)
    if candidate.is_file():
        return candidate
    if looks_like_path:
        raise ProfileError(f"profile file {candidate} does not exist", "check the path")
    for directory in profile_search_dirs():
        path = directory / f"{name_or_path}{PROFILE_SUFFIX}"
        if path.is_file():
            return path
    known = ", ".join(sorted(p.name[: -len(PROFILE_SUFFIX)] for p in list_profile_paths())) or "none"
    raise ProfileError(
        f"no profile named {str(name_or_path)!r}",
        f"run `raw2rgb profiles list` (installed: {known}) or pass a .safetensors path",
    )


def default_profile_name(device_type: str) -> str:
    """`default` (seed width) on a GPU, `default-lite` on a CPU; the other one when it is absent."""
    preferred = ["default", "default-lite"] if device_type in ("cuda", "mps") else ["default-lite", "default"]
    installed = {p.name[: -len(PROFILE_SUFFIX)] for p in list_profile_paths()}
    for name in preferred:
        if name in installed:
            return name
    raise ProfileError(
        "no default profile is installed",
        "reinstall raw2rgb, or pass --profile NAME|PATH (see `raw2rgb profiles list`)",
    )


def list_profile_paths() -> list[Path]:
    """Every profile file in the search directories; a user profile shadows a shipped one."""
    seen: dict[str, Path] = {}
    for directory in profile_search_dirs():
        if directory.is_dir():
            for path in sorted(directory.glob(f"*{PROFILE_SUFFIX}")):
                seen.setdefault(path.name[: -len(PROFILE_SUFFIX)], path)
    return list(seen.values())


def read_profile_metadata(path: Path) -> dict:
    """The JSON metadata of a profile file, without loading its weights."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ProfileError(f"{path} is not a readable safetensors file ({exc})", "re-export or re-download it") from None
    if METADATA_KEY not in header:
        raise ProfileError(f"{path} has no raw2rgb metadata", "it is not a raw2rgb profile")
    try:
        meta = json.loads(header[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{path} has corrupt metadata ({exc})", "re-export the profile") from None
    _check_metadata(meta, path)
    return meta


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
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
    model.eval()
    return Profile(name=meta.get("name", path.stem), path=path, metadata=meta, model=model, architecture=spec)


def _describe(block: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in block.items() if k in ("name", "width", "residual_base"))


def _variant_name(width: object) -> str:
    for name, w in VARIANT_WIDTHS.items():
        if w == width:
            return name
    return f"width{width}"


def _check_metadata(meta: dict, path: Path) -> None:
    def bad(what: str) -> ProfileError:
        return ProfileError(f"{path}: profile metadata {what}", "re-export the profile with `raw2rgb train`")

    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise bad(f"has format version {version!r}; this raw2rgb reads up to {FORMAT_VERSION} (upgrade raw2rgb)")
    if meta.get("input_normalization") not in INPUT_NORMALIZATIONS:
        raise bad(f"names an unknown input normalisation {meta.get('input_normalization')!r}")
    if meta.get("output_color_space") not in OUTPUT_COLOR_SPACES:
        raise bad(f"names an unknown output colour space {meta.get('output_color_space')!r}")
    arch = meta.get("architecture")
    try:
        check_block(arch)
    except ValueError as exc:
        raise bad(str(exc)) from None
    assert isinstance(arch, dict)
    base = arch.get("residual_base", "none")
    if base != "none" and meta["input_normalization"] != "linear-srgb":
        raise bad(f"puts an {base} residual base on input that is not linear-srgb")
