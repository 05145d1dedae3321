"""`Converter`: a profile's model resident on a device, converting RAW files to images.

    RawFile (decode [+ lens lookup]) ─▶ network_input (levels, [stuck sites], [vignetting], pack,
        normalise [+ noise map]) ─▶ Runner (model, tiles) ─▶ network_output (crop, [camera → display], half size, square pixels,
        [distortion + lateral CA], [scene-linear: to camera RGB or linear sRGB], orient, uint16)
        ─▶ Writer (TIFF or DNG, atomic)

A display profile renders a finished sRGB image (TIFF): its network renders display sRGB itself
(network space "srgb"), or white-balanced camera RGB that a fixed rendering after it (camera
matrix, sRGB encoding, tone curve) finishes (network space "camera"). A scene-linear profile renders linear
light: `--format dng` writes it as the camera's own RGB in sensor orientation (an editable DNG),
`--format tiff` as linear sRGB with a linear ICC profile.

A profile renders one kind of sensor (`Profile.cfa`: Bayer, or Fujifilm's X-Trans). A converter
built with `by_cfa` (`convert` without --profile) renders the other kind too, with the profile it
picks for that sensor, loaded when the first such file comes; one built for a named profile
refuses a file of the other kind in one line, and the batch goes on.

`render` does one frame; `stream` runs any iterable of jobs through the scheduler and yields
results as files finish; `convert` is `stream` collected in job order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from raw2rgb_plugin import __version__
from raw2rgb_plugin.engine.jobs import ConvertJob, EventCallback, FileResult
from raw2rgb_plugin.engine.options import DEFAULT_DNG_PROFILE, ConvertOptions, check_denoise
from raw2rgb_plugin.engine.scheduler import Stages, in_job_order, schedule
from raw2rgb_plugin.errors import ProfileError, Raw2RgbError, UnsupportedRawError
from raw2rgb_plugin.io.exif_read import PhotoMetadata
from raw2rgb_plugin.io.icc import icc_profile_bytes
from raw2rgb_plugin.io.lens import LensCorrection, LensLookup, find_lens_correction
from raw2rgb_plugin.io.libraw import libraw_stderr
from raw2rgb_plugin.io.noise_profile import noise_model_for
from raw2rgb_plugin.io.raw_file import RawFile, SensorFrame
from raw2rgb_plugin.io.writers import DngWriter, TiffWriter, Writer
from raw2rgb_plugin.pipeline.hot_pixels import StuckSites
from raw2rgb_plugin.pipeline.noise import NoiseModel
from raw2rgb_plugin.pipeline.normalization import network_input, network_output
from raw2rgb_plugin.pipeline.optics import vignetting_gain
from raw2rgb_plugin.profiles.catalog import installed_default
from raw2rgb_plugin.profiles.store import Profile
from raw2rgb_plugin.runtime.device import bound_cpu_threads, choose_device
from raw2rgb_plugin.runtime.runner import Runner, build_runner
from raw2rgb_plugin.runtime.tiling import DEFAULT_OVERLAP
from raw2rgb_plugin.vocabulary import OUTPUT_FORMATS

__all__ = ["Converter", "ConvertJob", "FileResult"]

def check_output_format(output_format: str, profile: Profile) -> str:
    """`output_format`, once the profile can feed it: a DNG holds scene-linear light only."""
    if output_format not in OUTPUT_FORMATS:
        raise Raw2RgbError(f"unknown output format {output_format!r}", f"use one of {', '.join(OUTPUT_FORMATS)}")
    if output_format == "dng" and profile.look is not None:
        raise Raw2RgbError(
            f"profile {profile.name!r} carries a look table (tone curves + 3D LUT) for finished images, "
            "which an editable DNG must not hold", "use --format tiff with it, or a scene-linear profile for DNG")
    if output_format == "dng" and not profile.scene_linear:
        raise Raw2RgbError(
            f"profile {profile.name!r} renders a finished display image (tone curve, clipped highlights), "
            "which an editable DNG must not hold",
            f"use a scene-linear profile: --profile {DEFAULT_DNG_PROFILE} (the default for --format dng)")
    return output_format


class RenderError(Raw2RgbError):
    """A frame that decoded but could not be rendered (out of memory, …)."""


@dataclass
class Decoded:
    frame: SensorFrame  # a Bayer or an X-Trans frame, whichever the profile renders
    metadata: PhotoMetadata
    noise: NoiseModel | None = None  # read for profiles that are told the noise, and for stuck sites
    lens: LensLookup | None = None  # looked up only when the lens is corrected
    stuck_sites: int | None = None  # hot and dead pixels replaced when rendered; None: not looked for
    notes: list[str] = field(default_factory=list)  # remarks on the rendering, for the file's result
    profile: str | None = None  # the profile that rendered it (a batch may mix sensors)


def decode(job: ConvertJob, *, with_noise: bool = False, with_lens: bool = False,
           accept: Callable[[SensorFrame], SensorFrame] | None = None) -> Decoded:
    """`job`'s file decoded, once `accept` (a converter's `renderable`; by default Bayer frames
    only) has taken its frame: a frame no profile at hand renders is refused in one line here, so
    a batch spends nothing more on it."""
    with RawFile(job.input) as raw:
        frame = (accept or renderable)(raw.mosaic_frame)
        noise = noise_model_for(frame, raw.metadata, raw.libraw) if with_noise else None
        lens = find_lens_correction(raw.metadata) if with_lens else None
        return Decoded(frame, raw.metadata, noise, lens)


def renderable(frame: SensorFrame, profile: str | None = None, cfa: str = "bayer",
               output_format: str = "tiff") -> SensorFrame:
    """`frame`, when it is of `cfa` ("bayer" or "xtrans"): what profile `profile` renders (None: the
    profile picked for the frame's sensor, of which none is installed); else `cfa_refusal`."""
    if frame.cfa_kind == cfa:
        return frame
    raise cfa_refusal(frame.cfa_kind, profile, cfa, output_format)


_KIND = {"bayer": "Bayer", "xtrans": "X-Trans"}
_A_KIND = {"bayer": "a Bayer", "xtrans": "an X-Trans"}


def cfa_refusal(frame_cfa: str, profile: str | None, profile_cfa: str, output_format: str = "tiff") -> UnsupportedRawError:
    """The one line for a file of `frame_cfa` that `profile` (of `profile_cfa`) cannot render, or,
    with `profile` None, for one of a sensor no installed profile renders: what the file is, the
    mismatch, and what to do (the profile convert would pick for it, where one is installed)."""
    what = f"{_A_KIND[frame_cfa]} RAW" + (" (Fujifilm's 6×6 colour filter array)" if frame_cfa == "xtrans" else "")
    kind = _KIND[frame_cfa]
    classical = "render it with a classical converter (darktable, RawTherapee) until raw2rgb ships one"
    display = installed_default("cpu", frame_cfa) if profile is None and output_format == "dng" else None
    if display is not None:
        return UnsupportedRawError(f"is {what}, and no scene-linear {kind} profile is installed for --format dng",
                                   f"convert it to a TIFF (without --format dng: {display} renders it), or develop "
                                   "the RAW itself in darktable or RawTherapee")
    if profile is None:
        return UnsupportedRawError(f"is {what}, and no {kind} profile is installed", classical)
    problem = f"is {what}, and profile {profile!r} renders {_KIND[profile_cfa]} sensors only"
    picked = installed_default("cpu", frame_cfa, output_format)
    if picked is not None:
        return UnsupportedRawError(problem, f"convert it with {_A_KIND[frame_cfa]} profile: --profile {picked}, "
                                            "or no --profile (convert picks one by the file's sensor)")
    return UnsupportedRawError(problem, f"no {kind} profile is installed: {classical}")


def report(decoded: Decoded) -> tuple[dict, list[str]]:
    """A converted file's `--json` details and notes: the lens correction applied, or why none;
    how many stuck sites were replaced (null with --keep-hot-pixels, or where not looked for)."""
    hot_pixels = {"hot_pixels": decoded.stuck_sites, "profile": decoded.profile}
    if decoded.lens is None:  # --lens off
        return {"lens": None, **hot_pixels}, list(decoded.notes)
    correction = decoded.lens.correction
    notes = [] if correction else [f"lens not corrected: {decoded.lens.reason}"]
    return {"lens": correction.summary() if correction else None, **hot_pixels}, notes + decoded.notes


def _capturing_libraw_stderr(results: Iterator[FileResult]) -> Iterator[FileResult]:
    """`results`, with LibRaw's stderr captured once for the whole decode pool (its lines about a
    file become that file's notes or reasons; see io/libraw)."""
    with libraw_stderr():
        yield from results


class Converter:
    """A profile's model resident on a device, ready to render frames."""

    def __init__(
        self,
        profile: Profile,
        *,
        device: str | torch.device = "auto",
        tile: int | None = None,
        overlap: int = DEFAULT_OVERLAP,
        dtype: torch.dtype | None = None,
        threads: int | None = None,
        denoise: float = 1.0,
        output_format: str = "tiff",
        lens: str | None = None,
        keep_hot_pixels: bool = False,
        by_cfa: Mapping[str, Callable[[], Profile]] | None = None,
    ):
        self.denoise = check_denoise(denoise)
        self.profile = profile
        self.output_format = check_output_format(output_format, profile)
        options = ConvertOptions(output_format=self.output_format, lens=lens)
        options.check()
        #: whether frames are lens-corrected (`--lens`; auto for TIFF, off for DNG)
        self.corrects_lens = options.corrects_lens
        #: whether stuck sites are replaced before the network (all formats: a defect either way)
        self.repairs_stuck_sites = not keep_hot_pixels
        self.device = device if isinstance(device, torch.device) else choose_device(device)
        self.threads = bound_cpu_threads(threads) if self.device.type == "cpu" else None
        # After the threads: on a CPU the precision is measured with them (once per machine, cached).
        self.runner: Runner = build_runner(profile.model, profile.architecture, device=self.device, dtype=dtype,
                                           tile=tile, overlap=overlap, architecture_block=profile.metadata["architecture"])
        self.dtype = self.runner.dtype
        self.look = profile.look.to(self.device) if profile.look is not None else None
        # A scene-linear profile's TIFF is linear sRGB: it gets the linear-sRGB ICC profile.
        self.icc = icc_profile_bytes("srgb-linear" if self.scene_linear else profile.output_color_space)
        self.software = f"raw2rgb {__version__} (profile {profile.name})"
        #: how to load the profile picked for a file of another sensor ("xtrans": …), when the
        #: profile was not named; None: this profile's sensor only (a named profile)
        self.by_cfa = None if by_cfa is None else dict(by_cfa)
        self._companions: dict[str, Converter] = {}
        self._settings: dict[str, Any] = dict(device=self.device, tile=tile, overlap=overlap, dtype=dtype, threads=threads,
                              denoise=denoise, output_format=output_format, lens=lens, keep_hot_pixels=keep_hot_pixels)

    @property
    def scene_linear(self) -> bool:
        """Whether the profile renders scene-linear light (for DNG / linear TIFF), not a display image."""
        return self.profile.scene_linear

    def tiff_writer(self, *, compress: bool = False) -> TiffWriter:
        return TiffWriter(icc=self.icc, software=self.software, compress=compress)

    def writer(self, *, compress: bool = False) -> Writer:
        """The writer of this converter's `output_format`."""
        return DngWriter(software=self.software) if self.output_format == "dng" else self.tiff_writer(compress=compress)

    @property
    def reads_noise(self) -> bool:
        """Whether the profile's network is told each frame's noise (a noise-conditioned G1)."""
        return self.profile.reads_noise

    def renderable(self, frame: SensorFrame) -> SensorFrame:
        """`frame`, when this converter renders its sensor (its profile's, or one it picks a profile
        for); otherwise `UnsupportedRawError`, one line naming the mismatch and what to do."""
        if frame.cfa_kind == self.profile.cfa or (self.by_cfa is not None and frame.cfa_kind in self.by_cfa):
            return frame
        # A named profile is named in the line; a picking converter found none installed for the sensor.
        raise cfa_refusal(frame.cfa_kind, self.profile.name if self.by_cfa is None else None, self.profile.cfa,
                          self.output_format)

    def for_frame(self, frame: SensorFrame) -> Converter:
        """The converter that renders `frame`: this one, or the one of the profile picked for its
        sensor, built once when the first such frame comes (with this one's settings)."""
        cfa = frame.cfa_kind
        if cfa == self.profile.cfa:
            return self
        if cfa not in self._companions:
            if self.by_cfa is None or cfa not in self.by_cfa:
                raise cfa_refusal(cfa, self.profile.name, self.profile.cfa, self.output_format)
            profile = self.by_cfa[cfa]()
            if profile.cfa != cfa:  # a user profile named like a default, for the other sensor
                raise ProfileError(f"the profile picked for {_KIND[cfa]} files, {profile.path}, renders "
                                   f"{_KIND[profile.cfa]} sensors only",
                                   f"rename or remove it, or name {_A_KIND[cfa]} profile with --profile")
            self._companions[cfa] = Converter(profile, **self._settings)
        return self._companions[cfa]

    def _writer_for(self, frame: SensorFrame, out: Writer) -> Writer:
        """`out`, or for a frame a picked profile renders, `out` naming that profile (and its ICC)."""
        if frame.cfa_kind == self.profile.cfa:
            return out
        rendered_by = self.for_frame(frame)
        if isinstance(out, TiffWriter):
            return dataclasses.replace(out, icc=rendered_by.icc, software=rendered_by.software)
        if isinstance(out, DngWriter):
            return dataclasses.replace(out, software=rendered_by.software)
        return out

    def render(self, frame: SensorFrame, *, half_size: bool = False, noise: NoiseModel | None = None,
               lens: LensCorrection | None = None) -> np.ndarray:
        """Full-resolution (or half-size) oriented RGB of `frame` as uint16 (H, W, 3).

        A noise-conditioned profile is told `noise` (estimated from the frame when not given),
        scaled by the converter's `denoise` strength; stuck sites are judged with it too. `lens`
        is corrected: its vignetting on the mosaic before the network, its distortion and lateral
        CA on the image after it. A frame of another CFA than the profile's (an X-Trans frame and a
        Bayer profile, or the reverse) raises `UnsupportedRawError`.
        """
        frame = self.renderable(frame)
        return self.for_frame(frame)._render(frame, half_size=half_size, noise=noise, lens=lens)[0]

    @torch.inference_mode()
    def _render(self, frame: SensorFrame, *, half_size: bool, noise: NoiseModel | None,
                lens: LensCorrection | None) -> tuple[np.ndarray, int | None]:
        """`render`'s pixels, and how many stuck sites were replaced (None: not looked for)."""
        if (self.reads_noise or self.repairs_stuck_sites) and noise is None:
            noise = noise_model_for(frame)
        vignetting = None if lens is None else vignetting_gain(lens, frame.height, frame.width)
        net_in = network_input(frame, self.profile.input_normalization, self.device,
                               noise=noise if self.reads_noise else None, strength=self.denoise,
                               vignetting=vignetting,
                               stuck_sites=StuckSites(noise) if self.repairs_stuck_sites else None)
        rgb = self.runner.run(net_in.packed)
        # Min and max propagate NaN and show ±inf: 6 ms per 12 MP where isfinite().all() took
        # 218 ms (one thread, EPYC), the largest pass of the render outside G1's convolutions.
        if not bool(torch.isfinite(torch.stack(torch.aminmax(rgb))).all()):
            # Broken weights (a diverged run, a damaged file) would otherwise clamp to black.
            raise RenderError("the network's output is not finite (NaN or infinity)",
                              f"profile {self.profile.name!r} is broken; re-export it or use another profile")
        pixels = network_output(rgb, frame, net_in.padding, half_size=half_size, scene_linear=self.scene_linear,
                                sensor_orientation=self.output_format == "dng", lens=lens, look=self.look,
                                network_space=self.profile.network_space)
        return pixels, net_in.stuck_sites

    def _render_stage(self, decoded: Decoded, half_size: bool) -> np.ndarray:
        lens = decoded.lens.correction if decoded.lens is not None else None
        decoded.profile = self.profile.name
        try:
            pixels, decoded.stuck_sites = self._render(decoded.frame, half_size=half_size, noise=decoded.noise, lens=lens)
            return pixels
        except torch.cuda.OutOfMemoryError:
            raise RenderError("the GPU ran out of memory", "use a smaller --tile (e.g. 512) or --device cpu") from None
        except RuntimeError as exc:  # e.g. the CPU allocator failing on a huge frame
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RenderError(f"rendering failed ({reason})", "try a smaller --tile, e.g. --tile 512") from None

    def stream(
        self,
        jobs: Iterable[ConvertJob],
        *,
        writer: Writer | None = None,
        options: ConvertOptions = ConvertOptions(),
        on_event: EventCallback | None = None,
    ) -> Iterator[FileResult]:
        """Convert `jobs` (any iterable, consumed lazily); yield each result as its file finishes.

        Of `options`, the batch's own settings apply here (overwrite, half size, decode workers);
        the rest (device, tiles, denoise, format) were fixed when the converter was built.
        """
        overwrite, half_size = options.overwrite, options.half_size
        out = writer or self.writer()
        if out.sensor_oriented != (self.output_format == "dng"):
            raise ValueError(f"a {out.suffix} writer does not take this converter's {self.output_format} rendering")
        stages: Stages[Decoded] = Stages(
            # A picked profile may read the noise where this one does not: read it for them too.
            decode=lambda job: decode(job, with_noise=self.reads_noise or self.repairs_stuck_sites or bool(self.by_cfa),
                                      with_lens=self.corrects_lens, accept=self.renderable),
            render=lambda decoded: self.for_frame(decoded.frame)._render_stage(decoded, half_size),
            write=lambda job, pixels, decoded: self._writer_for(decoded.frame, out).write(
                job.output, pixels, decoded.metadata, overwrite=overwrite, frame=decoded.frame),
            report=report,
        )
        return _capturing_libraw_stderr(
            schedule(jobs, stages, overwrite=overwrite, decode_workers=options.decode_workers, on_event=on_event))

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
        """`stream` to this converter's format, collected in the order of `jobs`."""
        jobs = list(jobs)
        options = ConvertOptions(overwrite=overwrite, half_size=half_size, decode_workers=decode_workers)
        writer = self.writer(compress=compress)
        return in_job_order(jobs, lambda events: self.stream(jobs, writer=writer, options=options, on_event=events),
                            on_event)
