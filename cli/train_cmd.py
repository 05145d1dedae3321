"""`raw2rgb train` and `raw2rgb evaluate`: fit a profile on a dataset, and score one."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

# Every option that mirrors a TrainConfig field takes its default from TrainConfig, so the help
# and the engine never disagree (config.py imports no torch: `raw2rgb --help` stays fast).
from raw2rgb_plugin.runtime.settings import DEVICE_HELP
from raw2rgb_plugin.training.config import TrainConfig, resolve_variant
from raw2rgb_plugin.vocabulary import INPUT_NORMALIZATIONS, VARIANT_WIDTHS

from .console import err, error_line, fail, print_json, progress_bar

if TYPE_CHECKING:
    from rich.progress import TaskID

_VARIANT_HELP = ("G1 width: auto (base on a GPU, lite on a CPU), "
                 + ", ".join(f"{name} ({width})" for name, width in VARIANT_WIDTHS.items()) + "; base is the seed's.")

DEFAULTS = TrainConfig()


def train(
    dataset: Path | None = typer.Argument(None, help="Dataset folder from `raw2rgb dataset build` or `synth` (or use --synthetic).", show_default=False),
    synthetic: Path | None = typer.Option(None, "--synthetic", help="Folder of sRGB images: make pairs on the fly with random cameras and camera-realistic noise (no dataset on disk); G1 reads a noise map.", file_okay=False),
    patch_size: int = typer.Option(DEFAULTS.synthetic_patch_size, "--patch-size", min=32, help="With --synthetic: patch size in sensor pixels (a multiple of 16)."),
    patches_per_image: int = typer.Option(DEFAULTS.synthetic_patches_per_image, "--patches-per-image", min=1, help="With --synthetic: patches per image per epoch."),
    clean_fraction: float = typer.Option(DEFAULTS.synthetic_clean_fraction, "--clean-fraction", help="With --synthetic: share of training patches without noise."),
    hard_fraction: float = typer.Option(DEFAULTS.synthetic_hard_fraction, "--hard-fraction", help="With --synthetic: share of training patches cut where a classical demosaic errs most (the worst of 4 crops)."),
    balance_sources: bool = typer.Option(DEFAULTS.synthetic_balance_sources, "--balance-sources/--per-image", help="With --synthetic: the same patches per epoch for each folder under RGB_DIR (a corpus's sources), not for each image."),
    pairs_on_device: bool = typer.Option(DEFAULTS.pairs_on_device, "--pairs-on-device/--pairs-in-workers", help="With --synthetic: make the training pairs on the training device (keeps a GPU busy) instead of in loader workers."),
    target: str = typer.Option(DEFAULTS.synthetic_output, "--target", help="With --synthetic: display (a finished sRGB image) or scene-linear (demosaic + denoise only, linear camera RGB: a profile for `convert --format dng`)."),
    cfa: str = typer.Option(DEFAULTS.cfa, "--cfa", help="With --synthetic: the sensor to train for, bayer or xtrans (Fujifilm's 6×6 X-Trans: pairs mosaicked in its pattern, a profile that renders X-Trans files only; --patch-size a multiple of 48)."),
    network_space: str | None = typer.Option(DEFAULTS.network_space, "--network-space", help="With --synthetic and a display target: srgb (G1 renders display sRGB from linear-srgb input) or camera (G1 demosaics the white-balanced camera mosaic, wb-headroom input, and a fixed camera matrix + sRGB encoding + tone curve after it renders the image: demosaicnet's pipeline). Default: an --init profile's own, else srgb; naming one may start it from a profile of the other."),
    output: Path = typer.Option(..., "--output", "-o", help="Run folder: checkpoint.pt, log.jsonl, the exported profile.", file_okay=False),
    profile_name: str | None = typer.Option(None, "--profile-name", help="Name to install the profile under (default: the run folder's name)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an installed profile of the same name from another run."),
    variant: str = typer.Option("auto", "--variant", help=_VARIANT_HELP),
    max_steps: int | None = typer.Option(DEFAULTS.max_steps, "--max-steps", min=1, help="Stop after this many optimizer steps in all (smoke runs); a checkpoint and a profile are still written."),
    max_minutes: float | None = typer.Option(DEFAULTS.max_minutes, "--max-minutes", help="Stop after this many minutes of training in this invocation; a checkpoint and a profile are still written (--resume continues)."),
    keep_best: bool = typer.Option(DEFAULTS.keep_best, "--keep-best", help="Export the epoch with the best validation PSNR (kept as best.safetensors in the run folder) instead of the last."),
    perceptual: bool = typer.Option(DEFAULTS.perceptual, "--perceptual/--no-perceptual", help="VGG16 perceptual loss in stage 2 (needs the VGG16 weights); the profile records the choice."),
    vgg_weights: Path | None = typer.Option(DEFAULTS.vgg_weights, "--vgg-weights", help="VGG16 weights (.pth or .safetensors) instead of torchvision's download in the torch hub cache.", dir_okay=False),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --output exactly where its checkpoint left it (its saved settings apply)."),
    init: str | None = typer.Option(DEFAULTS.init_profile, "--init", help="Start G1 from this profile (name or .safetensors path) to fine-tune it; its width wins over --variant."),
    device: str = typer.Option(DEFAULTS.device, "--device", help=DEVICE_HELP),
    batch_size: int = typer.Option(DEFAULTS.batch_size, "--batch-size", min=1, help="Patches per step (per process under torchrun)."),
    workers: int | None = typer.Option(DEFAULTS.workers, "--workers", min=0, help="Data-loading processes (default: 0 on the CPU, up to 8 on a GPU)."),
    stage1_epochs: int = typer.Option(DEFAULTS.stage1_epochs, "--stage1-epochs", min=0, help="Epochs of stage 1 (L1 + attention)."),
    stage2_epochs: int = typer.Option(DEFAULTS.stage2_epochs, "--stage2-epochs", min=0, help="Epochs of stage 2 (all losses, D trained)."),
    lr_stage1: float = typer.Option(DEFAULTS.lr_stage1, "--lr-stage1", help="Generator learning rate in stage 1."),
    lr_g: float = typer.Option(DEFAULTS.lr_g, "--lr-g", help="Generator learning rate in stage 2."),
    lr_d: float = typer.Option(DEFAULTS.lr_d, "--lr-d", help="Discriminator learning rate (stage 2; two time-scale rule)."),
    lr_decay_every: int = typer.Option(DEFAULTS.lr_decay_every, "--lr-decay-every", min=1, help="Halve the learning rates every this many epochs of a stage."),
    lambda_l1: float = typer.Option(DEFAULTS.lambda_l1, "--lambda-l1", help="Weight of the L1 loss."),
    lambda_attn: float = typer.Option(DEFAULTS.lambda_attn, "--lambda-attn", help="Weight of the saliency attention loss."),
    lambda_perc: float = typer.Option(DEFAULTS.lambda_perc, "--lambda-perc", help="Weight of the VGG16 perceptual loss."),
    lambda_gan: float = typer.Option(DEFAULTS.lambda_gan, "--lambda-gan", help="Weight of the LSGAN loss (0 trains without D)."),
    d_width: int = typer.Option(DEFAULTS.d_width, "--d-width", min=1, help="Discriminator base width."),
    input_normalization: str | None = typer.Option(DEFAULTS.input_normalization, "--input-normalization", help=f"{', '.join(INPUT_NORMALIZATIONS)} (default: the dataset's)."),
    residual_base: str = typer.Option(DEFAULTS.residual_base, "--residual-base", help="none (the seed's G1), mhc-srgb (G1 learns a residual over a classical rendering; linear-srgb input), mhc-srgb-gated (G1 blends its own image with that rendering per pixel), mhc-linear-gated (the same over a linear demosaic; wb-headroom input), lsq-srgb-gated / lsq-linear-gated (the same over a demosaic fitted to photographs, 1.6 dB above Malvar–He–Cutler) or auto (lsq-srgb-gated or lsq-linear-gated, by the input; an --init profile keeps its own). With --cfa xtrans: xtrans-srgb-gated or xtrans-linear-gated, over a linear X-Trans demosaic."),
    fine_blocks: int | None = typer.Option(DEFAULTS.fine_blocks, "--fine-blocks", min=0, max=8, help="Residual blocks of G1 at the packed resolution, where demosaicking's detail is (default 0, or an --init profile's own; more than it has start at zero gain)."),
    amp: str = typer.Option(DEFAULTS.amp, "--amp", help="Mixed precision. CUDA: auto (bf16 on sm_80+, fp16 on sm_70+), bf16, fp16 or off. CPU: auto (bf16 autocast where measured faster on this CPU, cached), bf16 or off."),
    seed: int = typer.Option(DEFAULTS.seed, "--seed", help="Seed of weights, data order and augmentation."),
    checkpoint_every: int = typer.Option(DEFAULTS.checkpoint_every, "--checkpoint-every", min=0, help="Steps between checkpoints (one is also written at every epoch's end)."),
    log_every: int = typer.Option(DEFAULTS.log_every, "--log-every", min=1, help="Steps between step records in log.jsonl."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress; errors only."),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout at the end."),
) -> None:
    """Train a profile (G1 with G2 and D, two stages) on a dataset, and install it for `convert`."""
    from raw2rgb_plugin.errors import Raw2RgbError
    from raw2rgb_plugin.training.data import open_training_data
    from raw2rgb_plugin.training.trainer import Trainer

    chosen_variant, variant_note = resolve_variant(variant, device, resume=resume, init=init)
    config = TrainConfig(
        variant=chosen_variant, d_width=d_width, batch_size=batch_size, stage1_epochs=stage1_epochs,
        stage2_epochs=stage2_epochs, lr_stage1=lr_stage1, lr_g=lr_g, lr_d=lr_d, lr_decay_every=lr_decay_every,
        lambda_l1=lambda_l1, lambda_attn=lambda_attn, lambda_perc=lambda_perc, lambda_gan=lambda_gan,
        perceptual=perceptual, vgg_weights=str(vgg_weights) if vgg_weights else None,
        input_normalization=input_normalization, residual_base=residual_base, fine_blocks=fine_blocks, init_profile=init, seed=seed, amp=amp, device=device,
        workers=workers, max_steps=max_steps, max_minutes=max_minutes, keep_best=keep_best, checkpoint_every=checkpoint_every, log_every=log_every,
        synthetic_patch_size=patch_size, synthetic_patches_per_image=patches_per_image,
        synthetic_clean_fraction=clean_fraction, synthetic_hard_fraction=hard_fraction, synthetic_output=target,
        network_space=network_space, synthetic_balance_sources=balance_sources,
        pairs_on_device=pairs_on_device, cfa=cfa,
    )
    try:
        config = config.for_data(synthetic=synthetic is not None)
    except Raw2RgbError as exc:
        fail("raw2rgb train", str(exc), json_output=json_output)
    if (dataset is None) == (synthetic is None):
        fail("raw2rgb train", "give a DATASET folder or --synthetic RGB_DIR (one of them) — see raw2rgb train --help", json_output=json_output)
    # Under torchrun every rank runs this command; rank 0 speaks for all of them.
    main_rank = int(os.environ.get("RANK", "0")) == 0
    json_output = json_output and main_rank
    display = _TrainDisplay(quiet or not main_rank)
    if variant_note:
        display.print(f"[yellow]note[/yellow]: {escape(variant_note)}")
    try:
        source = dataset if dataset is not None else synthetic
        assert source is not None
        trainer = Trainer(
            config, open_training_data(dataset, synthetic, _data_config(config, output, resume)), output,
            resume=resume, profile_name=profile_name,
            overwrite_profile=overwrite, dataset_path=source.resolve(), command_line=_command_line(),
            on_event=display.on_event,
        )
    except Raw2RgbError as exc:
        fail("raw2rgb train", str(exc), json_output=json_output)

    result = _run_with_display(trainer, display)
    if json_output:
        print_json(_summary(result, output, display))
    if display.stop_reason == "requested":
        raise typer.Exit(130)


def _data_config(config: TrainConfig, output: Path, resume: bool) -> TrainConfig:
    """The settings the training data are made with: a resumed run's saved ones (patch size,
    patches per image, clean and hard shares, sources, seed, …), so `--resume` alone cuts the same
    patches the run started with, as it continues with its other saved settings."""
    if not resume:
        return config
    from raw2rgb_plugin.training.checkpoint import read_checkpoint, run_config

    return run_config(config, read_checkpoint(output))


def _run_with_display(trainer, display: _TrainDisplay):
    """Run with the progress display and the Ctrl-C handler; a training error exits with 1."""
    from raw2rgb_plugin.errors import Raw2RgbError

    previous = _install_stop_handler(trainer, display)
    try:
        with display.progress:
            return trainer.run()
    except Raw2RgbError as exc:
        error_line("raw2rgb train", str(exc))
        raise typer.Exit(1)
    finally:
        signal.signal(signal.SIGINT, previous)


def _summary(result, output: Path, display: _TrainDisplay) -> dict:
    """The `--json` summary of a finished (or stopped) run."""
    return {
        "run": str(output),
        "steps": result.global_step,
        "epochs": result.epoch,
        "completed": result.completed,
        "validation": result.validation,
        "profile": str(result.profile_path) if result.profile_path else None,
        "installed": str(result.installed_profile_path) if result.installed_profile_path else None,
        "seconds": round(time.perf_counter() - display.started, 3),
    }


class _TrainDisplay:
    """Renders the trainer's events: a progress bar with stage, epoch, losses, it/s and ETA."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.started = time.perf_counter()
        self.stop_reason: str | None = None
        self.progress = progress_bar(quiet=quiet, rate_field="{task.fields[rate]}", detail_field="{task.fields[losses]}")
        self.task: TaskID | None = None
        self.total_epochs = 0

    def print(self, message: str) -> None:
        if not self.quiet:
            self.progress.console.print(message, soft_wrap=True)

    def on_event(self, event: dict) -> None:
        kind = event["event"]
        if kind in ("start", "resume"):
            self.total_epochs = event["total_epochs"]
            verb = "resuming at step" if kind == "resume" else "training from step"
            self.print(
                f"{verb} {event['step']} of {event['total_steps']} ({event['steps_per_epoch']} per epoch) on "
                f"{event['device']} (amp {event['amp']}, {event['world_size']} process(es)); "
                f"{event['train_patches']} training / {event['val_patches']} validation patches; "
                f"perceptual loss {'on' if event['perceptual'] else 'off'}"
            )
            self.task = self.progress.add_task("training", total=event["total_steps"], completed=event["step"], rate="", losses="")
        elif kind == "step" and self.task is not None:
            losses = " ".join(f"{k} {v:.3g}" for k, v in event["losses"].items())
            rate = f"{event['it_per_s']:.2f} it/s" if event.get("it_per_s") else ""
            self.progress.update(
                self.task, completed=event["step"], rate=rate, losses=escape(losses),
                description=f"stage {event['stage']} · epoch {event['epoch'] + 1}/{self.total_epochs}",
            )
        elif kind == "epoch":
            v = event.get("validation")
            scores = f"validation PSNR {v['psnr']:.2f} dB, SSIM {v['ssim']:.4f} ({v['count']} patches)" if v else "no validation patches"
            self.print(f"epoch {event['epoch'] + 1}/{self.total_epochs} (stage {event['stage']}, step {event['step']}): {scores}")
        elif kind == "note":
            self.print(f"[yellow]note[/yellow]: {escape(event['message'])}")
        elif kind == "stop":
            self.stop_reason = event["reason"]
            why = {"max_steps": "--max-steps reached", "max_minutes": "--max-minutes reached"}.get(event["reason"], "stopped on request")
            self.print(f"{why} at step {event['step']}; checkpoint written (continue with --resume)")
        elif kind == "profile":
            where = f", installed as {escape(event['installed'])}" if event.get("installed") else ""
            self.print(f"profile: {escape(event['path'])}{where}")


