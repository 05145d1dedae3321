"""`raw2rgb dataset build|synth`: training datasets from photo pairs or from sRGB images."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from .console import err, error_line, fail, print_json, progress_bar

if TYPE_CHECKING:
    from rich.progress import Progress

dataset_app = typer.Typer(help="Build training datasets: real RAW/RGB pairs or synthetic pairs.", no_args_is_help=True)

_SALIENCY_HELP = "builtin (weight-free estimator), a folder of maps named like the targets, or torchscript:PATH."


def _progress(quiet: bool, label: str) -> tuple[Progress, Callable[[str, dict], None]]:
    progress = progress_bar(quiet=quiet, rate_field="{task.fields[patches]} patches", detail_field="{task.fields[current]}")
    task = progress.add_task(label, total=None, patches=0, current="")
    lock = threading.Lock()

    def on_event(kind: str, data: dict) -> None:
        with lock:
            if kind == "start":
                progress.update(task, total=data["pairs"])
            elif kind == "pair":
                patches = progress.tasks[task].fields["patches"] + int(data.get("count") or 0)
                note = "resumed" if data.get("resumed") else (data.get("reason") or "")
                if data.get("status") != "kept" and not data.get("resumed") and not quiet:
                    progress.console.print(f"[yellow]dropped[/yellow] {escape(data['name'])}: {escape(note)}", soft_wrap=True)
                progress.update(task, advance=1, patches=patches, current=escape(f"{data['name']} {note}".strip()))
            elif kind == "done":
                progress.update(task, current="")

    return progress, on_event


def _summary(report: dict, seconds: float, quiet: bool, json_output: bool) -> None:
    counts = report["counts"]
    if not quiet:
        table = Table(title=f"raw2rgb dataset → {report['dataset']}", show_edge=False, title_justify="left")
        table.add_column("")
        table.add_column("count", justify="right")
        table.add_column("details")
        table.add_row("[green]pairs kept", str(counts["pairs_kept"]), f"of {counts['pairs']}; {seconds:.1f} s")
        for reason, n in counts["pairs_dropped"].items():
            table.add_row("[red]pairs dropped", str(n), escape(str(reason)))
        table.add_row("[green]patches", str(counts["patches"]),
                      f"train {counts['train']} ({counts['scenes']['train']} scenes), val {counts['val']} ({counts['scenes']['val']} scenes)")
        if counts.get("patches_unverified"):
            table.add_row("[yellow]unverified", str(counts["patches_unverified"]), "kept: too little structure to check alignment")
        for reason, n in counts["patches_dropped"].items():
            table.add_row("[red]patches dropped", str(n), escape(reason))
        unmatched = report.get("unmatched") or {}
        for key, label in (("raw_without_rgb", "RAW without RGB"), ("rgb_without_raw", "RGB without RAW")):
            if unmatched.get(key):
                shown = ", ".join(unmatched[key][:5]) + (" …" if len(unmatched[key]) > 5 else "")
                table.add_row(f"[yellow]{label}", str(len(unmatched[key])), escape(shown))
        err.print(table)
        err.print(f"report: {escape(str(Path(report['dataset']) / 'report.json'))}, previews in {escape(str(Path(report['dataset']) / 'previews'))}")
    if json_output:
        print_json({"seconds": round(seconds, 3), **report})


@dataset_app.command("build")
def build(
    raw_dir: Path = typer.Argument(..., help="Folder of RAW files.", exists=True, file_okay=False, show_default=False),
    rgb_dir: Path = typer.Argument(..., help="Folder of target images (PNG, JPEG, TIFF) named like the RAWs.", exists=True, file_okay=False, show_default=False),
    output: Path = typer.Option(..., "--output", "-o", help="Dataset folder (created, or resumed if it exists).", file_okay=False),
    manifest: Path | None = typer.Option(None, "--manifest", help="CSV with columns raw,rgb[,scene] instead of matching by name.", dir_okay=False),
    input_normalization: str = typer.Option("linear-srgb", "--input-normalization", help="raw, wb, wb+ccm or linear-srgb (the last two: one profile for every camera)."),
    patch_size: int = typer.Option(224, "--patch-size", help="Patch size in packed pixels (×2 sensor pixels); a multiple of 8."),
    stride: int | None = typer.Option(None, "--stride", help="Step between patches in packed pixels (default: the patch size)."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Share of scenes held out for validation."),
    align: str = typer.Option("auto", "--align", help="auto, homography (other camera), crop (same camera) or none (already aligned)."),
    min_pair_score: float = typer.Option(0.3, "--min-pair-score", help="Drop a pair whose overall alignment score is below this."),
    min_patch_score: float = typer.Option(0.5, "--min-patch-score", help="Drop a patch whose alignment score is below this."),
    max_patch_shift: float = typer.Option(2.0, "--max-patch-shift", help="Drop a patch still displaced by more than this many sensor pixels."),
    saliency: str = typer.Option("builtin", "--saliency", help=_SALIENCY_HELP),
    trust_torchscript: bool = typer.Option(False, "--trust-torchscript", help="Allow loading a TorchScript saliency model (it runs code from the file)."),
    previews: int = typer.Option(4, "--previews", help="Side-by-side preview PNGs to write."),
    seed: int = typer.Option(0, "--seed", help="Seed of the scene split."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Pairs processed at once (threads)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary; errors only."),
    json_output: bool = typer.Option(False, "--json", help="Print the JSON report on stdout."),
) -> None:
    """Align RAW/RGB pairs and store patches for `raw2rgb train` (resumable)."""
    from raw2rgb_plugin.errors import Raw2RgbError
    from raw2rgb_plugin.training.data.build import BuildOptions, build_dataset
    from raw2rgb_plugin.training.data.sources import pair_source

    started = time.perf_counter()
    options = BuildOptions(
        patch_size=patch_size, stride=stride, input_normalization=input_normalization, val_fraction=val_fraction,
        align=align, saliency=saliency, trust_torchscript=trust_torchscript, min_pair_score=min_pair_score,
        min_patch_score=min_patch_score, max_patch_shift=max_patch_shift, previews=previews, jobs=jobs, seed=seed,
    )
    progress, on_event = _progress(quiet, "pairs")
    try:
        options.check()
        source = pair_source(raw_dir, rgb_dir, manifest)
        with progress:
            report = build_dataset(source, output, options, progress=on_event)
    except Raw2RgbError as exc:
        fail("raw2rgb dataset build", str(exc), json_output=json_output)
    _summary(report, time.perf_counter() - started, quiet, json_output)
    if report["counts"]["patches"] == 0:
        error_line("raw2rgb dataset build", "no patch was kept — see report.json and the previews for why")
        raise typer.Exit(1)


@dataset_app.command("synth")
def synth(
    rgb_dir: Path = typer.Argument(..., help="Folder of sRGB images (PNG, JPEG, TIFF; searched recursively).", exists=True, file_okay=False, show_default=False),
    output: Path = typer.Option(..., "--output", "-o", help="Dataset folder (created, or resumed if it exists).", file_okay=False),
    patches_per_image: int = typer.Option(8, "--patches-per-image", min=1, help="Random patches cut from each copy of an image."),
    cameras_per_image: int = typer.Option(1, "--cameras-per-image", min=1, help="Copies of each image, each unprocessed with its own random camera."),
    patch_size: int = typer.Option(224, "--patch-size", help="Patch size in packed pixels (×2 sensor pixels); a multiple of 8."),
    noise: bool = typer.Option(True, "--noise/--no-noise", help="Add shot and read noise (Brooks et al. ranges)."),
    tone_curve: bool = typer.Option(True, "--tone-curve/--no-tone-curve", help="Invert a generic tone curve before the sRGB decode."),
    seed: int = typer.Option(0, "--seed", help="Seed of cameras, noise, patch positions and split."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Share of images held out for validation."),
    input_normalization: str = typer.Option("linear-srgb", "--input-normalization", help="raw, wb, wb+ccm or linear-srgb (the last two: one profile for every camera)."),
    saliency: str = typer.Option("builtin", "--saliency", help=_SALIENCY_HELP),
    trust_torchscript: bool = typer.Option(False, "--trust-torchscript", help="Allow loading a TorchScript saliency model (it runs code from the file)."),
    keep_raw: bool = typer.Option(True, "--keep-raw/--no-keep-raw", help="Keep the synthetic DNGs in the dataset (provenance, evaluation baseline)."),
    previews: int = typer.Option(4, "--previews", help="Side-by-side preview PNGs to write."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Images processed at once (threads)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary; errors only."),
    json_output: bool = typer.Option(False, "--json", help="Print the JSON report on stdout."),
) -> None:
    """Make RAW/sRGB pairs by unprocessing sRGB images with random cameras (generic profiles)."""
    from raw2rgb_plugin.errors import Raw2RgbError
    from raw2rgb_plugin.training.data.synth import SynthOptions, synthesize_dataset

    started = time.perf_counter()
    options = SynthOptions(
        patches_per_image=patches_per_image, cameras_per_image=cameras_per_image, patch_size=patch_size, noise=noise, inverse_tone_curve=tone_curve, seed=seed,
        val_fraction=val_fraction, input_normalization=input_normalization, saliency=saliency,
        trust_torchscript=trust_torchscript, keep_raw=keep_raw, previews=previews, jobs=jobs,
    )
    progress, on_event = _progress(quiet, "images")
    try:
        with progress:
            report = synthesize_dataset(rgb_dir, output, options, progress=on_event)
    except Raw2RgbError as exc:
        fail("raw2rgb dataset synth", str(exc), json_output=json_output)
    _summary(report, time.perf_counter() - started, quiet, json_output)
    if report["counts"]["patches"] == 0:
        error_line("raw2rgb dataset synth", "no patch was made — are the images smaller than a patch (2 × --patch-size)?")
        raise typer.Exit(1)


@dataset_app.command("corpus")
def corpus(
    output: Path = typer.Argument(..., help="Corpus folder (created, or completed if it exists).", file_okay=False, show_default=False),
    recipe: Path | None = typer.Option(None, "--recipe", help="JSON list of sources, e.g. tools/corpus-recipe.json (what the shipped profiles learn from).", exists=True, dir_okay=False),
    sources: Path | None = typer.Option(None, "--sources", help="Where the recipe's sources are, or are downloaded to (Debian packages).", file_okay=False),
    folder: list[Path] = typer.Option([], "--folder", help="Also take every photograph in this folder (repeatable).", exists=True, file_okay=False),
    licence: str = typer.Option("the photographer's own", "--licence", help="Licence recorded for the --folder photographs."),
    test_images: Path | None = typer.Option(None, "--test-images", help="Test-set images (e.g. ../shared/data/rgb) that must never enter: near-copies are left out.", exists=True, file_okay=False),
    max_short_side: int = typer.Option(1024, "--max-short-side", min=64, help="Downsample further until the short side is at most this."),
    min_short_side: int = typer.Option(192, "--min-short-side", min=32, help="Leave out a photograph whose short side would end smaller."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary; errors only."),
    json_output: bool = typer.Option(False, "--json", help="Print the manifest's counts and sources on stdout."),
) -> None:
    """Gather natural photographs into a training corpus for `train --synthetic` (resumable)."""
    from raw2rgb_plugin.errors import Raw2RgbError
    from raw2rgb_plugin.training.data.corpus import CorpusOptions, build_corpus, iter_sources, thumbnails_of
    from raw2rgb_plugin.training.data.sources import find_images

    started = time.perf_counter()
    progress = progress_bar(quiet=quiet, rate_field="{task.fields[kept]} kept", detail_field="{task.fields[current]}")
    task = progress.add_task("photographs", total=None, kept=0, current="")

    def on_event(event: dict) -> None:
        if event["event"] == "source":
            progress.update(task, total=(progress.tasks[task].total or 0) + event["images"], current=escape(event["name"]))
        else:
            progress.update(task, advance=1, kept=progress.tasks[task].fields["kept"] + int(event["kept"]))

    try:
        chosen = list(iter_sources(recipe, sources, [(f, licence) for f in folder]))
        if not chosen:
            raise Raw2RgbError("no source given", "pass --recipe with --sources, or --folder")
        tests = thumbnails_of(find_images(test_images)) if test_images else {}
        with progress:
            manifest = build_corpus(chosen, output, CorpusOptions(max_short_side, min_short_side), tests=tests,
                                    on_event=on_event)
    except Raw2RgbError as exc:
        fail("raw2rgb dataset corpus", str(exc), json_output=json_output)
    seconds = time.perf_counter() - started
    if not quiet:
        table = Table(title=f"raw2rgb dataset corpus → {output}", show_edge=False, title_justify="left")
        for column in ("source", "kept", "licence"):
            table.add_column(column)
        for source in manifest["sources"]:
            note = " (research only)" if source["research_only"] else ""
            table.add_row(escape(source["name"]), str(source["kept"]), escape(source["licence"] + note))
        err.print(table)
        err.print(f"{manifest['counts']['images']} photographs, {manifest['counts']['excluded']} left out "
                  f"(reasons in {escape(str(output / 'manifest.json'))}); {seconds:.0f} s")
    if json_output:
        print_json({"seconds": round(seconds, 3), "counts": manifest["counts"], "sources": manifest["sources"]})
    if manifest["counts"]["images"] == 0:
        error_line("raw2rgb dataset corpus", "no photograph was kept — see manifest.json for why")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")
