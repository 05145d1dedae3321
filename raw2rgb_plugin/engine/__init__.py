"""The conversion engine: inputs planned into jobs, jobs scheduled through decode → render → write.

`Converter`, `ConvertJob` and `FileResult` are importable from here; they load on first use so
that torch-free modules of this package (`engine.options`, `engine.plan`) stay fast to import.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Converter", "ConvertJob", "FileResult"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from raw2rgb_plugin.engine import converter

        return getattr(converter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
