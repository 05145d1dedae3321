"""`raw2rgb info`: what a RAW file holds and what the engine will make of it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from .console import error_line, out, print_json, shown

#: LibRaw flip → what the converter does to the sensor image to show it upright.
ORIENTATION_WORDS = {
    0: "as shot (no rotation)",
    3: "rotated 180°",
    6: "rotated 90° clockwise",
    5: "rotated 90° counter-clockwise",
    1: "mirrored left to right",
    2: "mirrored top to bottom",
    4: "mirrored across the diagonal",
    7: "mirrored across the other diagonal",
}


def _rounded(values: object, digits: int = 4) -> list:
    import numpy as np  # imported by the decode anyway; see describe_raw

    # float64 first: a float32 rounded to 4 digits still prints as 2.102400064468384.
    return np.asarray(values, dtype=np.float64).round(digits).tolist()


def describe_raw(path: Path) -> dict:
    """The engine's view of a RAW file, as a JSON-able dict (raises Raw2RgbError)."""
    # Imported here, not at the top: every command (and `raw2rgb --help`) imports this module, and
    # numpy and exifread were 80 ms of the CLI's 240 ms import (python -X importtime, best of 6 on a
    # busy 2-core EPYC); only a command that reads a RAW needs them.
    from raw2rgb_plugin.io.exif_read import camera_name
    from raw2rgb_plugin.io.lens import find_lens_correction
    from raw2rgb_plugin.io.noise_profile import noise_model_for
    from raw2rgb_plugin.io.raw_file import RawFile

    with RawFile(path) as raw:
        # any sensor raw2rgb decodes, X-Trans too: info describes what convert may refuse
        frame, metadata = raw.mosaic_frame, raw.metadata
        noise = noise_model_for(frame, metadata, raw.libraw)
    lens = find_lens_correction(metadata)
    out_h, out_w = frame.output_size
    return {
        "file": str(path),
        "camera": {"make": metadata.make, "model": metadata.model, "name": camera_name(metadata.make, metadata.model)},
        "sensor": frame.sensor,  # "RGGB Bayer" or "X-Trans 6×6"
        "cfa": frame.cfa_kind,  # "bayer" or "xtrans"
        # the first period's colours row by row (4 letters, or 36 for X-Trans)
        "cfa_pattern": frame.cfa_pattern,
        "sensor_size": {"height": frame.raw_size[0], "width": frame.raw_size[1]},
        "visible_size": {"height": frame.height, "width": frame.width},
        "output_size": {"height": out_h, "width": out_w},
        # width ÷ height of one sensor pixel; other than 1, the output is resampled to square pixels.
        "pixel_aspect": round(float(frame.pixel_aspect), 4),
        "black_level_per_site": _rounded(frame.black_level_per_site, 3),
        "white_level": frame.white_level,
        "white_balance": {"rgb_gains": _rounded(frame.wb_gains_rgb), "source": frame.wb_source},
        "camera_to_srgb": {"matrix": _rounded(frame.camera_to_srgb), "source": frame.matrix_source},
        "orientation": {"libraw_flip": frame.flip, "output": ORIENTATION_WORDS.get(frame.flip, f"flip {frame.flip}")},
        # variance = a·x + b on the levelled RAW (x in [0, 1]); green values (a noise-aware profile reads these).
        "noise": {"a": float(f"{noise.shot:.4g}"), "b": float(f"{noise.read:.4g}"), "source": noise.source,
                  "iso": noise.iso, "detail": noise.detail},
        "exif": metadata.summary(),
        # what `convert --lens auto` (a TIFF's default) corrects, or why it corrects nothing
        "lens_correction": lens.correction.summary() if lens.correction else {"reason": lens.reason},
        "notes": frame.notes,
    }


def _number(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}".rstrip("0").rstrip(".")


def _levels(doc: dict) -> str:
    blacks = [v for row in doc["black_level_per_site"] for v in row]
    if len(set(blacks)) == 1:
        black = _number(blacks[0], 1)
    elif len(blacks) == 4:
        black = ", ".join(_number(v, 1) for v in blacks)
    else:  # 36 X-Trans sites: one level (or range) per colour reads better than 36 numbers
        black = " · ".join(_colour_levels(blacks, doc["cfa_pattern"], c) for c in "RGB")
    return f"{black} / {_number(doc['white_level'], 1)}"


def _colour_levels(blacks: list[float], pattern: str, colour: str) -> str:
    values = [v for v, c in zip(blacks, pattern) if c == colour]
    low, high = min(values), max(values)
    return f"{colour} {_number(low, 1)}" + (f"–{_number(high, 1)}" if high > low else "")


def _gps(gps: dict) -> str:
    lat, lon = gps["latitude"], gps["longitude"]
    text = f"{abs(lat):.5f}° {'N' if lat >= 0 else 'S'}, {abs(lon):.5f}° {'E' if lon >= 0 else 'W'}"
    if gps.get("altitude") is not None:
        text += f", {gps['altitude']:.0f} m"
    return text


