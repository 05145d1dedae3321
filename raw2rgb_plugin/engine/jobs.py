"""What the engine works on and reports: jobs, per-file results and progress events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class ConvertJob:
    input: Path
    output: Path


Status = Literal["converted", "skipped", "failed"]


@dataclass
class FileResult:
    """How one job ended: exactly one per job, whatever happened."""

    input: Path
    output: Path | None
    status: str  # Status: "converted", "skipped" or "failed"
    error: str | None = None
    seconds: float = 0.0
    size: tuple[int, int] | None = None  # (width, height) written
    timings: dict[str, float] = field(default_factory=dict)
    #: what was done to this file beyond the conversion, for --json (e.g. "lens": the lensfun
    #: correction applied, or None)
    details: dict[str, Any] = field(default_factory=dict)
    #: one-line remarks for the user (e.g. why the lens was not corrected); not failures
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "input": str(self.input),
            "output": str(self.output) if self.output else None,
            "status": self.status,
            "error": self.error,
            "seconds": round(self.seconds, 3),
            "size": list(self.size) if self.size else None,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            **self.details,
            "notes": list(self.notes),
        }


Stage = Literal["decoding", "rendering", "writing"]


@dataclass(frozen=True)
class StageEvent:
    """A job entered a stage."""

    job: ConvertJob
    stage: Stage


@dataclass(frozen=True)
class DoneEvent:
    """A job ended (converted, skipped or failed)."""

    job: ConvertJob
    result: FileResult


Event = StageEvent | DoneEvent

#: Called from worker threads too (decoding, writing): keep it thread-safe and quick.
EventCallback = Callable[[Event], None]
