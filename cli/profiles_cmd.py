"""`raw2rgb profiles list|show`: what profiles exist and what each one is."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

from .console import err, error_line, out, print_json

profiles_app = typer.Typer(help="List and inspect conversion profiles.", no_args_is_help=True)


@profiles_app.command("list")
def list_profiles(json_output: bool = typer.Option(False, "--json", help="Print JSON on stdout.")) -> None:
    """Profiles installed for this user and shipped with raw2rgb (a user profile shadows a shipped one)."""
    from raw2rgb_plugin.errors import ProfileError
    from raw2rgb_plugin.profiles.store import SHIPPED_PROFILE_DIR, list_profile_paths, read_profile_metadata

    rows = []
    for path in list_profile_paths():
        try:
            meta = read_profile_metadata(path)
        except ProfileError as exc:
            error_line(str(path), str(exc))
            continue
        rows.append(
            {
                "name": path.name.removesuffix(".safetensors"),
                "variant": meta.get("variant"),
                "width": meta["architecture"]["width"],
                "input_normalization": meta["input_normalization"],
                "source": "shipped" if path.parent == SHIPPED_PROFILE_DIR else "user",
                "path": str(path),
                "description": meta.get("description", ""),
            }
        )
    if json_output:
        print_json(rows)
        return
    table = Table(show_edge=False)
    for column in ("name", "variant", "input", "source", "path"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], str(row["variant"]), row["input_normalization"], row["source"], escape(row["path"]))
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
    from raw2rgb_plugin.profiles.store import read_profile_metadata, resolve_profile_path

    try:
        path = resolve_profile_path(name)
        meta = read_profile_metadata(path)
    except ProfileError as exc:
        error_line(name, str(exc))
        raise typer.Exit(2)
    if json_output:
        print_json({"path": str(path), **meta})
        return
    out.print(f"[bold]{escape(meta.get('name', name))}[/bold]  {escape(str(path))}")
    out.print(escape(json.dumps(meta, indent=2, sort_keys=True)))


def register(app: typer.Typer) -> None:
    app.add_typer(profiles_app, name="profiles")
