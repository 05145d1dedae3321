"""`raw2rgb install|uninstall`: files, luarc edits, recorded values, idempotency, exact undo.

All in temporary config folders; the real hosts are driven in tests/hosts/.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from raw2rgb_cli.main import app
from raw2rgb_host_integrations import install as host_install
from raw2rgb_host_integrations.install import (
    RecordedSettings,
    c_string_literal,
    install,
    lua_string_literal,
    uninstall,
)
from raw2rgb_plugin.engine.plan import RAW_EXTENSIONS

HOSTILE_TEXT = "/opt/my tools/it's \"raw2rgb\" $(touch x); `y` \\ ? café 写真/raw2rgb"


def snapshot(folder: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under `folder` with its mode and (for files) its bytes."""
    found = {}
    for path in sorted(folder.rglob("*")):
        mode = path.lstat().st_mode
        found[str(path.relative_to(folder))] = (stat.S_IMODE(mode), path.read_bytes() if path.is_file() else None)
    return found


@pytest.fixture
def executable(tmp_path) -> Path:
    """An executable at a path a shell would trip over."""
    folder = tmp_path / "bin dir 'q' \"$x\";`y` café"
    folder.mkdir()
    path = folder / "raw2rgb"
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def settings(executable) -> RecordedSettings:
    return RecordedSettings.build(executable, "my profile", "cpu")


# ---------------------------------------------------------------------------------------------
# darktable


def test_darktable_install_copies_the_script_and_requires_it_once(tmp_path, settings, executable):
    config = tmp_path / "dt"
    config.mkdir()

    lines = install("darktable", config, settings)
    script = (config / "lua" / "raw2rgb.lua").read_text(encoding="utf-8")
    assert (config / "luarc").read_text() == 'require "raw2rgb"\n'
    assert "@RAW2RGB_" not in script.split("local function recorded")[0]
    assert f"local RECORDED_EXECUTABLE = {lua_string_literal(str(executable))}" in script
    assert 'local RECORDED_PROFILE = "my profile"' in script
    assert 'local RECORDED_DEVICE = "cpu"' in script
    assert stat.S_IMODE((config / "lua" / "raw2rgb.lua").stat().st_mode) == 0o644
    assert any(line.startswith("create ") for line in lines)

    before = snapshot(config)
    again = install("darktable", config, settings)
    assert snapshot(config) == before
    assert all(line.startswith("keep ") for line in again), again


def test_darktable_install_keeps_an_existing_luarc_and_uninstall_restores_it_byte_for_byte(tmp_path, settings):
    config = tmp_path / "dt"
    (config / "lua" / "contrib").mkdir(parents=True)
    (config / "lua" / "contrib" / "other.lua").write_text("-- another script\n")
    for luarc_text in ('require "contrib/other"\n-- mine', 'require "contrib/other"\n', ""):
        (config / "luarc").write_text(luarc_text)
        before = snapshot(config)

        install("darktable", config, settings)
        luarc = (config / "luarc").read_text()
        assert luarc.startswith(luarc_text) and luarc.count('require "raw2rgb"') == 1
        uninstall("darktable", config)

        if luarc_text:
            assert snapshot(config) == before
        else:
            # an empty luarc holds nothing: uninstall removes the file it would leave empty
            assert not (config / "luarc").exists()


def test_darktable_uninstall_of_a_fresh_install_leaves_the_folder_as_it_was(tmp_path, settings):
    config = tmp_path / "dt"
    config.mkdir()
    install("darktable", config, settings)
    uninstall("darktable", config)
    assert snapshot(config) == {}


def test_darktable_install_does_not_repeat_an_existing_require_and_uninstall_removes_it(tmp_path, settings):
    config = tmp_path / "dt"
    config.mkdir()
    (config / "luarc").write_text("require('raw2rgb')\nrequire \"other\"\n")
    install("darktable", config, settings)
    assert (config / "luarc").read_text() == "require('raw2rgb')\nrequire \"other\"\n"
    uninstall("darktable", config)
    assert (config / "luarc").read_text() == 'require "other"\n'


def test_dry_run_changes_nothing(tmp_path, settings):
    config = tmp_path / "dt"
    config.mkdir()
    lines = install("darktable", config, settings, dry_run=True)
    assert snapshot(config) == {}
    assert lines and all(line.startswith("would ") for line in lines)

    install("darktable", config, settings)
    before = snapshot(config)
    lines = uninstall("darktable", config, dry_run=True)
    assert snapshot(config) == before
    assert any(line.startswith("would remove") for line in lines)


# ---------------------------------------------------------------------------------------------
# GIMP


