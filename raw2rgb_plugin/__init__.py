"""raw2rgb: a learned camera ISP (RAW2RGB-GAN) — camera RAW in, 16-bit TIFF out.

The names a script needs are importable from here (they load on first use, so importing the
package stays cheap)::

    from raw2rgb_plugin import Converter, ConvertJob, load_profile, RawFile

    converter = Converter(load_profile("default-lite"), device="cpu")
    with RawFile("IMG_0001.CR2") as raw:
        rgb16 = converter.render(raw.frame)          # (H, W, 3) uint16, oriented
    results = converter.convert([ConvertJob(Path("a.nef"), Path("out/a.tif"))])
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {
    "Converter": "raw2rgb_plugin.engine.converter",
    "ConvertJob": "raw2rgb_plugin.engine.jobs",
    "FileResult": "raw2rgb_plugin.engine.jobs",
    "load_profile": "raw2rgb_plugin.profiles.store",
    "save_profile": "raw2rgb_plugin.profiles.store",
    "RawFile": "raw2rgb_plugin.io.raw_file",
    "decode_raw": "raw2rgb_plugin.io.raw_file",
    "Raw2RgbError": "raw2rgb_plugin.errors",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
