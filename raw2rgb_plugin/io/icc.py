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


def icc_profile_bytes(color_space: str = "srgb") -> bytes:
    """The ICC profile for `color_space` ("srgb"), byte-identical across runs and processes."""
    key = color_space.lower()
    if key not in _LCMS_COLOR_SPACES:
        known = ", ".join(sorted(_LCMS_COLOR_SPACES))
        raise ValueError(f"no ICC profile for colour space {color_space!r} (known: {known})")
    return _build(key)


@cache
def _build(key: str) -> bytes:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile(_LCMS_COLOR_SPACES[key]))
    return _pin_creation_date(profile.tobytes())


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
