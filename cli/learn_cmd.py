"""`raw2rgb learn`: a profile of your own camera's look, from the JPEGs it already made."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

# options.py imports no torch: `raw2rgb --help` stays fast.
from raw2rgb_plugin.runtime.settings import DEVICE_HELP
from raw2rgb_plugin.training.learn.options import DEFAULT_BASE_PROFILE, DEFAULT_MAX_SIDE, SOURCES, FinetuneOptions

from .console import err, fail, print_json, progress_bar

if TYPE_CHECKING:
    from rich.progress import TaskID

_F = FinetuneOptions()


def learn(
    inputs: list[Path] = typer.Argument(..., help="RAW files and/or folders of RAWs (with their sidecar JPEGs, if you shot RAW+JPEG).", show_default=False),
    profile_name: str = typer.Option(..., "--profile-name", help="Name to install the profile under (then: raw2rgb convert --profile NAME)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Run folder: pairs, checkpoint, report (default: learn-runs/NAME in raw2rgb's data folder; never beside the RAWs).", file_okay=False),
    source: str = typer.Option("auto", "--source", help=f"Target of each RAW: {', '.join(SOURCES)} (auto: the sidecar JPEG of the same name, else the embedded preview)."),
    base: str = typer.Option(DEFAULT_BASE_PROFILE, "--base", help="Profile to start from (a display profile with linear-srgb input); detail comes from it."),
    steps: int = typer.Option(_F.steps, "--steps", min=1, help="Fine-tuning steps."),
    lowpass: float = typer.Option(_F.lowpass_sigma, "--lowpass", min=0.3, help="Pair pixels (σ) below which detail stays the base profile's and above which the camera's JPEG is learned."),
    holdout: int | None = typer.Option(None, "--holdout", min=0, help="Frames held out to score the result (default: about 15 %; none under 4 files)."),
    max_side: int = typer.Option(DEFAULT_MAX_SIDE, "--max-side", min=64, help="Long side of the training pairs, pixels (targets larger than this are reduced)."),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an installed profile of the same name from another run."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress; errors only."),
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout at the end."),
) -> None:
    """Learn your camera's look from its own JPEGs (sidecar or embedded) and install it as a profile.

    Rerun the same command to resume an interrupted run; the profile is installed only when the run finishes. The run folder holds report.md with held-out scores and before/after crops.
    """
    from raw2rgb_plugin.errors import Raw2RgbError
    from raw2rgb_plugin.profiles.catalog import user_profile_dir
    from raw2rgb_plugin.training.learn.options import LearnOptions
    from raw2rgb_plugin.training.learn.run import learn as run_learn

    run_dir = output if output is not None else user_profile_dir().parent / "learn-runs" / profile_name
    options = LearnOptions(profile_name=profile_name, source=source, base_profile=base, holdout=holdout, max_side=max_side,
                           device=device, overwrite=overwrite, finetune=FinetuneOptions(steps=steps, lowpass_sigma=lowpass))
    display = _LearnDisplay(quiet)
    previous = _install_stop_handler(display)
    started = time.perf_counter()
    try:
        with display.progress:
            result = run_learn(inputs, run_dir, options, on_event=display.on_event, command_line=_command_line(),
                               stop=lambda: display.stop_requested)
    except Raw2RgbError as exc:
        fail("raw2rgb learn", str(exc), json_output=json_output, code=1)
    finally:
        signal.signal(signal.SIGINT, previous)
    if not result.completed:
        display.print(f"stopped; nothing installed — rerun the same command to resume (run folder {escape(str(run_dir))})")
        raise typer.Exit(130)
    if not quiet and result.report is not None:
        _summary(result.report, Path(run_dir), time.perf_counter() - started)
    if json_output:
        print_json({"run": str(run_dir), "profile": str(result.profile_path),
                    "installed": str(result.installed_path) if result.installed_path else None, **(result.report or {})})


class _LearnDisplay:
    """Renders the run's events: a bar for the pairs, then one for the fine-tune."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.stop_requested = False
        self.progress = progress_bar(quiet=quiet, rate_field="{task.fields[rate]}", detail_field="{task.fields[current]}")
        self.task: TaskID | None = None

    def print(self, message: str) -> None:
        if not self.quiet:
            self.progress.console.print(message, soft_wrap=True)

    def on_event(self, event: dict) -> None:
        kind = event["event"]
        if kind == "pairs":
            self.task = self.progress.add_task("pairs", total=event["total"], rate="", current="")
        elif kind == "pair" and self.task is not None:
            if event["status"] == "skipped":
                self.print(f"[yellow]skipped[/yellow] {escape(event['name'])}: {escape(event['reason'])}")
            note = "resumed" if event.get("resumed") else event.get("kind", "")
            self.progress.update(self.task, advance=1, current=escape(f"{event['name']} {note}"))
        elif kind == "split":
            self.print(f"{event['train']} frames to learn from, {event.get('validation', 0)} to choose the weights on, "
                       f"{event['held_out']} held out for the report")
        elif kind == "validation":
            self.print(f"step {event['step']}: {event['psnr']:.2f} dB on the validation frames "
                       f"(keeping step {event['chosen_step']})")
        elif kind == "finetune":
            self.task = self.progress.add_task("fine-tune", total=event["steps"], completed=event["step"], rate="", current="")
        elif kind == "step" and self.task is not None:
            losses = " ".join(f"{k} {v:.3g}" for k, v in event["losses"].items())
            self.progress.update(self.task, completed=event["step"], rate=f"{event['it_per_s']:.2f} it/s", current=escape(losses))
        elif kind == "note":
            self.print(f"[yellow]note[/yellow]: {escape(event['message'])}")
        elif kind == "lut":
            chosen = " (smoothness chosen on the validation frames)" if len(event.get("validation_psnr", {})) > 1 else ""
            self.print(f"curve + 3D LUT fitted in {event['seconds']:.1f} s{chosen}")
        elif kind == "profile":
            where = f", installed as {escape(event['installed'])}" if event.get("installed") else ""
            self.print(f"profile: {escape(event['path'])}{where}")


def _summary(report: dict, run_dir: Path, seconds: float) -> None:
    scores = report["scores"]
    where = "held-out frames" if scores["held_out"] else "training frames"
    table = Table(title=f"{report['profile']} — {report['camera'] or 'camera'}, scored on {len(scores['frames'])} {where}",
                  show_edge=False, title_justify="left")
    for column in ("rendering", "PSNR (dB)", "median ΔE2000"):
        table.add_column(column, justify="left" if column == "rendering" else "right")
    for method, label in (("base", f"base ({report['base_profile']})"), ("lut", "curve + 3D LUT"), ("learned", "learned")):
        m = scores["mean"][method]
        table.add_row(label, f"{m['psnr']:.2f}", f"{m['delta_e2000']:.2f}")
    err.print(table)
    err.print(f"{report['files']['used']} of {report['files']['found']} files used; {seconds:.0f} s; "
              f"report: {escape(str(run_dir / 'report.md'))}")


def _install_stop_handler(display: _LearnDisplay):
    """First Ctrl-C: finish the step, checkpoint, install nothing. Second: abort at once."""
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if display.stop_requested:
            raise KeyboardInterrupt
        display.stop_requested = True
        display.print("[yellow]stopping after this step[/yellow] (Ctrl-C again aborts)")

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (embedded use)
        return previous
    return previous


def _command_line() -> str:
    return " ".join(["raw2rgb", *sys.argv[1:]]) if sys.argv else "raw2rgb learn"


def register(app: typer.Typer) -> None:
    app.command("learn")(learn)
