"""Shared terminal plumbing: progress and messages on stderr, results on stdout."""

from __future__ import annotations

import json
import re
import sys
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from rich.progress import Progress

#: progress bars, tables and error lines: never mixed into a script's stdout. Whether stderr is a
#: terminal is decided once: while LibRaw's stderr is captured (io/libraw) fd 2 is a pipe whose
#: bytes are forwarded to the terminal, and the progress bar must keep drawing meanwhile.
err = Console(stderr=True, highlight=False, force_terminal=True if sys.stderr.isatty() else None)
#: results (`--json` documents) only.
out = Console(highlight=False, soft_wrap=True)

_SURROGATE = re.compile("[\ud800-\udfff]")


def shown(text: object) -> str:
    """`text` for a terminal: bytes of a file name that are not UTF-8 (Python keeps them as lone
    surrogates) shown as `\\xe9` instead of failing to encode."""
    value = str(text)
    if not _SURROGATE.search(value):
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def print_json(document: object) -> None:
    """`document` as JSON on stdout, always valid UTF-8: a file name's non-UTF-8 bytes are written
    as the `\\udcXX` escapes Python reads back (json.loads, then os.fsencode gives the bytes)."""
    text = json.dumps(document, indent=2, ensure_ascii=False)
    text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n"
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is not None:
        sys.stdout.flush()
        buffer.write(text.encode("utf-8"))
        buffer.flush()
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def error_line(subject: str, message: str) -> None:
    """One line per problem: `<file>: <problem> — <hint>`."""
    err.print(f"[red]error[/red]: {escape(shown(subject))}: {escape(shown(message))}", soft_wrap=True)


def note_line(message: str) -> None:
    err.print(f"[yellow]note[/yellow]: {escape(shown(message))}", soft_wrap=True)


def fail(subject: str, message: str, *, json_output: bool, code: int = 2, document: dict | None = None) -> NoReturn:
    """End the command on a usage problem: its one line on stderr and, under --json, a JSON
    document with the error on stdout (a script reading stdout always gets a document)."""
    error_line(subject, message)
    if json_output:
        print_json({"error": f"{subject}: {message}", **(document or {})})
    raise typer.Exit(code)


def progress_bar(*, quiet: bool, rate_field: str, detail_field: str) -> Progress:
    """The one progress layout every command uses, on stderr.

    `rate_field` and `detail_field` are task-field templates shown after the count and at the
    end of the line (e.g. "{task.fields[rate]}", "{task.fields[current]}").
    """
    # Here, not at the top: every command imports this module, and `raw2rgb --help` needs no
    # progress bar (rich.progress and rich.live: 6 ms of the CLI's import).
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(rate_field),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn(detail_field),
        console=err,
        disable=quiet,
    )
