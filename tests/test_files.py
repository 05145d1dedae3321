"""io/files: every file the project writes appears whole or not at all."""

from __future__ import annotations

import json
import os
import stat

import pytest

from raw2rgb_plugin.errors import OutputExistsError
from raw2rgb_plugin.io.files import PARTIAL_NAME, atomic_output, write_bytes, write_json, write_text


def test_helpers_create_the_folder_and_replace_the_previous_version(tmp_path):
    path = write_json(tmp_path / "new" / "state.json", {"step": 1})
    write_json(path, {"step": 2})
    assert json.loads(path.read_text()) == {"step": 2} and path.read_text().endswith("\n")
    assert write_text(tmp_path / "a.md", "é").read_bytes() == "é".encode()
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]


def test_an_interrupted_write_keeps_the_old_file_and_leaves_no_partial(tmp_path):
    path = write_bytes(tmp_path / "checkpoint.pt", b"old")
    with pytest.raises(KeyboardInterrupt), atomic_output(path, overwrite=True) as out:
        out.write(b"half of the new")
        raise KeyboardInterrupt
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["checkpoint.pt"]


def test_no_overwrite_means_never_replaced(tmp_path):
    path = write_bytes(tmp_path / "photo.tif", b"theirs")
    with pytest.raises(OutputExistsError):
        write_bytes(path, b"ours", overwrite=False)
    assert path.read_bytes() == b"theirs"


def test_mode_and_partial_names(tmp_path):
    script = write_bytes(tmp_path / "plugin.py", b"#!/usr/bin/env python3\n", mode=0o755)
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    with atomic_output(tmp_path / "x.tif", overwrite=False) as out:
        [partial] = [p for p in os.listdir(tmp_path) if p != "plugin.py"]
        assert PARTIAL_NAME.match(partial)  # what remove_stale_partials recognises as ours
        out.write(b"x")
