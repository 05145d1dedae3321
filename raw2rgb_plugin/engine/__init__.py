"""The conversion engine: inputs planned into jobs, jobs scheduled through decode → render → write."""

from raw2rgb_plugin.engine.converter import Converter, ConvertJob, FileResult

__all__ = ["Converter", "ConvertJob", "FileResult"]
