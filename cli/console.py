"""Shared terminal plumbing: progress and messages on stderr, results on stdout."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

#: progress bars, tables and error lines: never mixed into a script's stdout.
err = Console(stderr=True, highlight=False)
#: results (`--json` documents) only.
out = Console(highlight=False, soft_wrap=True)


def print_json(document: object) -> None:
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def error_line(subject: str, message: str) -> None:
    """One line per problem: `<file>: <problem> — <hint>`."""
    err.print(f"[red]error[/red]: {escape(subject)}: {escape(message)}", soft_wrap=True)


def progress_bar(*, quiet: bool, rate_field: str, detail_field: str) -> Progress:
    """The one progress layout every command uses, on stderr.

    `rate_field` and `detail_field` are task-field templates shown after the count and at the
    end of the line (e.g. "{task.fields[rate]}", "{task.fields[current]}").
    """
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
