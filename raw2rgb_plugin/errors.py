"""Errors a user can act on.

Every error the engine raises for a bad input or a bad profile is a Raw2RgbError whose
`str()` is one line: what is wrong and what to do about it. The CLI prints that line with
the file name and never a traceback.
"""

from __future__ import annotations


class Raw2RgbError(Exception):
    """An error with a one-line, user-facing explanation and a hint."""

    def __init__(self, problem: str, hint: str | None = None):
        self.problem = problem
        self.hint = hint
        super().__init__(problem if not hint else f"{problem} — {hint}")


class RawDecodeError(Raw2RgbError):
    """The file is not a RAW we can decode (corrupt, truncated, unknown format)."""


class UnsupportedRawError(Raw2RgbError):
    """A RAW LibRaw decodes but the method cannot use (X-Trans, Foveon, linear DNG, mono)."""


class ProfileError(Raw2RgbError):
    """A profile that cannot be found, read, or does not match its metadata."""


class OutputError(Raw2RgbError):
    """The output cannot be written (exists and no --overwrite, disk full, permissions)."""


class OutputExistsError(OutputError):
    """The output exists (or appeared while it was written: another run finished it) and is not replaced."""
