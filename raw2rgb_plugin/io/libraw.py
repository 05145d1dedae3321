"""Opening files with LibRaw (rawpy) safely: any path the OS can name, and LibRaw's own stderr.

`LibRawHandle(path)` is `rawpy.imread` for every path: a name that is not valid UTF-8 (rawpy
encodes paths as UTF-8 and fails on a Linux file named in Latin-1) is opened through
`/proc/self/fd`, or read into memory where that does not exist. The file is opened by us first,
so a missing file, a permission problem or a symlink loop raises the `OSError` that says so,
instead of LibRaw's "Input/output error".

LibRaw prints some problems itself, on file descriptor 2 ("<file>: data corrupted at 1378",
"<file>: Unexpected end of file"), around the one-line error raw2rgb gives for the same file.
`libraw_notes(name, notes)` captures those lines while LibRaw works on `name` and appends them
to `notes` ("LibRaw: data corrupted at 1378"). The capture is process-wide and reference
counted: the first user points fd 2 at a pipe, a pump thread takes LibRaw's lines about the
files being decoded and forwards every other byte to the real stderr at once, and the last user
restores fd 2. Nothing is serialised: any number of threads decode at once under one capture.
Python's own stderr writes (progress bars, error lines) keep flowing through the pump.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import rawpy

#: Linux (and most Unixes with procfs): a path naming an open file descriptor.
_PROC_FD = "/proc/self/fd"


def libraw_name(path: Path, fd: int) -> str | None:
    """The name LibRaw can open `path` by (and prints in its messages), or None: read it into memory."""
    text = str(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    if os.path.isdir(_PROC_FD):
        return f"{_PROC_FD}/{fd}"  # unique while `fd` stays open
    return None


class LibRawHandle:
    """`path` opened by LibRaw, with LibRaw's stderr lines about it collected in `notes`.

    Raises `OSError` (missing, unreadable, a folder, a symlink loop, not a regular file) before
    LibRaw sees the file, and rawpy's `LibRawError`s from LibRaw. `close()` closes everything;
    `detach()` stops collecting notes and hands the open `rawpy.RawPy` to the caller.
    """

    def __init__(self, path: str | os.PathLike, notes: list[str] | None = None):
        self.path = Path(path)
        self.notes: list[str] = notes if notes is not None else []
        self._watch = ExitStack()
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            self._watch.callback(os.close, fd)
            self.size = _check_regular(self.path, fd)
            name = libraw_name(self.path, fd)
            self._watch.enter_context(libraw_notes(name or "unknown file", self.notes))
            if name is not None:
                self.raw = rawpy.imread(name)
            else:
                with os.fdopen(os.dup(fd), "rb") as fh:
                    self.raw = rawpy.imread(fh)
        except BaseException:
            self._watch.close()
            raise

    def sync(self) -> None:
        """Wait until every line LibRaw has printed so far is in `notes`."""
        capture = _capture
        if capture is not None:
            capture.sync()

    def detach(self) -> rawpy.RawPy:
        self._watch.close()
        return self.raw

    def close(self) -> None:
        try:
            self.raw.close()
        finally:
            self._watch.close()

    def __enter__(self) -> LibRawHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _check_regular(path: Path, fd: int) -> int:
    """The size of the file open on `fd`; OSError when it is no regular file."""
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not stat.S_ISREG(info.st_mode):
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return info.st_size


# --- LibRaw's stderr ----------------------------------------------------------------------------

#: guards the listeners (the pump takes it briefly)
_lock = threading.Lock()
#: guards setting the capture up and tearing it down (the pump never takes it)
_state_lock = threading.Lock()
_users = 0
_capture: _Capture | None = None
#: name LibRaw knows a file by → the note lists of the decodes reading it
_listeners: dict[bytes, list[list[str]]] = {}
#: written to the pipe by `_Capture.sync`; everything before it has been sorted once the pump sees it
_MARK = re.compile(rb"\0raw2rgb-sync-(\d+)\0")


class _Capture:
    """fd 2 → a pipe; a pump thread sorts what arrives (LibRaw's lines vs. everything else)."""

    def __init__(self) -> None:
        sys.stderr.flush()
        self.saved = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self.read_end = read_end
        self._seen = threading.Condition()
        self._last_mark = 0
        self._next_mark = 0
        self.thread = threading.Thread(target=self._pump, name="raw2rgb-libraw-stderr", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        while True:
            try:
                # The pipe holds at most 64 KiB and each write of under 4 KiB arrives whole, so
                # one read never splits a LibRaw message.
                chunk = os.read(self.read_end, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            marks = [int(m) for m in _MARK.findall(chunk)]
            rest = _claim(_MARK.sub(b"", chunk))
            while rest:
                try:
                    rest = rest[os.write(self.saved, rest):]
                except OSError:
                    break
            if marks:
                with self._seen:
                    self._last_mark = max(self._last_mark, *marks)
                    self._seen.notify_all()
        with self._seen:
            self._last_mark = self._next_mark
            self._seen.notify_all()

    def sync(self) -> None:
        """Return once everything written to fd 2 so far has been sorted by the pump."""
        with self._seen:
            self._next_mark += 1
            mark = self._next_mark
        try:
            os.write(2, b"\0raw2rgb-sync-%d\0" % mark)
        except OSError:
            return
        with self._seen:
            self._seen.wait_for(lambda: self._last_mark >= mark or not self.thread.is_alive(), timeout=2)

    def close(self) -> None:
        sys.stderr.flush()
        os.dup2(self.saved, 2)  # the pipe's only write end goes: the pump reads to EOF and stops
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            os.close(self.read_end)
        os.close(self.saved)


def _claim(chunk: bytes) -> bytes:
    """Take the lines LibRaw wrote about files being decoded out of `chunk`; return the rest.

    LibRaw writes each message (`<name>: <problem>`) with one `write()`; other writers' bytes may
    surround it on the same line, so the message is found by the name, not by line starts.
    """
    with _lock:
        names = list(_listeners)
    for name in names:
        pattern = re.escape(name) + rb": ([^\n]*)\n"
        found = re.findall(pattern, chunk)
        if not found:
            continue
        chunk = re.sub(pattern, b"", chunk)
        with _lock:
            for notes in _listeners.get(name, []):
                notes.extend(f"LibRaw: {m.decode('utf-8', 'replace').strip()}" for m in found)
    return chunk


def _capturing_possible() -> bool:
    if os.name != "posix" or os.environ.get("RAW2RGB_LIBRAW_STDERR") == "pass":
        return False
    try:
        os.fstat(2)
    except OSError:
        return False
    return True


@contextmanager
def libraw_stderr() -> Iterator[None]:
    """Keep fd 2 captured while the block runs (nestable, any thread): hold it around a batch so
    that the capture is set up once, not once per file."""
    global _users, _capture
    with _state_lock:
        if _users == 0 and _capturing_possible():
            _capture = _Capture()
        _users += 1
    try:
        yield
    finally:
        with _state_lock:
            _users -= 1
            if _users == 0 and _capture is not None:
                _capture.close()
                _capture = None


@contextmanager
def libraw_notes(name: str, notes: list[str]) -> Iterator[None]:
    """Append LibRaw's stderr lines about `name` to `notes` while the block runs."""
    key = os.fsencode(name)
    with libraw_stderr():
        with _lock:
            _listeners.setdefault(key, []).append(notes)
        try:
            yield
        finally:
            capture = _capture
            if capture is not None:
                capture.sync()  # lines LibRaw wrote just before returning may still be in the pipe
            with _lock:
                lists = _listeners.get(key, [])
                if any(n is notes for n in lists):
                    lists[:] = [n for n in lists if n is not notes]
                if not lists:
                    _listeners.pop(key, None)
