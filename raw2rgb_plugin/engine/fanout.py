"""More than one device or machine: one converter per device, and a deterministic share per machine.

- `engine.plan.shard(inputs, k, n)`: the k-th of n deterministic shares of a batch (1-based k),
  so N machines given the same arguments (a SLURM job array, a Kubernetes indexed job) convert
  disjoint sets that together cover every input.
- `stream_on_devices(converters, jobs, …)`: one converter per device (e.g. cuda:0, cuda:1), each
  with its own decode → render → write schedule in its own thread, all pulling from one job
  iterator; results are yielded as files finish, whichever device rendered them.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence

from raw2rgb_plugin.engine.converter import Converter
from raw2rgb_plugin.engine.jobs import ConvertJob, EventCallback, FileResult
from raw2rgb_plugin.engine.options import ConvertOptions
from raw2rgb_plugin.io.writers import Writer


class _SharedJobs:
    """One job iterator that several schedules pull from (each pull under a lock)."""

    def __init__(self, jobs: Iterable[ConvertJob]):
        self._jobs = iter(jobs)
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[ConvertJob]:
        while True:
            with self._lock:
                job = next(self._jobs, None)
            if job is None:
                return
            yield job


def stream_on_devices(
    converters: Sequence[Converter],
    jobs: Iterable[ConvertJob],
    *,
    writer: Writer | None = None,
    options: ConvertOptions = ConvertOptions(),
    on_event: EventCallback | None = None,
) -> Iterator[FileResult]:
    """Convert `jobs` on every converter at once; yield each result as its file finishes."""
    if len(converters) == 1:
        yield from converters[0].stream(jobs, writer=writer, options=options, on_event=on_event)
        return
    shared = _SharedJobs(jobs)
    results: queue.Queue[FileResult | BaseException | None] = queue.Queue()

    def work(converter: Converter) -> None:
        try:
            for result in converter.stream(shared, writer=writer, options=options, on_event=on_event):
                results.put(result)
        except BaseException as exc:  # handed to the caller's thread below
            results.put(exc)
        finally:
            results.put(None)

    threads = [threading.Thread(target=work, args=(c,), name=f"raw2rgb-{c.device}", daemon=True) for c in converters]
    for thread in threads:
        thread.start()
    running = len(threads)
    while running:
        item = results.get()
        if item is None:
            running -= 1
        elif isinstance(item, BaseException):
            raise item
        else:
            yield item
    for thread in threads:
        thread.join()