def _photo_rows(exif: dict) -> list[tuple[str, str]]:
    """The photographer's facts: lens, exposure, focal length, date, artist, copyright, place."""
    rows: list[tuple[str, str]] = []
    lens = exif.get("lens_model")
    if lens and exif.get("lens_make") and exif["lens_make"].casefold() not in lens.casefold():
        lens = f"{exif['lens_make']} {lens}"
    if lens:
        rows.append(("lens", lens))
    if exif.get("exposure_time"):
        rows.append(("shutter", f"{exif['exposure_time']} s"))
    if exif.get("f_number"):
        rows.append(("aperture", f"f/{_number(exif['f_number'], 1)}"))
    if exif.get("iso"):
        rows.append(("ISO", str(exif["iso"])))
    if exif.get("focal_length"):
        rows.append(("focal length", f"{_number(exif['focal_length'], 1)} mm"))
    taken = exif.get("datetime_original")
    if taken:
        date, _, clock = taken.partition(" ")
        rows.append(("taken", f"{date.replace(':', '-')} {clock}".strip()))
    for key, label in (("artist", "artist"), ("copyright", "copyright")):
        if exif.get(key):
            rows.append((label, exif[key]))
    if exif.get("gps"):
        rows.append(("location", _gps(exif["gps"])))
    return rows


def _table(doc: dict) -> Table:
    table = Table(title=escape(shown(doc["file"])), show_header=False, show_edge=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()

    def row(label: str, value: str) -> None:
        table.add_row(label, escape(shown(value)))

    row("camera", doc["camera"]["name"] or "unknown")
    for label, value in _photo_rows(doc["exif"]):
        row(label, value)
    visible, sensor, output = doc["visible_size"], doc["sensor_size"], doc["output_size"]
    row("image", f"{output['width']}×{output['height']} pixels, {ORIENTATION_WORDS.get(doc['orientation']['libraw_flip'], '')}")
    row("sensor", f"{visible['width']}×{visible['height']} visible of {sensor['width']}×{sensor['height']}, "
                  f"{doc['sensor']} pattern")
    if doc["cfa"] == "xtrans":  # a Bayer profile cannot render it: say which profile convert would pick
        row("convert", _xtrans_profile())
    if doc["pixel_aspect"] != 1:
        row("pixel aspect", f"{_number(doc['pixel_aspect'])} (a pixel's width ÷ height): resampled to square pixels")
    row("black / white", _levels(doc))
    wb = doc["white_balance"]
    gains = " · ".join(f"{c} {_number(g)}" for c, g in zip("RGB", wb["rgb_gains"]))
    row("white balance", f"{gains} ({wb['source'].replace('-', ' ')})")
    matrix = doc["camera_to_srgb"]
    row("colour matrix", " / ".join(" ".join(f"{v:+.3f}" for v in r) for r in matrix["matrix"]) + f" ({matrix['source']})")
    noise = doc["noise"]
    row("noise", f"shot {noise['a']:.3g}, read {noise['b']:.3g} ({noise['source']}: {noise['detail']})")
    row("lens profile", _lens_profile(doc["lens_correction"]))
    for note in doc["notes"]:
        row("note", note)
    return table


def _xtrans_profile() -> str:
    """Which profile `convert` (no --profile, on a CPU) renders an X-Trans file with, or why none."""
    from raw2rgb_plugin.profiles.catalog import installed_default

    name = installed_default("cpu", "xtrans")
    if name is None:
        return "none: no X-Trans profile is installed (reinstall raw2rgb, or train one with --cfa xtrans)"
    dng = installed_default("cpu", "xtrans", "dng")
    return (f"with the X-Trans profile {name} (what convert picks for this sensor); --format dng: "
            + (f"with {dng}" if dng else "none (no scene-linear X-Trans profile is installed)"))


def _lens_profile(correction: dict) -> str:
    if "reason" in correction:
        return f"none: {correction['reason']}"
    corrects = ", ".join(kind.replace("tca", "lateral CA") for kind in correction["corrects"])
    return f"{correction['lens']} on the {correction['camera']} (lensfun, {correction['database']}): {corrects}"


def info(
    # Plain strings: a Path argument would make typer refuse the whole list for one unreadable file.
    files: list[str] = typer.Argument(..., help="RAW files to describe.", show_default=False),
    json_output: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
) -> None:
    """Camera, exposure, sizes, orientation, levels, white balance, colour matrix and noise of RAW files."""
    from raw2rgb_plugin.errors import Raw2RgbError
    from raw2rgb_plugin.io.libraw import libraw_stderr

    documents, failures = [], 0
    with libraw_stderr():  # LibRaw's own lines become the files' notes, not stray stderr
        for path in map(Path, files):
            try:
                documents.append(describe_raw(path))
            except Raw2RgbError as exc:
                failures += 1
                error_line(str(path), str(exc))
                documents.append({"file": str(path), "error": str(exc)})
            except Exception as exc:  # one file's bug must not drop the rest of the list
                failures += 1
                error_line(str(path), f"unexpected error: {exc!r}")
                documents.append({"file": str(path), "error": f"unexpected error: {exc!r}"})
    if json_output:
        print_json(documents)
    else:
        for doc in documents:
            if "error" not in doc:
                out.print(_table(doc))
    if failures:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("info")(info)
