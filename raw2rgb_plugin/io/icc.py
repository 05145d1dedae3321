"""ICC profile bytes to embed in output files, identical on every run.

LittleCMS (through Pillow's ImageCms) builds the profile; its header carries the creation
time, so two conversions of the same RAW would differ byte for byte. We pin that field and,
when the profile carries an ICC profile ID (an MD5 over the profile), recompute the ID so the
profile stays valid. The bytes then depend only on the LittleCMS build bundled with Pillow.
"""

from __future__ import annotations

import hashlib
import struct
from functools import cache
from typing import Literal

from PIL import ImageCms

# ICC.1:2010 header layout (byte offsets).
_CREATION_DATE = slice(24, 36)
_PROFILE_FLAGS = slice(44, 48)
_RENDERING_INTENT = slice(64, 68)
_PROFILE_ID = slice(84, 100)
_HEADER_SIZE = 128

# 2000-01-01 00:00:00: any fixed, valid dateTimeNumber serves; this one says "not a real date".
_PINNED_DATE = struct.pack(">6H", 2000, 1, 1, 0, 0, 0)

# Our names → the names LittleCMS knows.
_LCMS_COLOR_SPACES: dict[str, Literal["sRGB"]] = {"srgb": "sRGB"}


#: "srgb-linear": sRGB's primaries and white with a gamma-1 curve (a scene-linear profile's TIFF).
_LINEAR_VARIANTS = {"srgb-linear": "srgb"}
_LINEAR_DESCRIPTION = "raw2rgb linear sRGB (sRGB primaries, D65, gamma 1.0)"


def icc_profile_bytes(color_space: str = "srgb") -> bytes:
    """The ICC profile for `color_space` ("srgb" or "srgb-linear"), byte-identical across runs."""
    key = color_space.lower()
    if key not in _LCMS_COLOR_SPACES and key not in _LINEAR_VARIANTS:
        known = ", ".join(sorted([*_LCMS_COLOR_SPACES, *_LINEAR_VARIANTS]))
        raise ValueError(f"no ICC profile for colour space {color_space!r} (known: {known})")
    return _build(key)


@cache
def _build(key: str) -> bytes:
    if key in _LINEAR_VARIANTS:
        # LittleCMS (through Pillow) only builds the standard profiles; the linear one is the
        # same profile with its three tone curves replaced by the identity and its name changed.
        return _pin_creation_date(_with_linear_curves(_build(_LINEAR_VARIANTS[key]), _LINEAR_DESCRIPTION))
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile(_LCMS_COLOR_SPACES[key]))
    return _pin_creation_date(profile.tobytes())


def _with_linear_curves(data: bytes, description: str) -> bytes:
    """`data` with rTRC/gTRC/bTRC → one gamma-1.0 `curv` and desc → `description` (ICC.1:2010 §9–10)."""
    count = struct.unpack_from(">I", data, _HEADER_SIZE)[0]
    body = bytearray(data)
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, 0x0100) + bytes(2)  # one entry: gamma 1.0 (u8Fixed8)
    text = description.encode("utf-16-be")
    mluc = b"mluc" + bytes(4) + struct.pack(">II2s2sII", 1, 12, b"en", b"US", len(text), 28) + text
    mluc += bytes(-len(mluc) % 4)
    curve_at = len(body)
    body += curve
    mluc_at = len(body)
    body += mluc
    for i in range(count):
        entry = _HEADER_SIZE + 4 + 12 * i
        signature = bytes(body[entry : entry + 4])
        if signature in (b"rTRC", b"gTRC", b"bTRC"):
            struct.pack_into(">II", body, entry + 4, curve_at, len(curve))
        elif signature == b"desc":
            struct.pack_into(">II", body, entry + 4, mluc_at, len(mluc))
    struct.pack_into(">I", body, 0, len(body))
    if body[8] < 4:
        body[8:12] = bytes([4, 0x20, 0, 0])  # version 4.2: mluc descriptions are v4 tags
    return bytes(body)


def _pin_creation_date(data: bytes) -> bytes:
    if len(data) < _HEADER_SIZE or data[36:40] != b"acsp":
        raise ValueError("LittleCMS returned something that is not an ICC profile")
    profile = bytearray(data)
    profile[_CREATION_DATE] = _PINNED_DATE
    if any(profile[_PROFILE_ID]):
        profile[_PROFILE_ID] = _profile_id(profile)
    return bytes(profile)


def _profile_id(profile: bytearray) -> bytes:
    # ICC.1:2010 §7.2.18: MD5 of the whole profile with flags, intent and ID zeroed.
    hashed = bytearray(profile)
    hashed[_PROFILE_FLAGS] = bytes(4)
    hashed[_RENDERING_INTENT] = bytes(4)
    hashed[_PROFILE_ID] = bytes(16)
    return hashlib.md5(hashed).digest()
