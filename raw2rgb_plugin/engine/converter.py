"""The conversion engine: RAW files in, 16-bit TIFFs out, through a device-resident G1.

A batch is a three-stage pipeline so the device never waits on disk when it need not:

    decode pool (threads; LibRaw releases the GIL) → G1 on the device (this thread) → writer thread

Every file ends as exactly one `FileResult`: converted, skipped (output exists) or failed with a
one-line reason. A failure never stops the batch, and no stage leaves a partial TIFF behind.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from raw2rgb_plugin import __version__
from raw2rgb_plugin.runtime.device import bound_cpu_threads, choose_device, inference_dtype, prepare_for_inference
from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.io.exif_read import PhotoMetadata, read_photo_metadata
from raw2rgb_plugin.io.icc import icc_profile_bytes
from raw2rgb_plugin.models.g1 import half_size as to_half_size
from raw2rgb_plugin.pipeline.normalization import network_input
from raw2rgb_plugin.pipeline.orientation import orient
from raw2rgb_plugin.profiles.store import Profile
from raw2rgb_plugin.io.raw_file import BayerFrame, decode_raw
from raw2rgb_plugin.io.tiff_write import write_rgb16_tiff
from raw2rgb_plugin.runtime.tiling import DEFAULT_OVERLAP, run_tiled

#: fraction of free memory whole-frame inference may plan to use before we tile instead.
_MEMORY_BUDGET = 0.5
_CPU_TILE = 512  # packed pixels: keeps a base-width tile near 1 GB of activations


@dataclass
class ConvertJob:
    input: Path
    output: Path


@dataclass
class FileResult:
    input: Path
    output: Path | None
    status: str  # "converted", "skipped" or "failed"
    error: str | None = None
    seconds: float = 0.0
    size: tuple[int, int] | None = None  # (width, height) written
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "input": str(self.input),
            "output": str(self.output) if self.output else None,
            "status": self.status,
            "error": self.error,
            "seconds": round(self.seconds, 3),
            "size": list(self.size) if self.size else None,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


#: on_event(kind, job, info): kind is "stage" (info["stage"] = decoding/rendering/writing) or
#: "done" (info["result"] = FileResult). Called from worker threads too: keep it thread-safe.
EventCallback = Callable[[str, ConvertJob, dict], None]


@dataclass
class _Decoded:
    frame: BayerFrame
    metadata: PhotoMetadata
    seconds: float


def _decode(path: Path) -> _Decoded:
    start = time.perf_counter()
    frame, raw = decode_raw(path, keep_open=True)
    try:
        metadata = read_photo_metadata(path, raw)
    finally:
        raw.close()
    return _Decoded(frame, metadata, time.perf_counter() - start)


def estimate_activation_bytes(width: int, packed_pixels: int, dtype: torch.dtype) -> int:
    """Peak activation memory of G1 on a frame, from the tensors alive at the last decoder stage."""
    element = torch.finfo(dtype).bits // 8
    floats_per_packed_pixel = 12 * width + 60  # d3 skip + upsample + conv out + 12-ch head, ×1.5 margin
    return packed_pixels * floats_per_packed_pixel * element + packed_pixels * 4 * 3 * 4 * 2  # + fp32 output


def available_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        import os

        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30


class Converter:
    """A profile's G1 resident on a device, ready to render frames."""

    def __init__(
        self,
        profile: Profile,
        *,
        device: str | torch.device = "auto",
        tile: int | None = None,
        overlap: int = DEFAULT_OVERLAP,
        dtype: torch.dtype | None = None,
        threads: int | None = None,
    ):
        self.profile = profile
        self.device = device if isinstance(device, torch.device) else choose_device(device)
        self.dtype = dtype or inference_dtype(self.device)
        self.tile = tile  # None = choose per frame from free memory; 0 = whole frame
        self.overlap = overlap
        if self.device.type == "cpu":
            self.threads = bound_cpu_threads(threads)
        self.model = prepare_for_inference(profile.model, self.device, self.dtype)
        self.icc = icc_profile_bytes(profile.output_color_space)
        self.software = f"raw2rgb {__version__} (profile {profile.name})"

    def _tile_for(self, packed_pixels: int) -> int:
        if self.tile is not None:
            return self.tile
        needed = estimate_activation_bytes(self.profile.model.config.width, packed_pixels, self.dtype)
        if needed <= _MEMORY_BUDGET * available_memory_bytes(self.device):
            return 0
        return _CPU_TILE if self.device.type != "cuda" else 1024

    def _forward(self, packed: torch.Tensor) -> torch.Tensor:
        return self.model(packed.to(self.dtype).contiguous(memory_format=torch.channels_last))

    @torch.inference_mode()
    def render(self, frame: BayerFrame, *, half_size: bool = False) -> np.ndarray:
        """Full-resolution (or half-size) oriented RGB of `frame` as uint16 (H, W, 3)."""
        net_in = network_input(frame, self.profile.input_normalization, self.device)
        packed = net_in.packed
        tile = self._tile_for(packed.shape[-2] * packed.shape[-1])
        rgb = run_tiled(self._forward, packed, tile=tile, overlap=self.overlap)
        rgb = net_in.padding.crop(rgb.float())
        if half_size:
            # Mean of each 2×2 block; an odd last row/column is dropped, as LibRaw's half_size does.
            rgb = to_half_size(rgb)
        rgb = orient(rgb[0], frame.flip)  # (3, H, W)
        # int32 is the widest dtype every backend can cast to and copy back cheaply.
        pixels = (rgb.clamp(0, 1) * 65535).round().to(torch.int32).permute(1, 2, 0).cpu().numpy()
        return pixels.astype(np.uint16)

    def convert(
        self,
        jobs: Iterable[ConvertJob],
        *,
        overwrite: bool = False,
        compress: bool = False,
        half_size: bool = False,
        decode_workers: int = 2,
        on_event: EventCallback | None = None,
    ) -> list[FileResult]:
        jobs = list(jobs)
        notify = on_event or (lambda kind, job, info: None)
        results: dict[int, FileResult] = {}

        def finish(index: int, result: FileResult) -> None:
            # Stages of different files overlap in the pipeline: a file's time is its own stages.
            result.seconds = sum(result.timings.values())
            results[index] = result
            notify("done", jobs[index], {"result": result})

        # Writer: a bounded queue keeps at most two rendered frames in memory.
        write_queue: queue.Queue = queue.Queue(maxsize=2)

        def writer() -> None:
            while True:
                item = write_queue.get()
                if item is None:
                    return
                index, pixels, metadata, timings = item
                job = jobs[index]
                notify("stage", job, {"stage": "writing"})
                start = time.perf_counter()
                try:
                    write_rgb16_tiff(
                        job.output, pixels, icc=self.icc, metadata=metadata, software=self.software,
                        compress=compress, overwrite=overwrite,
                    )
                except Raw2RgbError as exc:
                    finish(index, FileResult(job.input, None, "failed", str(exc), timings=timings))
                except OSError as exc:
                    finish(index, FileResult(job.input, None, "failed",
                                             f"cannot write {job.output} ({exc.strerror or exc}) — check the folder and free space",
                                             timings=timings))
                else:
                    timings["write"] = time.perf_counter() - start
                    h, w = pixels.shape[:2]
                    finish(index, FileResult(job.input, job.output, "converted", size=(w, h), timings=timings))

        writer_thread = threading.Thread(target=writer, name="raw2rgb-writer")
        writer_thread.start()
        pool = ThreadPoolExecutor(max_workers=max(1, decode_workers), thread_name_prefix="raw2rgb-decode")
        try:
            todo: list[int] = []
            for index, job in enumerate(jobs):
                if job.output.exists() and not overwrite:
                    finish(index, FileResult(job.input, job.output, "skipped",
                                             "output exists (use --overwrite to replace it)"))
                else:
                    todo.append(index)

            # Decode ahead, but only a bounded number of frames, so memory stays flat.
            pending: dict[int, Future] = {}
            lookahead = max(1, decode_workers) + 1
            cursor = 0

            def submit_more() -> None:
                nonlocal cursor
                while cursor < len(todo) and len(pending) < lookahead:
                    index = todo[cursor]
                    notify("stage", jobs[index], {"stage": "decoding"})
                    pending[index] = pool.submit(_decode, jobs[index].input)
                    cursor += 1

            submit_more()
            for index in todo:
                job = jobs[index]
                future = pending.pop(index)
                try:
                    decoded = future.result()
                except Raw2RgbError as exc:
                    finish(index, FileResult(job.input, None, "failed", str(exc)))
                    submit_more()
                    continue
                except Exception as exc:  # a decoder bug must not sink the batch
                    finish(index, FileResult(job.input, None, "failed", f"unexpected decoding error: {exc!r}"))
                    submit_more()
                    continue
                submit_more()
                notify("stage", job, {"stage": "rendering"})
                start = time.perf_counter()
                try:
                    pixels = self.render(decoded.frame, half_size=half_size)
                except torch.cuda.OutOfMemoryError:
                    finish(index, FileResult(job.input, None, "failed",
                                             "the GPU ran out of memory — use a smaller --tile (e.g. 512) or --device cpu"))
                    continue
                except RuntimeError as exc:  # e.g. the CPU allocator failing on a huge frame
                    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    finish(index, FileResult(job.input, None, "failed",
                                             f"rendering failed ({reason}) — try a smaller --tile, e.g. --tile 512"))
                    continue
                timings = {"decode": decoded.seconds, "render": time.perf_counter() - start}
                write_queue.put((index, pixels, decoded.metadata, timings))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            write_queue.put(None)
            writer_thread.join()
        return [results[i] for i in range(len(jobs)) if i in results]

