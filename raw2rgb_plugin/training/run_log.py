"""The run's JSONL log (`log.jsonl`: one event record a line), its timestamps and step rate."""

from __future__ import annotations

import datetime as _dt
import json
import time
from pathlib import Path
from typing import IO

LOG_NAME = "log.jsonl"


def now() -> str:
    """UTC time to the second, as the log and the profile metadata record it."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class RunLog:
    """`log.jsonl` in `run_dir`, appended to; a disabled log (ranks other than 0) writes nothing.

    `resume_offset` is the log's size when the resumed checkpoint was written: what an
    interrupted run logged after it is dropped on `open`, so the log tells one consistent story,
    the steps being trained again. None (a new run) keeps the file as it is.
    """

    def __init__(self, run_dir: Path, *, enabled: bool, resume_offset: int | None = None):
        self.path = run_dir / LOG_NAME
        self.enabled = enabled
        self.resume_offset = resume_offset
        self._file: IO[str] | None = None

    def open(self) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.resume_offset is not None and self.path.exists():
            with open(self.path, "r+b") as f:
                f.truncate(self.resume_offset)
        # Line-buffered: `tail -f log.jsonl` shows each record as it happens.
        self._file = open(self.path, "a", encoding="utf-8", buffering=1)

    def write(self, record: dict) -> None:
        """Append `record` as one line (nothing while the log is not open)."""
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def size(self) -> int:
        """Bytes in the file so far: the offset a checkpoint records for `resume_offset`."""
        return self.path.stat().st_size if self.path.exists() else 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class StepRate:
    """Steps per second, smoothed over the last few seconds."""

    def __init__(self) -> None:
        self._times: list[float] = []

    def tick(self) -> None:
        now = time.perf_counter()
        self._times.append(now)
        self._times = [t for t in self._times if now - t <= 10.0][-200:]

    @property
    def per_second(self) -> float | None:
        if len(self._times) < 2:
            return None
        return (len(self._times) - 1) / max(1e-9, self._times[-1] - self._times[0])
