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
    from . import convert_cmd, dataset_cmd, hosts_cmd, info_cmd, profiles_cmd, train_cmd

    for module in (convert_cmd, info_cmd, profiles_cmd, dataset_cmd, train_cmd, hosts_cmd):
        module.register(app)


_register_all()

if __name__ == "__main__":
    app()
