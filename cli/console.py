"""Shared terminal plumbing: progress and messages on stderr, results on stdout."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.markup import escape

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
