"""The streaming three-stage schedule: decode pool → render (this thread) → writer thread.

    jobs (any iterable, even endless) ─▶ decode threads ─▶ render ─▶ writer thread ─▶ results

`schedule` is a generator: it pulls jobs only as far as a small decode look-ahead, and yields
each `FileResult` as soon as its file has finished (converted, skipped or failed), so a watch
folder or a service can feed it forever with flat memory. At most `decode_workers + 1` decoded
frames and two rendered frames are alive at once. LibRaw releases the GIL, so decoding overlaps
rendering; the device never waits on disk when it need not.

Every job ends as exactly one result. A stage that raises `Raw2RgbError` fails that file with
its one-line reason; anything else fails it as unexpected; the batch goes on. A job whose output
appears while it waits (another run into the same folder finished it) is skipped: checked before
decoding, again before rendering, and a write that loses the race to the other run counts as
skipped too, not failed. An output path that is a folder fails that file. Our own partial files
left in an output folder by a killed run (`io.files.remove_stale_partials`) are removed the
first time a job writes into that folder.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from raw2rgb_plugin.engine.jobs import ConvertJob, DoneEvent, Event, EventCallback, FileResult, StageEvent
from raw2rgb_plugin.errors import OutputExistsError, Raw2RgbError
from raw2rgb_plugin.io.files import remove_stale_partials

DecodedT = TypeVar("DecodedT")  # what decoding yields (frame + metadata)

_SKIPPED = "output exists (use --overwrite to replace it)"
_SKIPPED_RACE = "output exists: another run wrote it meanwhile (use --overwrite to replace it)"


def precheck(job: ConvertJob, *, overwrite: bool) -> FileResult | None:
    """The result of a job that needs no work (its output exists: skipped; its output path is a
    folder: failed), or None when it has to be converted."""
    if os.path.isdir(job.output):
        return FileResult(job.input, None, "failed",
                          f"its output {job.output} is a folder — rename or remove that folder, or use -o")
    if not overwrite and os.path.lexists(job.output):
        return FileResult(job.input, job.output, "skipped", _SKIPPED)
    return None


@dataclass(frozen=True)
class Stages(Generic[DecodedT]):
    decode: Callable[[ConvertJob], DecodedT]
    render: Callable[[DecodedT], np.ndarray]
    write: Callable[[ConvertJob, np.ndarray, DecodedT], None]
    #: a converted file's `FileResult.details` and `notes`, from what its decode found
    report: Callable[[DecodedT], tuple[dict[str, Any], list[str]]] = lambda decoded: ({}, [])


def _failure(job: ConvertJob, stage: str, exc: BaseException, timings: dict[str, float] | None = None) -> FileResult:
    if isinstance(exc, Raw2RgbError):
        reason = str(exc)
    elif isinstance(exc, OSError) and stage == "write":
        reason = f"cannot write {job.output} ({exc.strerror or exc}) — check the folder and free space"
    else:  # a bug in a stage must not sink the batch
        reason = f"unexpected {stage} error: {exc!r}"
    return FileResult(job.input, None, "failed", reason, timings=dict(timings or {}))


class _Writer:
    """The writer thread: a bounded queue keeps at most two rendered frames in memory."""

    def __init__(self, stages: Stages, finish: Callable[[ConvertJob, FileResult], None], notify: EventCallback):
        self._write, self._report, self._finish, self._notify = stages.write, stages.report, finish, notify
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.thread = threading.Thread(target=self._loop, name="raw2rgb-writer", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while (item := self.queue.get()) is not None:
            job, pixels, decoded, timings = item
            self._notify(StageEvent(job, "writing"))
            start = time.perf_counter()
            try:
                self._write(job, pixels, decoded)
            except OutputExistsError:
                # Another run finished this file between our check and our write: its output is
                # as good as ours.
                self._finish(job, FileResult(job.input, job.output, "skipped", _SKIPPED_RACE, timings=timings))
                continue
            except Exception as exc:  # every failure becomes that file's result
                self._finish(job, _failure(job, "write", exc, timings))
                continue
            timings["write"] = time.perf_counter() - start
            h, w = pixels.shape[:2]
            details, notes = self._report(decoded)
            self._finish(job, FileResult(job.input, job.output, "converted", size=(w, h), timings=timings,
                                         details=details, notes=notes))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()


def schedule(jobs: Iterable[ConvertJob], stages: Stages, *, overwrite: bool = False, decode_workers: int = 2,
             on_event: EventCallback | None = None) -> Iterator[FileResult]:
    """Run `jobs` through the stages; yield each file's result as soon as it is final."""
    notify: EventCallback = on_event or (lambda event: None)
    done: queue.SimpleQueue[FileResult] = queue.SimpleQueue()

    def finish(job: ConvertJob, result: FileResult) -> None:
        # Stages of different files overlap: a file's time is the sum of its own stages.
        result.seconds = sum(result.timings.values())
        done.put(result)
        notify(DoneEvent(job, result))

    def drain() -> Iterator[FileResult]:
        while not done.empty():
            yield done.get()

    def timed_decode(job: ConvertJob) -> tuple[Any, float]:
        start = time.perf_counter()
        return stages.decode(job), time.perf_counter() - start

    pending: deque[tuple[ConvertJob, Future]] = deque()
    source = iter(jobs)
    lookahead = max(1, decode_workers) + 1
    pool = ThreadPoolExecutor(max_workers=max(1, decode_workers), thread_name_prefix="raw2rgb-decode")
    writer = _Writer(stages, finish, notify)

    tidied: set[str] = set()

    def fill() -> None:
        while len(pending) < lookahead and (job := next(source, None)) is not None:
            folder = os.fspath(job.output.parent)
            if folder not in tidied:
                tidied.add(folder)
                remove_stale_partials(job.output.parent)
            ready = precheck(job, overwrite=overwrite)
            if ready is not None:
                finish(job, ready)
                continue
            notify(StageEvent(job, "decoding"))
            pending.append((job, pool.submit(timed_decode, job)))

    try:
        fill()
        while pending:
            job, future = pending.popleft()
            try:
                decoded, decode_seconds = future.result()
            except Exception as exc:
                finish(job, _failure(job, "decoding", exc))
                decoded = None
            fill()
            if decoded is not None:
                _render_one(job, decoded, decode_seconds, stages, overwrite, writer, finish, notify)
            yield from drain()
        writer.close()
        yield from drain()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if writer.thread.is_alive():
            writer.close()