def _install_stop_handler(trainer, display: _TrainDisplay):
    """First Ctrl-C: finish the step, checkpoint, export. Second: abort at once."""
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.request_stop()
        display.print("[yellow]stopping after this step[/yellow] (Ctrl-C again aborts without a checkpoint)")

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (embedded use): keep the default behaviour
        return previous
    return previous


def _command_line() -> str:
    return " ".join(["raw2rgb", *sys.argv[1:]]) if sys.argv else "raw2rgb train"


def evaluate(
    profile: str = typer.Argument(..., help="Profile name or .safetensors path.", show_default=False),
    dataset: Path = typer.Argument(..., help="Dataset folder.", show_default=False),
    split: str = typer.Option("val", "--split", help="val (held-out scenes) or train."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Patches per forward pass."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Score only the first N patches."),
    baseline: bool = typer.Option(True, "--baseline/--no-baseline", help="Also score the classical LibRaw rendering of the same RAWs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or table."),
    json_output: bool = typer.Option(False, "--json", help="Print the scores (with the per-image table) as JSON on stdout."),
) -> None:
    """PSNR/SSIM of a profile on a dataset split, beside the classical LibRaw rendering."""
    from raw2rgb_plugin.errors import Raw2RgbError
    from raw2rgb_plugin.profiles.store import load_profile
    from raw2rgb_plugin.runtime.device import choose_device
    from raw2rgb_plugin.training.data.store import open_dataset
    from raw2rgb_plugin.training.evaluate import BASELINE_SETTINGS, evaluate_profile

    if split not in ("val", "train"):
        fail("raw2rgb evaluate", f"unknown split {split!r} — use val or train", json_output=json_output)
    try:
        loaded = load_profile(profile)
        data = open_dataset(dataset)
        torch_device = choose_device(device)
        if len(data.split(split)) == 0:
            raise Raw2RgbError(f"{dataset} has no {split} patches", "build it with more scenes, or use --split train")
        if loaded.network_space == "camera":  # its patches carry no camera matrix to render it with
            raise Raw2RgbError(f"profile {loaded.name!r} works in camera space, which a stored dataset cannot render",
                               "score it with benchmarks/quality_report.py, which converts whole files")
    except Raw2RgbError as exc:
        fail("raw2rgb evaluate", str(exc), json_output=json_output)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("[bold]evaluating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=err, disable=quiet)
    task = progress.add_task("evaluating", total=None)
    with progress:
        result = evaluate_profile(
            loaded, data, split=split, device=torch_device, batch_size=batch_size, baseline=baseline, limit=limit,
            dataset_label=str(dataset), on_progress=lambda done, total: progress.update(task, completed=done, total=total),
        )

    if not quiet:
        table = Table(title=f"raw2rgb evaluate {loaded.name} on {dataset} ({split})", show_edge=False, title_justify="left")
        for column in ("image", "scene", "patches", "PSNR", "SSIM", "baseline PSNR", "baseline SSIM", "baseline"):
            table.add_column(column, justify="right" if column not in ("image", "scene", "baseline") else "left")

        def fmt(value: float | None, digits: int) -> str:
            return "—" if value is None else f"{value:.{digits}f}"

        for image in result.images:
            table.add_row(escape(image.image), escape(image.scene), str(image.patches), fmt(image.psnr, 2), fmt(image.ssim, 4),
                          fmt(image.baseline_psnr, 2), fmt(image.baseline_ssim, 4),
                          escape(image.baseline or "") + (f" ({escape(image.note)})" if image.note else ""))
        table.add_section()
        table.add_row("[bold]all", "", str(result.patches), f"[bold]{result.psnr:.2f}", f"[bold]{result.ssim:.4f}",
                      fmt(result.baseline_psnr, 2), fmt(result.baseline_ssim, 4), "")
        err.print(table)
        if baseline:
            err.print(f"baseline: {BASELINE_SETTINGS}; 'bilinear' where the source RAW was not available")
    if json_output:
        print_json(result.to_dict())


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("evaluate")(evaluate)
