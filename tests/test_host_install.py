"""`raw2rgb install|uninstall`: files, luarc edits, recorded values, idempotency, exact undo.

All in temporary config folders; the real hosts are driven in tests/hosts/.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
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
from raw2rgb_plugin.vocabulary import LENS_MODES, RAW_EXTENSIONS

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
    assert 'local RECORDED_DENOISE = ""' in script  # none recorded: the script's default, 1
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
    assert recorded == {"RECORDED_EXECUTABLE": str(executable), "RECORDED_PROFILE": "my profile", "RECORDED_DEVICE": "cpu",
                        "RECORDED_DENOISE": ""}

    before = snapshot(profile)
    assert all(line.startswith("keep ") for line in install("gimp", profile, settings))
    assert snapshot(profile) == before

    uninstall("gimp", profile)
    assert snapshot(profile) == {}


def gimp2_build_tools_missing() -> str | None:
    """Why `raw2rgb install gimp2` cannot build here (as install.py looks for its tools), or None."""
    if not any(name and shutil.which(name) for name in (os.environ.get("CC"), "cc", "gcc", "clang")):
        return "no C compiler (apt install gcc)"
    if shutil.which("gimptool-2.0"):
        command = ["gimptool-2.0", "--cflags-noui", "--libs-noui"]
    elif shutil.which("pkg-config"):
        command = ["pkg-config", "--cflags", "--libs", "gimp-2.0"]
    else:
        return "neither gimptool-2.0 nor pkg-config: GIMP 2's development files are not installed"
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return (f"`{' '.join(command)}` fails: GIMP 2's development files are not installed "
                f"(apt install libgimp2.0-dev): {done.stderr.strip()}")
    return None


def test_gimp2_dry_run_builds_nothing(tmp_path, settings):
    missing = gimp2_build_tools_missing()
    if missing:
        pytest.skip(missing)
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
                      'putchar(0);fputs(RAW2RGB_RECORDED_PROFILE, stdout);'
                      'putchar(0);fputs(RAW2RGB_RECORDED_DENOISE, stdout);return 0;}\n')
    subprocess.run([compiler, "-include", str(header), "-o", str(tmp_path / "print"), str(source)], check=True)
    printed = subprocess.run([str(tmp_path / "print")], capture_output=True, check=True).stdout
    assert printed == os.fsencode(str(settings.executable)) + b"\0my profile\0"

    header.write_text(host_install.gimp2_config_header(RecordedSettings.build(settings.executable, denoise=0.5)))
    subprocess.run([compiler, "-include", str(header), "-o", str(tmp_path / "print"), str(source)], check=True)
    printed = subprocess.run([str(tmp_path / "print")], capture_output=True, check=True).stdout
    assert printed.split(b"\0")[2] == b"0.5"


# The GIMP 2.10 plug-in reads `raw2rgb convert --json` with its own small JSON reader (libgimp
# brings no JSON parser). A harness compiles the plug-in's source with MAIN() emptied and feeds
# read_summary documents; Python's json module, with the GIMP 3 plug-in's rules, is the reference.
SUMMARY_HARNESS = r"""
#include <stdio.h>
#include <libgimp/gimp.h>
#undef MAIN
#define MAIN()
#include SOURCE

static void
show (const gchar *value)
{
  const gchar *c;

  if (! value)
    {
      puts ("-");
      return;
    }
  putchar ('=');
  for (c = value; *c; c++)
    printf ("%02x", (guchar) *c);
  putchar ('\n');
}

