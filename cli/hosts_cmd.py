"""`raw2rgb install|uninstall darktable|gimp|gimp2`: the host integrations for the current user."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich.markup import escape

from raw2rgb_plugin.vocabulary import DEFAULT_DENOISE, DENOISE_RANGE, DEVICE_CHOICES

from .console import error_line, out


class Host(str, Enum):
    darktable = "darktable"
    gimp = "gimp"
    gimp2 = "gimp2"


#: --device's choices, from the shared vocabulary (an Enum, so typer lists and checks them)
Device = Enum("Device", {name: name for name in DEVICE_CHOICES}, type=str)  # type: ignore[misc]


NEXT_STEPS = {
    "darktable": 'restart darktable, then export with the target storage "raw2rgb (neural, 16-bit TIFF)" '
    'or press "raw2rgb: convert selected" in the selected images module',
    "gimp": "restart GIMP 3 and pick raw2rgb under Edit > Preferences > Image Import & Export > Raw Image Importer",
    "gimp2": "restart GIMP 2.10 and pick raw2rgb under Edit > Preferences > Image Import & Export > Raw Image Importer",
}

CONFIG_DIR_HELP = (
    "The host's configuration folder (default: darktable: ~/.config/darktable; gimp: $GIMP3_DIRECTORY "
    "or ~/.config/GIMP/3.0; gimp2: $GIMP2_DIRECTORY or ~/.config/GIMP/2.10)."
)


def _or_exit(action: str, step):
    """Run `step`; a user-facing error or an OS error becomes one line and exit status 1."""
    from raw2rgb_plugin.errors import Raw2RgbError

    try:
        return step()
    except Raw2RgbError as exc:
        error_line(action, str(exc))
    except OSError as exc:
        error_line(action, f"{exc} — check the folder's permissions or pass --config-dir")
    raise typer.Exit(1)


def _print(lines: list[str]) -> None:
    for line in lines:
        out.print(escape(line))


def install(
    host: Host = typer.Argument(..., help="darktable, gimp (GIMP 3) or gimp2 (GIMP 2.10).", show_default=False),
    config_dir: Path | None = typer.Option(None, "--config-dir", help=CONFIG_DIR_HELP, file_okay=False),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be done; change nothing."),
    executable: Path | None = typer.Option(
        None, "--executable", help="The raw2rgb program the host runs (default: this raw2rgb).", dir_okay=False
    ),
    profile: str | None = typer.Option(
        None, "--profile", "-p", help="Profile the host uses by default (default: raw2rgb's default for the device)."
    ),
    device: Device | None = typer.Option(None, "--device", help="Device the host uses by default (default: auto)."),
    denoise: float | None = typer.Option(
        None, "--denoise", metavar="S",
        help=f"Denoising strength the host uses by default for a noise-aware profile: {DENOISE_RANGE[0]:g} (keep "
        f"all detail and grain) to {DENOISE_RANGE[1]:g} (strong) (default: {DEFAULT_DENOISE:g}).",
    ),
) -> None:
    """Install or update the darktable or GIMP integration for the current user."""
    from raw2rgb_host_integrations.install import RecordedSettings, install as install_host

    settings = _or_exit(f"install {host.value}",
                        lambda: RecordedSettings.build(executable, profile, device.value if device else None, denoise))
    lines = _or_exit(f"install {host.value}", lambda: install_host(host.value, config_dir, settings, dry_run=dry_run))
    _print(lines)
    if not dry_run:
        out.print(f"raw2rgb runs as {escape(str(settings.executable))}")
        out.print(f"next: {escape(NEXT_STEPS[host.value])}")


def uninstall(
    host: Host = typer.Argument(..., help="darktable, gimp (GIMP 3) or gimp2 (GIMP 2.10).", show_default=False),
    config_dir: Path | None = typer.Option(None, "--config-dir", help=CONFIG_DIR_HELP, file_okay=False),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be done; change nothing."),
) -> None:
    """Remove what `raw2rgb install` added for darktable or GIMP."""
    from raw2rgb_host_integrations.install import uninstall as uninstall_host

    lines = _or_exit(f"uninstall {host.value}", lambda: uninstall_host(host.value, config_dir, dry_run=dry_run))
    _print(lines)


def register(app: typer.Typer) -> None:
    app.command("install")(install)
    app.command("uninstall")(uninstall)
