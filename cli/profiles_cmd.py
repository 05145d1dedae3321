"""`raw2rgb profiles list|show`: what profiles exist and what each one is."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

from .console import err, error_line, fail, out, print_json, shown

#: the sensors a profile renders (`profile_cfa`), in words
SENSOR_WORDS = {"bayer": "Bayer", "xtrans": "X-Trans 6×6"}

profiles_app = typer.Typer(help="List and inspect conversion profiles.", no_args_is_help=True)


@profiles_app.command("list")
def list_profiles(json_output: bool = typer.Option(False, "--json", help="Print JSON on stdout.")) -> None:
    """Profiles installed for this user and shipped with raw2rgb (a user profile shadows a shipped one)."""
    # The catalog reads only the files' JSON headers: no torch, so listing takes a fraction of a second.
    from raw2rgb_plugin.errors import ProfileError
    from raw2rgb_plugin.profiles.catalog import SHIPPED_PROFILE_DIR, list_profile_paths, profile_cfa, read_profile_metadata

    rows = []
    for path in list_profile_paths():
        try:
            meta = read_profile_metadata(path)
        except ProfileError as exc:
            error_line(str(path), _without_path(str(exc), path))
            continue
        rows.append(
            {
                "name": path.name.removesuffix(".safetensors"),
                "variant": meta.get("variant"),
                "width": meta["architecture"]["width"],
                "input_normalization": meta["input_normalization"],
                "cfa": profile_cfa(meta),
                "source": "shipped" if path.parent == SHIPPED_PROFILE_DIR else "user",
                "path": str(path),
                "description": meta.get("description", ""),
            }
        )
    if json_output:
        print_json(rows)
        return
    table = Table(show_edge=False)
    for column in ("name", "variant", "sensor", "input", "source", "path"):
        table.add_column(column)
    for row in rows:
        table.add_row(escape(row["name"]), escape(str(row["variant"])), SENSOR_WORDS[row["cfa"]],
                      row["input_normalization"], row["source"], escape(shown(row["path"])))
    out.print(table)
    if not rows:
        err.print("no profiles found — train one with `raw2rgb train` or reinstall raw2rgb")


@profiles_app.command("show")
def show_profile(
    name: str = typer.Argument(..., help="Profile name or .safetensors path."),
    json_output: bool = typer.Option(False, "--json", help="Print the metadata as JSON on stdout."),
) -> None:
    """Everything a profile's metadata says: architecture, input normalisation, provenance, scores."""
    from raw2rgb_plugin.errors import ProfileError
    from raw2rgb_plugin.profiles.catalog import profile_cfa, read_profile_metadata, resolve_profile_path

    try:
        path = resolve_profile_path(name)
        meta = read_profile_metadata(path)
    except ProfileError as exc:
        fail(name, str(exc), json_output=json_output)
    cfa = profile_cfa(meta)
    if json_output:
        print_json({"path": str(path), "cfa": cfa, **meta})
        return
    out.print(f"[bold]{escape(str(meta.get('name', name)))}[/bold]  {escape(shown(path))}")
    out.print(f"sensors: {SENSOR_WORDS[cfa]} (cfa: {cfa})")
    if meta.get("output", "display") == "display":
        space = meta.get("network_space", "srgb")
        out.print(f"network space: {space} " + ("(the network renders camera RGB; the camera matrix, sRGB encoding "
                                                "and tone curve after it)" if space == "camera"
                                                else "(the network renders display sRGB)"))
    look = meta.get("look")
    if look:
        out.print(f"look table: tone curves ({look['curve_knots']} knots) + {look['lut_size']}³ 3D LUT after the "
                  "network (finished TIFFs only; --format dng refuses it)")
    out.print(escape(json.dumps(meta, indent=2, sort_keys=True)))


def _without_path(message: str, path: object) -> str:
    """`message` without the file name it starts with (the line names the file already)."""
    for prefix in (f"{path}: ", f"{path} "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


def register(app: typer.Typer) -> None:
    app.add_typer(profiles_app, name="profiles")
