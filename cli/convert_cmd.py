"""`raw2rgb convert`: batch RAW → 16-bit TIFF (or editable linear DNG) through a profile's model."""

from __future__ import annotations

import gc
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from raw2rgb_plugin.engine.options import DEFAULT_DNG_PROFILE, ConvertOptions
from raw2rgb_plugin.runtime.settings import DEVICE_HELP, check_device_name
from raw2rgb_plugin.vocabulary import DENOISE_RANGE

from .console import err, error_line, fail, note_line, print_json, progress_bar, shown

DEFAULT_PROFILE_HELP = ("default on a GPU, default-lite on a CPU, either one falling back to the other when it is not "
                        "installed; for X-Trans files xtrans / xtrans-lite likewise, where installed")
DEFAULTS = ConvertOptions  # defaults live with the engine's options, not here


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the files in flight are finished or cleaned up."""


def convert(
    inputs: list[str] = typer.Argument(..., help="RAW files, folders or glob patterns.", show_default=False),
    output_dir: Path | None = typer.Option(None, "--output-dir", "-o", help="Folder for the outputs (default: beside each input).", file_okay=False),
    output_format: str = typer.Option(DEFAULTS.output_format, "--format", "-f", help="tiff: a finished 16-bit image; dng: an editable linear DNG (demosaiced and denoised, camera RGB, white balance still editable) from a scene-linear profile."),
    profile: str | None = typer.Option(None, "--profile", "-p", help=f"Profile name or .safetensors path (default: {DEFAULT_PROFILE_HELP}; {DEFAULT_DNG_PROFILE} with --format dng, xtrans-develop-lite for X-Trans files where installed). A profile renders one kind of sensor (Bayer or X-Trans): a named one refuses files of the other kind."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    devices: str | None = typer.Option(None, "--devices", help="Several devices at once, e.g. cuda:0,cuda:1: one converter per device, all taking files from one queue."),
    shard_text: str | None = typer.Option(None, "--shard", help="K/N: convert only the K-th of N deterministic shares of the inputs (one per machine: SLURM arrays, Kubernetes indexed jobs)."),
    tile: int | None = typer.Option(DEFAULTS.tile, "--tile", help="Tile size in packed pixels; 0 = whole frame (default: the whole frame when memory allows)."),
    overlap: int = typer.Option(DEFAULTS.overlap, "--overlap", help="Tile overlap in packed pixels."),
    denoise: float = typer.Option(DEFAULTS.denoise, "--denoise", help=f"Denoising strength of a noise-aware profile, {DENOISE_RANGE[0]:g} (keep all detail and grain) to {DENOISE_RANGE[1]:g} (strong); it scales the noise level the network is told."),
    lens: str | None = typer.Option(None, "--lens", help="auto: correct the lens's distortion, vignetting and lateral colour fringes from lensfun's database (by the file's camera, lens, focal length, aperture and distance); off: leave them. Default: auto for TIFF, off for DNG (its editor corrects the lens from the data it keeps).", show_default=False),
    keep_hot_pixels: bool = typer.Option(DEFAULTS.keep_hot_pixels, "--keep-hot-pixels", help="Leave hot and dead pixels (isolated stuck sensor sites) as recorded; by default they are replaced from their neighbours before the network, and --json counts them per file."),
    half_size: bool = typer.Option(DEFAULTS.half_size, "--half-size", help="Write at half sensor resolution (the packed grid)."),
    compress: bool = typer.Option(DEFAULTS.compress, "--compress", help="Deflate-compress the TIFF (smaller, slower to write)."),
    overwrite: bool = typer.Option(DEFAULTS.overwrite, "--overwrite/--skip-existing", help="Replace existing outputs, or skip them."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Look into sub-folders of folder inputs."),
    jobs: int = typer.Option(DEFAULTS.decode_workers, "--jobs", "-j", min=1, help="RAW decoding threads."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary; errors only."),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Convert camera RAW files to full-resolution 16-bit TIFFs with ICC profile and EXIF, or to editable linear DNGs."""
    from raw2rgb_plugin.engine.plan import expand_inputs, parse_shard, plan_jobs, shard
    from raw2rgb_plugin.engine.scheduler import precheck
    from raw2rgb_plugin.errors import Raw2RgbError
    from raw2rgb_plugin.profiles.catalog import DEFAULT_PROFILES, resolve_profile_path

    started = time.perf_counter()
    options = ConvertOptions(tile=tile, overlap=overlap, half_size=half_size, compress=compress,
                             overwrite=overwrite, decode_workers=jobs, denoise=denoise, output_format=output_format,
                             lens=lens, keep_hot_pixels=keep_hot_pixels)
    paths, problems = expand_inputs(inputs, recursive=recursive)
    for problem in problems:
        error_line(problem.argument, problem.problem)

    # Everything that can be checked without torch is, before anything is loaded.
    try:
        options.check()
        device_names = [d.strip() for d in devices.split(",") if d.strip()] if devices else [device]
        for name in device_names:
            check_device_name(name)
        if shard_text is not None:
            paths = shard(paths, *parse_shard(shard_text))
        if profile is not None and profile not in DEFAULT_PROFILES:
            resolve_profile_path(profile)
        if output_dir is not None:
            _make_output_dir(output_dir)
        plan = plan_jobs(paths, output_dir, suffix=".dng" if output_format == "dng" else ".tif")
    except Raw2RgbError as exc:
        fail("raw2rgb", str(exc), json_output=json_output)

    for path, message in plan.refused:
        error_line(str(path), message)
    refused = [(str(p), m) for p, m in plan.refused] + [(p.argument, p.problem) for p in problems]

    ready = [precheck(job, overwrite=options.overwrite) for job in plan.jobs]
    converter = None
    interrupted: str | None = None
    if all(result is not None for result in ready):
        # Nothing to render (every output exists, or there is no job): no model, no progress bar.
        results = [result for result in ready if result is not None]
        for result in results:
            if result.status == "failed":
                error_line(str(result.input), result.error or "failed")
    else:
        try:
            with _collector_paused_for_imports():
                converters = [_load_converter(profile, name, options) for name in device_names]
            converter = converters[0]
        except Raw2RgbError as exc:
            fail("raw2rgb", str(exc), json_output=json_output)
        if not quiet:
            err.print(
                f"profile [bold]{escape(converter.profile.name)}[/bold] ({converter.profile.variant}, "
                f"{converter.profile.input_normalization}) on {converter.device.type}"
                f" ({str(converter.dtype).removeprefix('torch.')})"
            )
        results, interrupted = _run_with_progress(converters, plan.jobs, options, quiet=quiet, started=started)
    _report(results, refused, quiet=quiet, json_output=json_output, converter=converter,
            elapsed=time.perf_counter() - started, total=len(plan.jobs), interrupted=interrupted)


