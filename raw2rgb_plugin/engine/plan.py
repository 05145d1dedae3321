"""Planning a batch: which files are RAW, how inputs expand, where each output goes, and which
jobs cannot run (two inputs with one output, an output that would replace an input)."""

from __future__ import annotations

import errno
import glob
import os
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from raw2rgb_plugin.engine.jobs import ConvertJob
from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.vocabulary import RAW_EXTENSIONS


def is_raw_path(path: Path) -> bool:
    return path.suffix.lower() in RAW_EXTENSIONS


@dataclass
class InputProblem:
    """An input argument that named nothing convertible."""

    argument: str
    problem: str
    #: a readable folder without RAW files: a problem for `convert`, not for every caller (`learn`)
    empty_folder: bool = False


def expand_inputs(arguments: list[str], *, recursive: bool = False) -> tuple[list[Path], list[InputProblem]]:
    """Files as given, RAW files inside folders (optionally recursive), and glob patterns.

    Order is kept and duplicates removed. A file given by name is taken whatever its extension
    (the decoder will say if it is no RAW); folders and globs only yield RAW extensions.
    """
    found: list[Path] = []
    problems: list[InputProblem] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append(path)

    for argument in arguments:
        path = Path(argument).expanduser()
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            mode = None
            if not isinstance(exc, FileNotFoundError) or os.path.islink(path):
                problems.append(InputProblem(argument, _unreachable(path, exc)))
                continue
        if mode is not None and stat.S_ISDIR(mode):
            try:
                os.scandir(path).close()
            except OSError as exc:
                why = exc.strerror or str(exc)
                problems.append(InputProblem(argument, f"cannot read this folder ({why}) — check its permissions"))
                continue
            pattern = "**/*" if recursive else "*"
            matches = sorted(p for p in path.glob(pattern) if p.is_file() and is_raw_path(p))
            if not matches:
                hint = "pass RAW files or a folder of them" if recursive else "add --recursive to look in sub-folders"
                problems.append(InputProblem(argument, f"folder holds no RAW files — {hint}", empty_folder=True))
            for match in matches:
                add(match)
        elif mode is not None:
            add(path)  # a file (or a device, a pipe: the decoder says what it is)
        elif glob.has_magic(argument):
            matches = sorted(Path(p) for p in glob.glob(argument, recursive=recursive) if Path(p).is_file())
            raws = [p for p in matches if is_raw_path(p)]
            if not raws:
                problems.append(InputProblem(argument, "pattern matches no RAW files — check the pattern and its quotes"))
            for match in raws:
                add(match)
        else:
            problems.append(InputProblem(argument, "no such file or folder — check the path"))
    return found, problems


def _unreachable(path: Path, exc: OSError) -> str:
    """Why `path` cannot be looked at, in words (stat failed)."""
    if exc.errno == errno.ELOOP:
        return "symbolic link loop — point the link at a real file"
    if isinstance(exc, FileNotFoundError) and os.path.islink(path):
        return f"broken symbolic link (to {os.readlink(path)}) — point the link at a real file"
    if isinstance(exc, PermissionError):
        return "permission denied — a folder on the way cannot be entered"
    if exc.errno == errno.ENOTDIR:
        return "no such file or folder — a part of the path is a file"
    if exc.errno == errno.ENAMETOOLONG:
        return "the name is too long for this system — shorten it"
    return f"cannot be looked at ({exc.strerror or exc}) — check the path and its permissions"


def output_path_for(input_path: Path, output_dir: Path | None, suffix: str = ".tif") -> Path:
    """`<stem><suffix>` in `output_dir`, or beside the input."""
    directory = output_dir if output_dir is not None else input_path.parent
    return directory / f"{input_path.stem}{suffix}"


@dataclass
class Plan:
    jobs: list[ConvertJob]
    #: inputs that get no job, with the reason (one line each, for the user).
    refused: list[tuple[Path, str]]


def plan_jobs(inputs: list[Path], output_dir: Path | None, suffix: str = ".tif") -> Plan:
    """One job per input, except where two inputs would write one output or an output would
    replace an input (a RAW named `x.tif` converted beside itself): those are refused up front,
    so no --overwrite can ever destroy a source."""
    jobs: list[ConvertJob] = []
    refused: list[tuple[Path, str]] = []
    sources = {_claim_key(path.resolve()) for path in inputs}
    # The same file under another name (a hard link, a symlink, another case on a case-insensitive
    # disk) is recognised by its identity, where the output already exists.
    identities = {identity for path in inputs if (identity := _identity(path)) is not None}
    claimed: dict[str, Path] = {}
    for path in inputs:
        target = output_path_for(path, output_dir, suffix)
        key = _claim_key(target.resolve())
        if key in sources or (identities and _identity(target) in identities):
            refused.append((path, f"its output {target} would replace an input file — use -o to write elsewhere"))
        elif key in claimed:
            refused.append((path, f"its output {target} is also the output of {claimed[key]} — "
                                  "convert them into different folders"))
        else:
            claimed[key] = path
            jobs.append(ConvertJob(path, target))
    return Plan(jobs, refused)


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file `path` names, or None when there is none."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def _claim_key(path: Path) -> str:
    """Output names that are one file on this system's usual disks (case-insensitive on macOS and
    Windows) map to one key."""
    text = os.fspath(path)
    return text.casefold() if sys.platform in ("darwin", "win32") else text


P = TypeVar("P", bound=Path)


def parse_shard(text: str) -> tuple[int, int]:
    """`K/N` → (k, n) with 1 ≤ k ≤ n; a one-line error otherwise."""
    try:
        k_text, n_text = text.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise Raw2RgbError(f"--shard {text!r} is not K/N", "e.g. --shard 3/8 for the third of eight machines") from None
    if not 1 <= k <= n:
        raise Raw2RgbError(f"--shard {text}: K must be from 1 to N", "SLURM: --shard $((SLURM_ARRAY_TASK_ID+1))/$N") from None
    return k, n


def shard(inputs: Sequence[P], k: int, n: int) -> list[P]:
    """The k-th (1-based) of n disjoint shares of `inputs`, in the inputs' own order.

    Inputs are ranked by their path text, so the split does not depend on the order a shell or
    a file system lists them in: N machines given the same arguments cover every input once.
    """
    ranked = sorted(range(len(inputs)), key=lambda i: str(inputs[i]))
    mine = {index for position, index in enumerate(ranked) if position % n == k - 1}
    return [path for i, path in enumerate(inputs) if i in mine]