int
main (void)
{
  GString    *text = g_string_new (NULL);
  gchar       buffer[4096];
  gsize       n;
  FileReport  report;
  gboolean    found;

  while ((n = fread (buffer, 1, sizeof buffer, stdin)) > 0)
    g_string_append_len (text, buffer, n);
  found = read_summary (text->str, text->len, &report);
  puts (found ? "found" : "none");
  show (report.status);
  show (report.output);
  show (report.error);
  file_report_clear (&report);
  g_string_free (text, TRUE);
  return 0;
}
"""


@pytest.fixture(scope="module")
def summary_reader(tmp_path_factory) -> Path:
    missing = gimp2_build_tools_missing()
    if missing:
        pytest.skip(missing)
    folder = tmp_path_factory.mktemp("summary-reader")
    source = folder / "harness.c"
    source.write_text(SUMMARY_HARNESS)
    plug_in = host_install.integrations_dir() / "gimp2" / "file-raw2rgb.c"
    binary = folder / "harness"
    constants = folder / "constants.h"  # what `raw2rgb install gimp2` passes with -include
    constants.write_text(host_install.gimp2_constants_header())
    flags = shlex.split(subprocess.run(["gimptool-2.0", "--cflags-noui", "--libs-noui"] if shutil.which("gimptool-2.0")
                                       else ["pkg-config", "--cflags", "--libs", "gimp-2.0"],
                                       capture_output=True, text=True, check=True).stdout)
    compiler = host_install.c_compiler()
    base = [compiler, "-O1", "-g", "-Wall", f"-DSOURCE={c_string_literal(str(plug_in))}", "-include", str(constants),
            "-o", str(binary), str(source)]
    # with the sanitizers where the compiler has them: the reader walks raw bytes
    built = subprocess.run([*base, "-fsanitize=address,undefined", "-fno-sanitize-recover=all", *flags],
                           capture_output=True, text=True, check=False)
    if built.returncode != 0:
        built = subprocess.run([*base, *flags], capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr
    return binary


def read_with_plug_in(binary: Path, document: bytes) -> tuple[bool, bytes | None, bytes | None, bytes | None]:
    done = subprocess.run([str(binary)], input=document, capture_output=True, check=False,
                          env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1"))
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    found, *fields = done.stdout.decode("ascii").split("\n")[:4]
    return (found == "found", *(None if f == "-" else bytes.fromhex(f[1:]) for f in fields))


def representable(value) -> bool:
    """Whether the C plug-in can hold every string in `value`: no NUL, and no surrogate but the
    ones Python's surrogateescape makes of undecodable bytes (U+DC80-U+DCFF)."""
    if isinstance(value, str):
        return "\0" not in value and not any(0xD800 <= ord(c) < 0xDC80 or 0xDD00 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return all(representable(k) and representable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(representable(v) for v in value)
    return True


def read_with_python(document: bytes) -> tuple[bool, bytes | None, bytes | None, bytes | None]:
    """The GIMP 3 plug-in's reading: the first `files` entry, its strings as file-system bytes."""
    try:
        summary = json.loads(document.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError):
        return (False, None, None, None)
    files = summary.get("files") if isinstance(summary, dict) else None
    if not isinstance(files, list) or not files or not isinstance(files[0], dict) or not representable(summary):
        return (False, None, None, None)
    return (True, *(os.fsencode(v) if isinstance(v, str) else None
                    for v in (files[0].get(k) for k in ("status", "output", "error"))))


HOSTILE_TIFF = "/tmp/raw2rgb-gimp-x/it's \"q\" \\ back\\slash /slash 写真 😀 tab\t nl\n \x7f é.tif"


def raw2rgb_summary(*entries: dict, ensure_ascii: bool = False) -> bytes:
    """A summary as `raw2rgb convert --json` prints it (its json.dumps call, indent 2)."""
    document = {"profile": "default", "device": "cpu", "dtype": "float32", "converted": 1, "skipped": 0,
                "failed": 0, "seconds": 1.5, "files": list(entries)}
    return (json.dumps(document, indent=2, ensure_ascii=ensure_ascii) + "\n").encode("utf-8", "surrogateescape")


def entry(output, status="converted", error=None) -> dict:
    return {"input": "/raws/it's \"q\".dng", "output": output, "status": status, "error": error,
            "seconds": 0.5, "size": [192, 128], "timings": {"decoding": 0.1, "rendering": 0.3e-2}}


SUMMARIES = {
    "converted": raw2rgb_summary(entry(HOSTILE_TIFF), entry("/second.tif")),
    "converted, ASCII escapes and surrogate pairs": raw2rgb_summary(entry(HOSTILE_TIFF), ensure_ascii=True),
    "failed, reason with escapes": raw2rgb_summary(
        entry(None, "failed", 'cannot open the RAW file ("bad" \\ 写真 😀) — the file may be damaged'), ensure_ascii=True),
    "failed, raw UTF-8 reason": raw2rgb_summary(entry(None, "failed", "écrit « mal » 😀")),
    "undecodable file-name bytes, raw": raw2rgb_summary(entry(os.fsdecode(b"/tmp/\xff\xfe name.tif"))),
    "undecodable file-name bytes, escaped": raw2rgb_summary(entry(os.fsdecode(b"/tmp/\xff\xfe name.tif")), ensure_ascii=True),
    "every short escape": b'{"files": [{"output": "\\" \\\\ \\/ \\b \\f \\n \\r \\t '
                          b'\\u00e9 \\u20AC \\uD834\\uDD1E", "status": "converted"}]}',
    "keys in another order, repeated": b'{"files":[{"error":null,"output":"/a.tif","status":"failed",'
                                       b'"output":"/b.tif","status":"skipped"}],"profile":"x"}',
    "a later files key wins": b'{"files": [{"output": "/a.tif"}], "files": [{"output": "/b.tif", "status": "converted"}]}',
    "non-string values": b'{"files": [{"output": 12, "status": ["converted"], "error": {"a": [1, -2.5e+3, true, false, null]}}]}',
    "first entry not an object": b'{"files": [null, {"output": "/a.tif"}]}',
    "no files": b'{"files": []}',
    "files not an array": b'{"files": {"output": "/a.tif"}}',
    "not an object": b'[{"files": []}]',
    "empty": b"",
    "truncated": raw2rgb_summary(entry(HOSTILE_TIFF))[:-40],
    "trailing text": raw2rgb_summary(entry("/a.tif")) + b"done\n",
    "lone high surrogate": b'{"files": [{"output": "/a\\ud83d.tif"}]}',
    "high surrogate then no low one": b'{"files": [{"output": "/a\\ud83d\\u0041.tif"}]}',
    "lone low surrogate below the escaped bytes": b'{"files": [{"output": "/a\\udc41.tif"}]}',
    "escaped NUL": b'{"files": [{"output": "/a\\u0000.tif"}]}',
    "short \\u escape": b'{"files": [{"output": "/a\\u12"}]}',
    "unknown escape": b'{"files": [{"output": "/a\\x41.tif"}]}',
    "raw control character": b'{"files": [{"output": "/a\n.tif"}]}',
    "bad number": b'{"files": [{"output": "/a.tif", "seconds": 01}]}',
    "bad literal": b'{"files": [{"output": "/a.tif", "error": nul}]}',
    "missing comma": b'{"files": [{"output": "/a.tif" "status": "converted"}]}',
    "trailing comma": b'{"files": [{"output": "/a.tif",}]}',
    "deep nesting": b'{"files": [{"output": "/a.tif", "x": ' + b"[" * 100000 + b"]" * 100000 + b"}]}",
    "open nesting": b'{"files": [{"output": "/a.tif", "x": ' + b"[" * 100000,
}


def test_gimp2_plug_in_reads_the_summary_as_python_does(summary_reader):
    for name, document in SUMMARIES.items():
        if name == "deep nesting":
            expected = (False, None, None, None)  # deeper than the plug-in follows (and Python's stack)
        else:
            expected = read_with_python(document)
        assert read_with_plug_in(summary_reader, document) == expected, name
    # the cases mean what they say
    assert read_with_python(SUMMARIES["converted, ASCII escapes and surrogate pairs"])[2] == HOSTILE_TIFF.encode()
    assert b"\\u" in SUMMARIES["converted, ASCII escapes and surrogate pairs"]
    assert read_with_python(SUMMARIES["undecodable file-name bytes, escaped"])[2] == b"/tmp/\xff\xfe name.tif"
    assert read_with_python(SUMMARIES["every short escape"])[2] == '" \\ / \b \f \n \r \t é € 𝄞'.encode()


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


def test_recorded_denoise_is_a_plain_decimal_in_raw2rgbs_range(executable):
    assert RecordedSettings.build(executable).denoise == ""  # none: each host uses 1
    for given, recorded in ((0.5, "0.5"), (0, "0"), (-0.0, "0"), (2, "2"), (1.25, "1.25"), (0.1, "0.1")):
        assert RecordedSettings.build(executable, denoise=given).denoise == recorded, given
    for bad in (-0.01, 2.01, float("nan"), float("inf")):
        with pytest.raises(host_install.HostInstallError, match="--denoise"):
            RecordedSettings.build(executable, denoise=bad)


def test_the_recorded_denoise_reaches_every_installed_file(tmp_path, executable):
    settings = RecordedSettings.build(executable, "my profile", "cpu", 0.5)

    install("darktable", tmp_path / "dt", settings)
    assert 'local RECORDED_DENOISE = "0.5"' in (tmp_path / "dt" / "lua" / "raw2rgb.lua").read_text(encoding="utf-8")

    install("gimp", tmp_path / "gimp3", settings)
    plug_in = (tmp_path / "gimp3" / "plug-ins" / "file-raw2rgb" / "file-raw2rgb.py").read_text(encoding="utf-8")
    assert "RECORDED_DENOISE = '0.5'\n" in plug_in

    assert '#define RAW2RGB_RECORDED_DENOISE "0.5"\n' in host_install.gimp2_config_header(settings)


def test_the_denoise_range_is_raw2rgbs_own_in_every_installed_file(tmp_path, executable, monkeypatch):
    """One definition (raw2rgb_plugin.vocabulary): the installer writes it into each plug-in."""
    monkeypatch.setattr(host_install, "CONSTANTS", {**host_install.CONSTANTS, "DENOISE_MAX": 3.0})
    settings = RecordedSettings.build(executable)
    install("darktable", tmp_path / "dt", settings)
    lua = (tmp_path / "dt" / "lua" / "raw2rgb.lua").read_text(encoding="utf-8")
    assert "local DENOISE_MIN, DENOISE_MAX, DENOISE_DEFAULT = 0, 3, 1\n" in lua
    install("gimp", tmp_path / "gimp3", settings)
    plug_in = (tmp_path / "gimp3" / "plug-ins" / "file-raw2rgb" / "file-raw2rgb.py").read_text(encoding="utf-8")
    assert "DENOISE_MIN = 0.0\nDENOISE_MAX = 3.0\nDENOISE_DEFAULT = 1.0\n" in plug_in
    assert "@RAW2RGB_DENOISE" not in lua + plug_in
    header = host_install.gimp2_config_header(settings)
    assert "#define RAW2RGB_DENOISE_MIN 0.0\n#define RAW2RGB_DENOISE_MAX 3.0\n#define RAW2RGB_DENOISE_DEFAULT 1.0\n" in header


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


def test_plug_ins_offer_converts_lens_modes():
    """Each plug-in spells `convert --lens`'s choices out (its own logic depends on what they
    mean): a new mode in raw2rgb has to reach them."""
    root = host_install.integrations_dir()
    lua = (root / "darktable" / "raw2rgb.lua").read_text()
    lua_list = re.search(r"local LENS_MODES = \{([^}]*)\}", lua).group(1)
    assert tuple(re.findall(r'"([^"]*)"', lua_list)) == LENS_MODES
    # the GIMPs' "lens-corrections" yes/no argument: yes is the first mode, raw2rgb's TIFF default
    py = (root / "gimp" / "file-raw2rgb" / "file-raw2rgb.py").read_text()
    py_modes = ast.literal_eval(re.search(r"^LENS_MODES = (\{.*\})$", py, re.MULTILINE).group(1))
    assert (py_modes[True], py_modes[False]) == LENS_MODES
    c_source = (root / "gimp2" / "file-raw2rgb.c").read_text()
    c_list = re.search(r"LENS_MODES\[\] = \{([^}]*)\};", c_source).group(1)
    assert tuple(re.findall(r'"([^"]*)"', c_list)) == LENS_MODES


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
    base = ["install", "darktable", "--config-dir", str(config), "--executable", str(executable)]
    result = runner.invoke(app, [*base, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would create" in result.output and snapshot(config) == {}

    result = runner.invoke(app, [*base, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (config / "lua" / "raw2rgb.lua").is_file()

    result = runner.invoke(app, ["uninstall", "darktable", "--config-dir", str(config)])
    assert result.exit_code == 0, result.output
    assert snapshot(config) == {}


def test_cli_records_the_denoise_strength(tmp_path, executable):
    runner = CliRunner()
    config = tmp_path / "dt"
    result = runner.invoke(app, ["install", "darktable", "--config-dir", str(config), "--executable", str(executable),
                                 "--denoise", "0.25"])
    assert result.exit_code == 0, result.output
    assert 'local RECORDED_DENOISE = "0.25"' in (config / "lua" / "raw2rgb.lua").read_text(encoding="utf-8")

    result = runner.invoke(app, ["install", "gimp", "--config-dir", str(tmp_path / "gimp3"),
                                 "--executable", str(executable), "--denoise", "2.5"])
    assert result.exit_code == 1
    assert "--denoise 2.5 is outside 0 … 2" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "gimp3").exists()


def test_cli_reports_a_bad_executable_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["install", "gimp", "--config-dir", str(tmp_path), "--executable", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "is not an executable file" in result.output
    assert "Traceback" not in result.output