@contextmanager
def _collector_paused_for_imports() -> Iterator[None]:
    """Import torch and load the model with Python's cyclic garbage collector paused, then freeze
    what that made.

    Importing torch and the engine makes ~180k objects that live as long as the process (modules,
    classes, functions), and only ~7k unreachable ones. The collector walked them over and over
    during the import (0.15-0.2 s of torch's 1.6 s) and once more when the interpreter exits (0.45
    of the 0.6 s a process that imported torch takes to end; measured on a busy 2-core EPYC).
    `gc.freeze` moves them to the permanent generation, which no later collection visits; the few
    unreachable ones stay allocated until exit. Only where torch is not loaded yet: a process that
    holds it already (a test run, a host calling `app` in-process) keeps its collector untouched.
    """
    if "torch" in sys.modules:
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def _make_output_dir(folder: Path) -> None:
    from raw2rgb_plugin.errors import OutputError

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"cannot create the output folder {folder}: a file of that name exists",
                          "choose another -o folder") from None
    except OSError as exc:
        raise OutputError(f"cannot create the output folder {folder} ({exc.strerror or exc})",
                          "choose a folder you can write to with -o") from None


def _load_converter(profile: str | None, device: str, options: ConvertOptions):
    """The converter for `profile` on `device`; `default`/`default-lite` fall back to each other.
    Without `profile`, files of another sensor (X-Trans) get the profile installed for it."""
    from raw2rgb_plugin.engine.converter import Converter
    from raw2rgb_plugin.profiles.catalog import DEFAULT_PROFILES, default_profile_name, installed_names
    from raw2rgb_plugin.profiles.store import load_profile
    from raw2rgb_plugin.runtime.device import choose_device

    torch_device = choose_device(device)
    settings: dict[str, Any] = dict(
        device=torch_device, tile=options.tile, overlap=options.overlap, denoise=options.denoise,
        output_format=options.output_format, lens=options.lens, keep_hot_pixels=options.keep_hot_pixels,
        by_cfa=None if profile else _picked_by_cfa(torch_device.type, options.output_format))
    if options.output_format == "dng":  # a DNG needs a scene-linear profile: not the display defaults
        return Converter(load_profile(profile or DEFAULT_DNG_PROFILE), **settings)
    name = profile or default_profile_name(torch_device.type)
    if profile in DEFAULT_PROFILES and profile not in installed_names():
        name = default_profile_name(torch_device.type)
        note_line(f"no profile named {profile!r} is installed (installed: {', '.join(installed_names())}); "
                  f"using {name!r}, as convert does without --profile")
    return Converter(load_profile(name), **settings)


def _picked_by_cfa(device_type: str, output_format: str) -> dict:
    """Loaders of the profiles `convert` picks for the sensors its default does not render (today
    X-Trans), where one is installed; the converter loads one when its first such file comes."""
    from functools import partial

    from raw2rgb_plugin.profiles.catalog import installed_default
    from raw2rgb_plugin.profiles.store import load_profile

    picked = {"xtrans": installed_default(device_type, "xtrans", output_format)}
    return {cfa: partial(load_profile, name) for cfa, name in picked.items() if name is not None}


