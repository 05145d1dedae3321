"""Finding profiles and reading their metadata, without torch (`raw2rgb profiles list` and the
CLI's checks start in a fraction of a second; `profiles/store.py` loads and saves the weights).

A profile file is safetensors: an 8-byte little-endian header length, a JSON header (tensor
names, shapes, offsets and `__metadata__`, where our JSON metadata sits under METADATA_KEY), then
the tensor bytes. Only the header is read here, with its size bounded.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import platformdirs

from raw2rgb_plugin.errors import ProfileError
from raw2rgb_plugin.models.blocks import RESIDUAL_BASE_INPUT, block_cfa, check_architecture_block
from raw2rgb_plugin.vocabulary import (
    INPUT_NORMALIZATIONS,
    MAX_CURVE_KNOTS,
    MAX_LUT_SIZE,
    NETWORK_SPACES,
    OUTPUT_COLOR_SPACES,
    PROFILE_OUTPUTS,
)

FORMAT_VERSION = 1
PROFILE_SUFFIX = ".safetensors"
METADATA_KEY = "raw2rgb.profile"

#: the profiles `convert` picks by a file's sensor when none is named: a GPU takes the first, a CPU
#: the second, and either falls back to the other when it is not installed.
DEFAULT_PROFILES_BY_CFA = {"bayer": ("default", "default-lite"), "xtrans": ("xtrans", "xtrans-lite")}
#: the names `convert` falls back between when one is not installed (the Bayer defaults).
DEFAULT_PROFILES = DEFAULT_PROFILES_BY_CFA["bayer"]
#: the scene-linear profile `convert --format dng` picks by a file's sensor when none is named.
DNG_PROFILES_BY_CFA = {"bayer": "develop-lite", "xtrans": "xtrans-develop-lite"}

SHIPPED_PROFILE_DIR = Path(__file__).resolve().parent / "shipped"

#: a safetensors header larger than this is not a profile's (ours are a few kB).
_MAX_HEADER_BYTES = 64 << 20


def user_profile_dir() -> Path:
    """Where trained profiles are installed (`RAW2RGB_PROFILE_DIR` overrides, for tests and CI)."""
    override = os.environ.get("RAW2RGB_PROFILE_DIR")
    if override:
        return Path(override)
    return Path(platformdirs.user_data_dir("raw2rgb", appauthor=False)) / "profiles"


def profile_search_dirs() -> list[Path]:
    return [user_profile_dir(), SHIPPED_PROFILE_DIR]


def profile_name_of(path: Path) -> str:
    return path.name[: -len(PROFILE_SUFFIX)] if path.name.endswith(PROFILE_SUFFIX) else path.stem


def list_profile_paths() -> list[Path]:
    """Every profile file in the search directories; a user profile shadows a shipped one."""
    seen: dict[str, Path] = {}
    for directory in profile_search_dirs():
        if directory.is_dir():
            for path in sorted(directory.glob(f"*{PROFILE_SUFFIX}")):
                seen.setdefault(profile_name_of(path), path)
    return list(seen.values())


def installed_names() -> list[str]:
    return sorted(profile_name_of(p) for p in list_profile_paths())


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
    known = ", ".join(installed_names()) or "none"
    raise ProfileError(
        f"no profile named {str(name_or_path)!r} (installed: {known})",
        "see `raw2rgb profiles list`, or pass a .safetensors path",
    )


def installed_default(device_type: str, cfa: str = "bayer", output_format: str = "tiff") -> str | None:
    """The installed profile `convert` picks for a file of `cfa` ("bayer" or "xtrans") when none is
    named, or None: for a TIFF the GPU or CPU default of that sensor (either falls back to the
    other), for a DNG its scene-linear one."""
    if output_format == "dng":
        preferred = [DNG_PROFILES_BY_CFA[cfa]]
    else:
        pair = DEFAULT_PROFILES_BY_CFA[cfa]
        preferred = list(pair) if device_type in ("cuda", "mps") else list(reversed(pair))
    installed = set(installed_names())
    return next((name for name in preferred if name in installed), None)


def default_profile_name(device_type: str) -> str:
    """`default` (seed width) on a GPU, `default-lite` on a CPU; the other one when it is absent."""
    name = installed_default(device_type)
    if name is not None:
        return name
    raise ProfileError(
        "no default profile is installed",
        "reinstall raw2rgb, or pass --profile NAME|PATH (see `raw2rgb profiles list`)",
    )


def read_profile_metadata(path: Path) -> dict:
    """The JSON metadata of a profile file, checked, without loading its weights."""
    header = _safetensors_header(path)
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict) or METADATA_KEY not in metadata:
        raise ProfileError(f"{path} has no raw2rgb metadata", "it is not a raw2rgb profile")
    try:
        meta = json.loads(metadata[METADATA_KEY])
    except (json.JSONDecodeError, TypeError) as exc:
        raise ProfileError(f"{path} has corrupt metadata ({exc})", "re-export the profile") from None
    if not isinstance(meta, dict):
        raise ProfileError(f"{path} has corrupt metadata (not a JSON object)", "re-export the profile")
    check_metadata(meta, path)
    return meta


def _safetensors_header(path: Path) -> dict:
    def unreadable(why: str) -> ProfileError:
        return ProfileError(f"{path} is not a readable safetensors file ({why})", "re-export or re-download it")

    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise unreadable("shorter than a safetensors header")
            (size,) = struct.unpack("<Q", head)
            if size > _MAX_HEADER_BYTES:
                raise unreadable(f"its header claims {size} bytes")
            data = fh.read(size)
    except OSError as exc:
        raise unreadable(exc.strerror or str(exc)) from None
    if len(data) < size:
        raise unreadable("truncated header")
    try:
        header = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise unreadable(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise unreadable("header is not a JSON object")
    return header


def check_metadata(meta: dict, path: Path) -> None:
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
        check_architecture_block(arch)
    except ValueError as exc:
        raise bad(str(exc)) from None
    assert isinstance(arch, dict)
    base = arch.get("residual_base", "none")
    if base != "none" and meta["input_normalization"] != RESIDUAL_BASE_INPUT[base]:
        raise bad(f"puts an {base} residual base on input that is not {RESIDUAL_BASE_INPUT[base]}")
    if profile_cfa(meta) == "xtrans" and meta["input_normalization"] == "wb+ccm":
        raise bad("puts wb+ccm input (a 2×2 Bayer cell's mix) on an X-Trans G1")
    output = meta.get("output", "display")
    if output not in PROFILE_OUTPUTS:
        raise bad(f"names an unknown output {output!r}")
    if (output == "scene-linear") != (meta["output_color_space"] == "camera-linear"):
        raise bad(f"says output {output!r} in colour space {meta['output_color_space']!r}")
    space = meta.get("network_space", "srgb")
    if space not in NETWORK_SPACES:
        raise bad(f"names an unknown network space {space!r} (use {' or '.join(NETWORK_SPACES)})")
    if space == "camera" and (output != "display" or meta["input_normalization"] != "wb-headroom"):
        raise bad(f"says network space 'camera' with output {output!r} and {meta['input_normalization']!r} input "
                  "(camera space is for display profiles on wb-headroom input)")
    look = meta.get("look")
    if look is not None and not _bounded_look(look):
        raise bad(f"describes a look table outside the bounds ({look!r})")


def profile_cfa(meta: dict) -> str:
    """The colour filter array a profile renders, "bayer" or "xtrans": its G1's packing period
    (architecture `period` 6 is X-Trans; profiles from before X-Trans have none: Bayer)."""
    return block_cfa(meta["architecture"])


def _bounded_look(look: object) -> bool:
    """A look block {curve_knots, lut_size} within what `pipeline/look.py` accepts (torch-free)."""
    if not isinstance(look, dict):
        return False
    knots, size = look.get("curve_knots"), look.get("lut_size")
    return (isinstance(knots, int) and isinstance(size, int) and 2 <= knots <= MAX_CURVE_KNOTS
            and 2 <= size <= MAX_LUT_SIZE)
