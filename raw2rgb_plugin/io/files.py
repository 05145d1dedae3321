"""Writing a file so that it appears whole or not at all: the one way every writer does it.

The data goes to `.<name>.partial-<12 hex digits>` beside the target (same filesystem, so the
final rename is atomic), is fsynced, then moved into place; on any error or interrupt the
partial file is removed. A run killed outright (SIGKILL, power loss) can leave a partial
behind: `remove_stale_partials` clears old ones, and no reader ever takes one for a real file.

- `atomic_output(path, overwrite=…)`: a binary file object (TIFF and DNG writers, checkpoints,
  anything a library can write to a file object).
- `write_bytes`, `write_text`, `write_json`: whole contents at once (caches, reports, profiles).

Without `overwrite` an existing `path` is never replaced, even one created while we were
writing (the photographs' outputs). Internal files (checkpoints, caches, reports) pass
`overwrite=True`: replacing the previous version is their point.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO

from raw2rgb_plugin.errors import OutputError, OutputExistsError, Raw2RgbError

_PARTIAL_TOKEN_BYTES = 6
#: `.<name>.partial-<12 hex digits>`: the temporary names `atomic_output` writes under.
PARTIAL_NAME = re.compile(r"^\..+\.partial-[0-9a-f]{12}$")  # 12 = 2 × _PARTIAL_TOKEN_BYTES
#: a partial file this old is left over from a run that was killed (SIGKILL, power loss): a
#: running write renames its partial within seconds, so another run's fresh one is never touched.
STALE_PARTIAL_SECONDS = 3600.0


@contextmanager
def atomic_output(path: Path, *, overwrite: bool, mode: int | None = None) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes `path` only if the block completes.

    `mode` sets the file's permission bits (e.g. 0o755 for a script); by default a plainly
    created file's (0o666 less the umask). Raises OutputError if `path` exists and not
    `overwrite`, or if it cannot be written.
    """
    path = Path(path)
    if os.path.isdir(path):
        raise OutputError(f"{path} is a folder", "rename or remove that folder, or write elsewhere with -o")
    if not overwrite and os.path.lexists(path):
        raise OutputExistsError(f"{path} already exists",
                                "use --overwrite to replace it, or choose another output name")
    partial = path.with_name(f".{path.name}.partial-{secrets.token_hex(_PARTIAL_TOKEN_BYTES)}")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise _output_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        if mode is not None:
            os.chmod(partial, mode)
        _move_into_place(partial, path, overwrite)
    except OSError as exc:
        with suppress(FileNotFoundError):
            os.unlink(partial)
        raise _output_error(path, exc) from exc
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(partial)
        raise
    _fsync_directory(path.parent)


def write_bytes(path: Path, data: bytes, *, overwrite: bool = True, mode: int | None = None) -> Path:
    """`data` as the whole of `path`, atomically (its folder is created if needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=overwrite, mode=mode) as out:
        out.write(data)
    return path


def write_text(path: Path, text: str, *, overwrite: bool = True) -> Path:
    return write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def write_json(path: Path, document: Any, *, indent: int = 1, sort_keys: bool = False, overwrite: bool = True) -> Path:
    return write_text(path, json.dumps(document, indent=indent, sort_keys=sort_keys) + "\n", overwrite=overwrite)


def remove_stale_partials(folder: Path, *, older_than: float = STALE_PARTIAL_SECONDS) -> list[Path]:
    """Delete our own partial files (`PARTIAL_NAME`) in `folder` older than `older_than` seconds;
    the paths removed. Anything else, and anything unreadable, is left alone."""
    removed: list[Path] = []
    limit = time.time() - older_than
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not PARTIAL_NAME.match(entry.name):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < limit:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _move_into_place(partial: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(partial, path)
        return
    try:
        # A hard link fails if `path` appeared since our check; rename would replace it.
        os.link(partial, path)
    except FileExistsError:
        raise OutputExistsError(f"{path} appeared while it was being written",
                                "another process wrote it; use --overwrite to replace it") from None
    except OSError:
        # Filesystems without hard links (FAT, some network shares): best effort.
        if os.path.lexists(path):
            raise OutputExistsError(f"{path} appeared while it was being written",
                                    "another process wrote it; use --overwrite to replace it") from None
        os.rename(partial, path)
        return
    os.unlink(partial)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on every platform.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _output_error(path: Path, exc: OSError) -> Raw2RgbError:
    reason = exc.strerror or str(exc)
    return OutputError(f"cannot write {path}: {reason}",
                       "check that the folder exists, is writable and has free space")
