"""`raw2rgb convert`: batch RAW → 16-bit TIFF through a profile's model."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from raw2rgb_plugin.engine.options import ConvertOptions
from raw2rgb_plugin.runtime.settings import DEVICE_HELP

from .console import err, error_line, print_json, progress_bar

DEFAULT_PROFILE_HELP = "default on a GPU, default-lite on a CPU"
D = ConvertOptions  # defaults live with the engine's options, not here


def convert(
    inputs: list[str] = typer.Argument(..., help="RAW files, folders or glob patterns.", show_default=False),
    output_dir: Path | None = typer.Option(None, "--output-dir", "-o", help="Folder for the TIFFs (default: beside each input).", file_okay=False),
    profile: str | None = typer.Option(None, "--profile", "-p", help=f"Profile name or .safetensors path (default: {DEFAULT_PROFILE_HELP})."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    tile: int | None = typer.Option(D.tile, "--tile", help="Tile size in packed pixels; 0 = whole frame (default: the whole frame when memory allows)."),
    overlap: int = typer.Option(D.overlap, "--overlap", help="Tile overlap in packed pixels."),
    denoise: float = typer.Option(D.denoise, "--denoise", help="Denoising strength of a noise-aware profile, 0 (keep all detail and grain) to 2 (strong); it scales the noise level the network is told."),
    half_size: bool = typer.Option(D.half_size, "--half-size", help="Write at half sensor resolution (the packed grid)."),
    compress: bool = typer.Option(D.compress, "--compress", help="Deflate-compress the TIFF (smaller, slower to write)."),
    overwrite: bool = typer.Option(D.overwrite, "--overwrite/--skip-existing", help="Replace existing TIFFs, or skip them."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Look into sub-folders of folder inputs."),
    jobs: int = typer.Option(D.decode_workers, "--jobs", "-j", min=1, help="RAW decoding threads."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary; errors only."),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Convert camera RAW files to full-resolution 16-bit TIFFs with ICC profile and EXIF."""
    from raw2rgb_plugin.engine.converter import Converter
    from raw2rgb_plugin.engine.plan import expand_inputs, plan_jobs
    from raw2rgb_plugin.errors import Raw2RgbError
    from raw2rgb_plugin.profiles.store import default_profile_name, load_profile
    from raw2rgb_plugin.runtime.device import choose_device

    started = time.perf_counter()
    options = ConvertOptions(tile=tile, overlap=overlap, half_size=half_size, compress=compress,
                             overwrite=overwrite, decode_workers=jobs, denoise=denoise)
    paths, problems = expand_inputs(inputs, recursive=recursive)
    for problem in problems:
        error_line(problem.argument, problem.problem)

    try:
        options.check()
        if output_dir is not None:
            output_dir.mkdir(parents=True, exist_ok=True)
        plan = plan_jobs(paths, output_dir)
        torch_device = choose_device(device)
        converter = Converter(
            load_profile(profile or default_profile_name(torch_device.type)),
            device=torch_device, tile=options.tile, overlap=options.overlap, denoise=options.denoise,
        )
    except Raw2RgbError as exc:
        error_line("raw2rgb", str(exc))
        raise typer.Exit(2)

    for path, message in plan.refused:
        error_line(str(path), message)

    if not quiet:
        err.print(
            f"profile [bold]{escape(converter.profile.name)}[/bold] ({converter.profile.variant}, "
            f"{converter.profile.input_normalization}) on {converter.device.type}"
            f" ({str(converter.dtype).removeprefix('torch.')})"
        )
    results = _run_with_progress(converter, plan.jobs, options, quiet=quiet, started=started)
    refused = [(str(p), m) for p, m in plan.refused] + [(p.argument, p.problem) for p in problems]
    _report(results, refused, quiet=quiet, json_output=json_output, converter=converter,
            elapsed=time.perf_counter() - started)


def _run_with_progress(converter, jobs_list, options: ConvertOptions, *, quiet: bool, started: float) -> list:
    from raw2rgb_plugin.engine.jobs import DoneEvent, Event, StageEvent

    lock = threading.Lock()
    progress = progress_bar(quiet=quiet, rate_field="{task.fields[rate]}", detail_field="{task.fields[current]}")
    task = progress.add_task("converting", total=len(jobs_list), rate="", current="")

    def on_event(event: Event) -> None:
        with lock:
            if isinstance(event, StageEvent):
                progress.update(task, current=escape(f"{event.job.input.name}: {event.stage}"))
            elif isinstance(event, DoneEvent):
                result = event.result
                if result.status == "failed" and not quiet:
                    progress.console.print(
                        f"[red]error[/red]: {escape(str(event.job.input))}: {escape(result.error or 'failed')}", soft_wrap=True
                    )
                done = progress.tasks[task].completed + 1
                elapsed = time.perf_counter() - started
                progress.update(task, advance=1, rate=f"{done / elapsed:.2f} files/s" if elapsed else "")

    with progress:
        results = converter.convert(
            jobs_list, overwrite=options.overwrite, compress=options.compress, half_size=options.half_size,
            decode_workers=options.decode_workers, on_event=on_event,
        )
        progress.update(task, current="")
    if quiet:
        for result in results:
            if result.status == "failed":
                error_line(str(result.input), result.error or "failed")
    return results


def _report(results: list, refused: list[tuple[str, str]], *, quiet: bool, json_output: bool, converter, elapsed: float) -> None:
    converted = [r for r in results if r.status == "converted"]
    skipped = [r for r in results if r.status == "skipped"]
    failed = [r for r in results if r.status == "failed"]
    failed_count = len(failed) + len(refused)

    if not quiet:
        table = Table(title="raw2rgb convert", show_edge=False, title_justify="left")
        table.add_column("status")
        table.add_column("files", justify="right")
        table.add_column("details")
        table.add_row("[green]converted", str(len(converted)), f"{elapsed:.1f} s in all, {len(converted) / elapsed:.2f} files/s")
        table.add_row("[yellow]skipped", str(len(skipped)), "output exists (--overwrite replaces it)" if skipped else "")
        table.add_row("[red]failed", str(failed_count), "")
        reasons = [(r.input.name, r.error or "") for r in failed] + [(Path(name).name, m) for name, m in refused]
        for name, reason in reasons:
            table.add_row("", "", f"[red]✗[/red] {escape(name)}: {escape(reason)}")
        err.print(table)

    if json_output:
        print_json(
            {
                "profile": converter.profile.name,
                "device": converter.device.type,
                "dtype": str(converter.dtype).removeprefix("torch."),
                "denoise": converter.denoise if converter.reads_noise else None,
                "converted": len(converted),
                "skipped": len(skipped),
                "failed": failed_count,
                "seconds": round(elapsed, 3),
                "files": [r.to_dict() for r in results]
                + [{"input": name, "output": None, "status": "failed", "error": m} for name, m in refused],
            }
        )
    if failed_count or not (results or refused):
        if not (results or refused):
            error_line("raw2rgb", "nothing to convert — pass RAW files or folders")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