def test_gimp_install_puts_an_executable_plug_in_in_its_own_folder(tmp_path, settings, executable):
    profile = tmp_path / "GIMP" / "3.0"
    profile.mkdir(parents=True)
    install("gimp", profile, settings)
    plug_in = profile / "plug-ins" / "file-raw2rgb" / "file-raw2rgb.py"
    assert stat.S_IMODE(plug_in.stat().st_mode) == 0o755

    recorded = {}
    for node in ast.parse(plug_in.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and node.targets[0].id.startswith("RECORDED_"):
            recorded[node.targets[0].id] = ast.literal_eval(node.value)
    assert recorded == {"RECORDED_EXECUTABLE": str(executable), "RECORDED_PROFILE": "my profile", "RECORDED_DEVICE": "cpu"}

    before = snapshot(profile)
    assert all(line.startswith("keep ") for line in install("gimp", profile, settings))
    assert snapshot(profile) == before

    uninstall("gimp", profile)
    assert snapshot(profile) == {}


def test_gimp2_dry_run_builds_nothing(tmp_path, settings):
    if shutil.which("gimptool-2.0") is None and shutil.which("pkg-config") is None:
        pytest.skip("no gimptool-2.0: a dry run reports the missing tool instead")
    profile = tmp_path / "GIMP" / "2.10"
    profile.mkdir(parents=True)
    lines = install("gimp2", profile, settings, dry_run=True)
    assert snapshot(profile) == {}
    assert lines[0].startswith("would build ")


def test_gimp2_config_header_compiles_to_the_recorded_bytes(tmp_path, settings):
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler")
    header = tmp_path / "recorded.h"
    header.write_text(host_install.gimp2_config_header(settings))
    source = tmp_path / "print.c"
    source.write_text('#include <stdio.h>\nint main(void){fputs(RAW2RGB_RECORDED_EXECUTABLE, stdout);'
                      'putchar(0);fputs(RAW2RGB_RECORDED_PROFILE, stdout);return 0;}\n')
    subprocess.run([compiler, "-include", str(header), "-o", str(tmp_path / "print"), str(source)], check=True)
    printed = subprocess.run([str(tmp_path / "print")], capture_output=True, check=True).stdout
    assert printed == os.fsencode(str(settings.executable)) + b"\0my profile"


def test_uninstall_with_nothing_installed_does_nothing(tmp_path):
    for host in ("darktable", "gimp", "gimp2"):
        config = tmp_path / host
        config.mkdir()
        lines = uninstall(host, config)
        assert all(line.startswith("nothing to remove") for line in lines), lines
        assert snapshot(config) == {}


# ---------------------------------------------------------------------------------------------
# recorded values and the shared RAW extension list


def lua_literal_bytes(literal: str) -> bytes:
    """Decode the literals lua_string_literal writes (printable ASCII and \\ddd only)."""
    assert literal[0] == literal[-1] == '"'
    return re.sub(rb"\\(\d{3})", lambda m: bytes([int(m.group(1))]), literal[1:-1].encode("ascii"))


def test_lua_literal_round_trips_every_byte():
    assert lua_literal_bytes(lua_string_literal(HOSTILE_TEXT)) == HOSTILE_TEXT.encode("utf-8")
    lua = shutil.which("lua5.4") or shutil.which("lua")
    if lua is None:
        return
    printed = subprocess.run([lua, "-e", f"io.write({lua_string_literal(HOSTILE_TEXT)})"],
                             capture_output=True, check=True).stdout
    assert printed == HOSTILE_TEXT.encode("utf-8")


def test_c_literal_has_no_trigraphs_or_raw_quotes():
    literal = c_string_literal("a??=b\"c\\d")
    assert "??" not in literal and literal.count('"') == 2


def test_recorded_settings_refuse_what_cannot_work(tmp_path):
    with pytest.raises(host_install.HostInstallError, match="not an executable"):
        RecordedSettings.build(tmp_path / "missing")
    script = tmp_path / "raw2rgb"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    with pytest.raises(host_install.HostInstallError, match="unknown device"):
        RecordedSettings.build(script, None, "tpu")


def test_a_relative_profile_path_is_recorded_absolute(tmp_path, monkeypatch, executable):
    (tmp_path / "mine.safetensors").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert RecordedSettings.build(executable, "mine.safetensors").profile == str(tmp_path / "mine.safetensors")
    assert RecordedSettings.build(executable, "default-lite").profile == "default-lite"


def test_plug_ins_register_the_engines_raw_extensions():
    root = host_install.integrations_dir()
    expected = sorted(ext.lstrip(".") for ext in RAW_EXTENSIONS)
    c_source = (root / "gimp2" / "file-raw2rgb.c").read_text()
    c_list = c_source.split("#define RAW_EXTENSIONS", 1)[1].split("\n\n", 1)[0]
    assert sorted("".join(re.findall(r'"([^"]*)"', c_list)).split(",")) == expected
    py_source = (root / "gimp" / "file-raw2rgb" / "file-raw2rgb.py").read_text()
    py_list = re.search(r"RAW_EXTENSIONS = \(((?:\s*\"[^\"]*\")+)\s*\)", py_source).group(1)
    assert sorted("".join(re.findall(r'"([^"]*)"', py_list)).split(",")) == expected


def test_the_default_executable_is_an_absolute_raw2rgb():
    try:
        found = host_install.find_raw2rgb_executable()
    except host_install.HostInstallError:
        pytest.skip("no raw2rgb console script in this environment")
    assert found.is_absolute() and found.name.startswith("raw2rgb") and os.access(found, os.X_OK)


# ---------------------------------------------------------------------------------------------
# the CLI


def test_cli_install_and_uninstall(tmp_path, executable):
    runner = CliRunner()
    config = tmp_path / "dt"
    config.mkdir()
    result = runner.invoke(app, ["install", "darktable", "--config-dir", str(config), "--executable", str(executable), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would create" in result.output and snapshot(config) == {}

    result = runner.invoke(app, ["install", "darktable", "--config-dir", str(config), "--executable", str(executable), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (config / "lua" / "raw2rgb.lua").is_file()

    result = runner.invoke(app, ["uninstall", "darktable", "--config-dir", str(config)])
    assert result.exit_code == 0, result.output
    assert snapshot(config) == {}


def test_cli_reports_a_bad_executable_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["install", "gimp", "--config-dir", str(tmp_path), "--executable", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "is not an executable file" in result.output
    assert "Traceback" not in result.output
