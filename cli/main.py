"""`raw2rgb`: the typer application.

Each command group lives in its own module and registers itself on `app`; this file only
assembles them, so `raw2rgb --help` lists everything in one place.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import typer
from typer.core import TyperGroup

# torch's OpenMP threads spin while they wait for work. On a loaded machine (a desktop with
# darktable working beside us, a CI runner) the spinning threads take the cores the work needs: a
# 12 MP render took 8.9-13.2 s at load 5-7 and 4.1-5.0 s with passive waiting; idle, one 12 MP DNG
# end to end took 4.76-5.97 s against 4.43-4.87 s passive (3 runs each, 2-core AMD EPYC,
# 2026-12-06). Read when OpenMP starts, so before torch is imported; the user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# exifread warns "File format not recognized" for every RAW container it cannot parse (CR3,
# RAF, …); exif_read expects that and falls back, so it is noise in a terminal.
logging.getLogger("exifread").setLevel(logging.ERROR)


class _Commands(TyperGroup):
    """Usage errors (an unknown option, a value out of range: exit status 2) also answer a
    `--json` caller with a JSON document on stdout, as the commands' own errors do."""

    def invoke(self, ctx: Any) -> Any:
        args = [*getattr(ctx, "_protected_args", []), *ctx.args]
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if "--json" in args and getattr(exc, "exit_code", None) == 2 and hasattr(exc, "format_message"):
                from .console import print_json

                print_json({"error": f"raw2rgb: {exc.format_message()}"})
            raise


app = typer.Typer(
    name="raw2rgb",
    cls=_Commands,
    help="Neural RAW-to-RGB conversion (RAW2RGB-GAN): camera RAW in, 16-bit TIFF with EXIF out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from raw2rgb_plugin import __version__

        typer.echo(f"raw2rgb {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", help="Print raw2rgb's version and exit.", is_eager=True,
                                 callback=_print_version),
) -> None:
    """Neural RAW-to-RGB conversion (RAW2RGB-GAN): camera RAW in, 16-bit TIFF with EXIF out."""


def _register_all() -> None:
    from . import convert_cmd, dataset_cmd, hosts_cmd, info_cmd, learn_cmd, profiles_cmd, train_cmd

    for module in (convert_cmd, info_cmd, profiles_cmd, dataset_cmd, train_cmd, learn_cmd, hosts_cmd):
        module.register(app)


_register_all()

if __name__ == "__main__":
    app()