def _render_one(job: ConvertJob, decoded: Any, decode_seconds: float, stages: Stages, overwrite: bool,
                writer: _Writer, finish: Callable[[ConvertJob, FileResult], None], notify: EventCallback) -> None:
    # Checked again here: a concurrent run into the same folder may have written it meanwhile,
    # and rendering it again only to fail at the write would report a false failure.
    ready = precheck(job, overwrite=overwrite)
    if ready is not None:
        ready.timings = {"decode": decode_seconds}
        finish(job, ready)
        return
    notify(StageEvent(job, "rendering"))
    start = time.perf_counter()
    try:
        pixels = stages.render(decoded)
    except Exception as exc:
        finish(job, _failure(job, "rendering", exc, {"decode": decode_seconds}))
        return
    timings = {"decode": decode_seconds, "render": time.perf_counter() - start}
    writer.queue.put((job, pixels, decoded, timings))


def in_job_order(jobs: list[ConvertJob], run: Callable[[EventCallback], Iterable[FileResult]],
                 on_event: EventCallback | None = None) -> list[FileResult]:
    """Drive `run(events)` (a streaming conversion of `jobs` that reports to `events`) to its end;
    every job's result in the order of `jobs`, whichever order the files finished in."""
    order = {id(job): index for index, job in enumerate(jobs)}
    by_index: dict[int, FileResult] = {}

    def collect(event: Event) -> None:
        if isinstance(event, DoneEvent):
            by_index[order[id(event.job)]] = event.result
        if on_event is not None:
            on_event(event)

    for _ in run(collect):
        pass
    return [by_index[i] for i in sorted(by_index)]