def _run_with_progress(converters: list, jobs_list, options: ConvertOptions, *, quiet: bool,
                       started: float) -> tuple[list, str | None]:
    """Every job's result in job order, and None; or, when stopped by Ctrl-C or SIGTERM, the
    results of the files finished so far and how it was stopped."""
    from raw2rgb_plugin.engine.jobs import DoneEvent, Event, StageEvent

    lock = threading.Lock()
    finished: list = []
    progress = progress_bar(quiet=quiet, rate_field="{task.fields[rate]}", detail_field="{task.fields[current]}")
    task = progress.add_task("converting", total=len(jobs_list), rate="", current="")

    def on_event(event: Event) -> None:
        with lock:
            if isinstance(event, StageEvent):
                progress.update(task, current=escape(shown(f"{event.job.input.name}: {event.stage}")))
            elif isinstance(event, DoneEvent):
                result = event.result
                finished.append(result)
                if result.status == "failed":
                    progress.console.print(
                        f"[red]error[/red]: {escape(shown(event.job.input))}: {escape(shown(result.error or 'failed'))}",
                        soft_wrap=True,
                    )
                for note in [] if quiet else result.notes:  # remarks, not errors: --quiet hides them
                    progress.console.print(f"[dim]note[/dim]: {escape(shown(event.job.input.name))}: {escape(shown(note))}",
                                           soft_wrap=True)
                done = progress.tasks[task].completed + 1
                elapsed = time.perf_counter() - started
                progress.update(task, advance=1, rate=f"{done / elapsed:.2f} files/s" if elapsed else "")

    def on_sigterm(signum, frame) -> None:
        raise _Terminated

    try:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread (embedded use): keep the default behaviour
        previous = None
    try:
        with progress:
            results = _convert_on(converters, jobs_list, options, on_event)
            progress.update(task, current="")
    except KeyboardInterrupt as stop:
        with lock:
            return list(finished), ("SIGTERM" if isinstance(stop, _Terminated) else "Ctrl-C")
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return results, None


def _convert_on(converters: list, jobs_list: list, options: ConvertOptions, on_event) -> list:
    """Every job's result in job order, on one device or on several at once."""
    from raw2rgb_plugin.engine.fanout import stream_on_devices
    from raw2rgb_plugin.engine.scheduler import in_job_order

    writer = converters[0].writer(compress=options.compress)
    return in_job_order(jobs_list, lambda events: stream_on_devices(
        converters, jobs_list, writer=writer, options=options, on_event=events), on_event)


def _report(results: list, refused: list[tuple[str, str]], *, quiet: bool, json_output: bool, converter,
            elapsed: float, total: int, interrupted: str | None) -> None:
    converted = [r for r in results if r.status == "converted"]
    skipped = [r for r in results if r.status == "skipped"]
    failed = [r for r in results if r.status == "failed"]
    failed_count = len(failed) + len(refused)

    if interrupted:
        # One line whatever --quiet says: the run did not do what it was asked.
        err.print(
            f"[yellow]interrupted[/yellow] ({interrupted}): {len(results)} of {total} files finished "
            f"({len(converted)} converted, {len(skipped)} skipped, {len(failed)} failed); run the same command "
            "again to continue — finished files are skipped", soft_wrap=True,
        )
    elif not quiet and results:
        table = Table(title="raw2rgb convert", show_edge=False, title_justify="left")
        table.add_column("status")
        table.add_column("files", justify="right")
        table.add_column("details")
        rate = f", {len(converted) / elapsed:.2f} files/s" if converted and elapsed else ""
        table.add_row("[green]converted", str(len(converted)), f"{elapsed:.1f} s in all{rate}")
        table.add_row("[yellow]skipped", str(len(skipped)), "output exists (--overwrite replaces it)" if skipped else "")
        table.add_row("[red]failed", str(failed_count), "")
        reasons = [(r.input.name, r.error or "") for r in failed] + [(Path(name).name, m) for name, m in refused]
        for name, reason in reasons:
            table.add_row("", "", f"[red]✗[/red] {escape(shown(name))}: {escape(shown(reason))}")
        err.print(table)

    if json_output:
        print_json(
            {
                "profile": converter.profile.name if converter else None,
                "device": converter.device.type if converter else None,
                "dtype": str(converter.dtype).removeprefix("torch.") if converter else None,
                "denoise": converter.denoise if converter and converter.reads_noise else None,
                "converted": len(converted),
                "skipped": len(skipped),
                "failed": failed_count,
                "interrupted": interrupted is not None,
                "seconds": round(elapsed, 3),
                "files": [r.to_dict() for r in results]
                + [{"input": name, "output": None, "status": "failed", "error": m} for name, m in refused],
            }
        )
    if interrupted:
        raise typer.Exit(143 if interrupted == "SIGTERM" else 130)
    if failed_count or not (results or refused):
        if not (results or refused):
            error_line("raw2rgb", "nothing to convert — pass RAW files or folders")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
