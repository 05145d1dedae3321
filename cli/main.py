"""`raw2rgb`: the typer application.

Each command group lives in its own module and registers itself on `app`; this file only
assembles them, so `raw2rgb --help` lists everything in one place.
"""

from __future__ import annotations

import logging

import typer

# exifread warns "File format not recognized" for every RAW container it cannot parse (CR3,
# RAF, …); exif_read expects that and falls back, so it is noise in a terminal.
logging.getLogger("exifread").setLevel(logging.ERROR)

app = typer.Typer(
    name="raw2rgb",
    help="Neural RAW-to-RGB conversion (RAW2RGB-GAN): camera RAW in, 16-bit TIFF with EXIF out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_all() -> None:
    import importlib

    # A module that is not there yet (an integration still being built) must not break the rest.
    for name in ("convert_cmd", "info_cmd", "profiles_cmd", "hosts_cmd", "dataset_cmd", "train_cmd"):
        try:
            module = importlib.import_module(f"raw2rgb_cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"raw2rgb_cli.{name}":
                raise
            continue
        module.register(app)


_register_all()

if __name__ == "__main__":
    app()
