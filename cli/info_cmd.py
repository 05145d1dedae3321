"""`raw2rgb info`: what a RAW file holds and what the engine will make of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from .console import error_line, out, print_json


def describe_raw(path: Path) -> dict:
    """The engine's view of a RAW file, as a JSON-able dict (raises Raw2RgbError)."""
    from raw2rgb_plugin.io.noise_profile import noise_model_for
    from raw2rgb_plugin.io.raw_file import RawFile

    with RawFile(path) as raw:
        frame, metadata = raw.frame, raw.metadata
        noise = noise_model_for(frame, metadata, raw.libraw)
    out_h, out_w = frame.output_size
    return {
        "file": str(path),
        "camera": {"make": metadata.make, "model": metadata.model},
        "cfa_pattern": frame.cfa_pattern,
        "sensor_size": {"height": frame.raw_size[0], "width": frame.raw_size[1]},
        "visible_size": {"height": frame.height, "width": frame.width},
        "output_size": {"height": out_h, "width": out_w},
        "black_level_per_site": np.asarray(frame.black_level_per_site).round(3).tolist(),
        "white_level": frame.white_level,
        "white_balance": {"rgb_gains": np.asarray(frame.wb_gains_rgb).round(4).tolist(), "source": frame.wb_source},
        "camera_to_srgb": {"matrix": np.asarray(frame.camera_to_srgb).round(4).tolist(), "source": frame.matrix_source},
        "orientation": {"libraw_flip": frame.flip},
        # variance = a·x + b on the levelled RAW (x in [0, 1]); green values (a noise-aware profile reads these).
        "noise": {"a": float(f"{noise.shot:.4g}"), "b": float(f"{noise.read:.4g}"), "source": noise.source,
                  "iso": noise.iso, "detail": noise.detail},
        "exif": metadata.summary(),
        "notes": frame.notes,
    }


def info(
    files: list[Path] = typer.Argument(..., help="RAW files to describe.", show_default=False),
    json_output: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
) -> None:
    """Camera, CFA, sizes, levels, white balance, colour matrix, orientation and EXIF of RAW files."""
    from raw2rgb_plugin.errors import Raw2RgbError

    documents, failures = [], 0
    for path in files:
        try:
            documents.append(describe_raw(path))
        except Raw2RgbError as exc:
            failures += 1
            error_line(str(path), str(exc))
            documents.append({"file": str(path), "error": str(exc)})
    if json_output:
        print_json(documents)
    else:
        for doc in documents:
            if "error" in doc:
                continue
            table = Table(title=escape(doc["file"]), show_header=False, show_edge=False, title_justify="left")
            table.add_column(style="bold")
            table.add_column()
            cam = doc["camera"]
            table.add_row("camera", escape(" ".join(v for v in (cam["make"], cam["model"]) if v) or "unknown"))
            table.add_row("CFA", doc["cfa_pattern"])
            table.add_row("visible", f"{doc['visible_size']['width']}×{doc['visible_size']['height']} "
                                     f"(sensor {doc['sensor_size']['width']}×{doc['sensor_size']['height']})")
            table.add_row("output", f"{doc['output_size']['width']}×{doc['output_size']['height']}")
            table.add_row("black / white", f"{doc['black_level_per_site']} / {doc['white_level']:g}")
            wb = doc["white_balance"]
            table.add_row("white balance", f"{wb['rgb_gains']} ({wb['source']})")
            table.add_row("colour matrix", f"{doc['camera_to_srgb']['matrix']} ({doc['camera_to_srgb']['source']})")
            table.add_row("orientation", f"LibRaw flip {doc['orientation']['libraw_flip']}")
            noise = doc["noise"]
            table.add_row("noise", f"shot a {noise['a']:.3g}, read b {noise['b']:.3g} ({noise['source']}: {escape(noise['detail'])})")
            for key, value in doc["exif"].items():
                if value not in (None, "", [], {}):
                    table.add_row(key, escape(str(value)))
            for note in doc["notes"]:
                table.add_row("note", escape(note))
            out.print(table)
    if failures:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("info")(info)
