"""Install and uninstall the darktable and GIMP integrations for the current user.

Each host gets its files from `host_integrations/` with the absolute path of the `raw2rgb`
executable (and optionally a profile, a device and a denoise strength, the host's defaults)
written into them, because a host started from a desktop menu does not see the PATH of the
user's shell:

- darktable: `<config>/lua/raw2rgb.lua` and one `require "raw2rgb"` line in `<config>/luarc`;
- GIMP 3: `<profile>/plug-ins/file-raw2rgb/file-raw2rgb.py`, executable;
- GIMP 2.10: `<profile>/plug-ins/file-raw2rgb/file-raw2rgb`, compiled here with gimptool-2.0.

Installing is idempotent (an unchanged file is not rewritten, the luarc line is added once) and
uninstalling removes exactly what installing added, plus the folders that it leaves empty.

Longer than the ~450 lines a module should have: three hosts' install, uninstall and the literal
escaping for Lua, C and Python each need the others' conventions in view; it is outside the engine.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.io.files import write_bytes
from raw2rgb_plugin.vocabulary import DEFAULT_DENOISE, DENOISE_RANGE, DEVICE_CHOICES

HOSTS = ("darktable", "gimp", "gimp2")

LUA_MODULE = "raw2rgb"
LUARC_LINE = f'require "{LUA_MODULE}"'
#: any `require "raw2rgb"` / `require('raw2rgb')` line: uninstall removes them all, since the
#: module they load is gone.
_LUARC_REQUIRE = re.compile(r"""^\s*require\s*\(?\s*(["'])raw2rgb\1\s*\)?\s*;?\s*(--.*)?$""")

GIMP_PLUG_IN = "file-raw2rgb"
PLACEHOLDERS = {
    "executable": '"@RAW2RGB_EXECUTABLE@"',
    "profile": '"@RAW2RGB_PROFILE@"',
    "device": '"@RAW2RGB_DEVICE@"',
    "denoise": '"@RAW2RGB_DENOISE@"',
}
#: raw2rgb's own constants the plug-ins need, written as number literals where the template has
#: these (quoted, so the template itself still parses): one definition, in raw2rgb_plugin.vocabulary.
#: The GIMP 2.10 plug-in gets them as RAW2RGB_<NAME> macros in its generated header.
CONSTANTS = {"DENOISE_MIN": DENOISE_RANGE[0], "DENOISE_MAX": DENOISE_RANGE[1], "DENOISE_DEFAULT": DEFAULT_DENOISE}


class HostInstallError(Raw2RgbError):
    """A host integration cannot be installed or removed."""


# ----------------------------------------------------------------------------------------------
# where things are


def integrations_dir() -> Path:
    """The `host_integrations/` folder: this module sits in it, installed or in a checkout."""
    return Path(__file__).resolve().parent


def _config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def _gimp_profile(version: str, env_name: str) -> Path:
    override = os.environ.get(env_name)
    if override:
        return Path(override)
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "GIMP" / version
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", Path.home())) / "GIMP" / version
    return _config_home() / "GIMP" / version


def default_config_dir(host: str) -> Path:
    """The host's per-user configuration folder (the environment overrides GIMP's, as GIMP does)."""
    if host == "darktable":
        return _config_home() / "darktable"
    if host == "gimp":
        return _gimp_profile("3.0", "GIMP3_DIRECTORY")
    if host == "gimp2":
        return _gimp_profile("2.10", "GIMP2_DIRECTORY")
    raise HostInstallError(f"unknown host {host!r}", f"pick one of {', '.join(HOSTS)}")


def installed_paths(host: str, config_dir: Path) -> list[Path]:
    """The files an install puts into `config_dir` (luarc, which is edited, not included)."""
    if host == "darktable":
        return [config_dir / "lua" / f"{LUA_MODULE}.lua"]
    if host == "gimp":
        return [config_dir / "plug-ins" / GIMP_PLUG_IN / f"{GIMP_PLUG_IN}.py"]
    if host == "gimp2":
        return [config_dir / "plug-ins" / GIMP_PLUG_IN / GIMP_PLUG_IN]
    raise HostInstallError(f"unknown host {host!r}", f"pick one of {', '.join(HOSTS)}")


def find_raw2rgb_executable() -> Path:
    """The `raw2rgb` console script this process runs from, else the one on the PATH."""
    candidates: list[Path] = []
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name in ("raw2rgb", "raw2rgb.exe"):
        candidates.append(argv0)
    # the console script beside the interpreter (a virtualenv's bin/), symlinks not resolved:
    # resolving would leave the virtualenv
    candidates.append(Path(sys.executable).parent / ("raw2rgb.exe" if sys.platform == "win32" else "raw2rgb"))
    on_path = shutil.which("raw2rgb")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return Path(os.path.abspath(candidate))
    raise HostInstallError(
        "cannot find the raw2rgb executable to record for the host",
        "run this command through the installed `raw2rgb`, or pass --executable /path/to/raw2rgb",
    )


# ----------------------------------------------------------------------------------------------
# what gets recorded


@dataclass
class RecordedSettings:
    """Values written into the installed scripts; empty means "the host's / raw2rgb's default".

    All are recorded as text: `denoise` is the strength as a decimal number ("0.5"), which every
    host parses independently of its locale; where none is recorded the hosts use 1, raw2rgb's
    own default.
    """

    executable: Path
    profile: str = ""
    device: str = ""
    denoise: str = ""

    @classmethod
    def build(cls, executable: Path | None = None, profile: str | None = None, device: str | None = None,
              denoise: float | None = None) -> RecordedSettings:
        if executable is None:
            resolved = find_raw2rgb_executable()
        else:
            resolved = Path(os.path.abspath(executable.expanduser()))
            if not (resolved.is_file() and os.access(resolved, os.X_OK)):
                raise HostInstallError(f"{resolved} is not an executable file", "pass the path of the raw2rgb program")
        if device and device not in DEVICE_CHOICES:
            raise HostInstallError(f"unknown device {device!r}", f"pick one of {', '.join(DEVICE_CHOICES)}")
        recorded_denoise = ""
        if denoise is not None:
            low, high = DENOISE_RANGE
            if not (math.isfinite(denoise) and low <= denoise <= high):
                raise HostInstallError(f"--denoise {denoise:g} is outside {low:g} … {high:g}",
                                       "0 keeps all detail and grain, 1 is raw2rgb's default, 2 denoises strongly")
            recorded_denoise = f"{float(denoise) + 0.0:g}"  # + 0.0: no "-0"
        recorded_profile = profile or ""
        # a profile given as a relative path must still be found from the host's working folder
        if recorded_profile and Path(recorded_profile).expanduser().is_file():
            recorded_profile = os.path.abspath(Path(recorded_profile).expanduser())
        return cls(resolved, recorded_profile, device or "", recorded_denoise)

    def values(self) -> dict[str, str]:
        return {"executable": os.fspath(self.executable), "profile": self.profile, "device": self.device,
                "denoise": self.denoise}


def _escaped_literal(value: str, specials: str, escape: str) -> str:
    """A double-quoted literal of the bytes of `value`: printable ASCII as is, except `specials`,
    and every other byte as `escape % byte`."""
    out = []
    for byte in os.fsencode(value):
        char = chr(byte)
        out.append(char if 0x20 <= byte < 0x7F and char not in specials else escape % byte)
    return '"' + "".join(out) + '"'


def lua_string_literal(value: str) -> str:
    """A Lua string literal for the bytes of `value` (decimal escapes: \\ddd)."""
    return _escaped_literal(value, '"\\', "\\%03d")


def c_string_literal(value: str) -> str:
    """A C string literal for the bytes of `value` (octal escapes; `?` too, against trigraphs)."""
    return _escaped_literal(value, '"\\?', "\\%03o")


def python_string_literal(value: str) -> str:
    # repr() round-trips every str, surrogate-escaped bytes of odd file names included
    return repr(value)


def fill_placeholders(template: str, settings: RecordedSettings, literal, number=lambda value: f"{value:g}") -> str:
    """The recorded settings as string literals, raw2rgb's constants as `number` literals."""
    values = {PLACEHOLDERS[key]: literal(value) for key, value in settings.values().items()}
    values.update({f'"@RAW2RGB_{name}@"': number(value) for name, value in CONSTANTS.items()})
    for placeholder, text in values.items():
        if template.count(placeholder) != 1:
            raise HostInstallError(
                f"the integration template has {template.count(placeholder)} {placeholder} placeholders, expected 1",
                "reinstall raw2rgb: its host_integrations folder is damaged",
            )
        template = template.replace(placeholder, text)
    return template


# ----------------------------------------------------------------------------------------------
# a plan of steps, shown by --dry-run and carried out otherwise


@dataclass
class Step:
    description: str
    apply: Callable[[], object] | None = None  # None for a step with nothing to do

    def __str__(self) -> str:
        return self.description


@dataclass
class Plan:
    host: str
    config_dir: Path
    steps: list[Step] = field(default_factory=list)

    def add(self, description: str, apply: Callable[[], object] | None = None) -> None:
        self.steps.append(Step(description, apply))

    def run(self, dry_run: bool = False) -> list[str]:
        lines = []
        for step in self.steps:
            if step.apply is None:
                lines.append(step.description)
            elif dry_run:
                lines.append(f"would {step.description}")
            else:
                step.apply()
                lines.append(step.description)
        return lines


def _write_file(path: Path, data: bytes, mode: int) -> None:
    # write beside and rename, so a host never reads a half-written script
    write_bytes(path, data, mode=mode)


def _plan_file(plan: Plan, path: Path, data: bytes, mode: int) -> None:
    if path.is_file() and path.read_bytes() == data:
        if (path.stat().st_mode & 0o777) == mode:
            plan.add(f"keep {path} (up to date)")
        else:
            plan.add(f"set the mode of {path} to {mode:o}", lambda: os.chmod(path, mode))
        return
    verb = "update" if path.exists() else "create"
    plan.add(f"{verb} {path}", lambda: _write_file(path, data, mode))


def _prune_empty_dirs(start: Path, stop: Path) -> None:
    """Remove `start` and its parents while they are empty, never `stop` or above."""
    current = start
    while current != stop and stop in current.parents:
        try:
            current.rmdir()
        except OSError:
            return
        current = current.parent


def _plan_remove_file(plan: Plan, path: Path, config_dir: Path) -> None:
    if not path.exists() and not path.is_symlink():
        plan.add(f"nothing to remove at {path}")
        return

    def remove() -> None:
        path.unlink()
        _prune_empty_dirs(path.parent, config_dir)

    plan.add(f"remove {path}", remove)


# ----------------------------------------------------------------------------------------------
# darktable


def _luarc_with_require(text: str) -> str | None:
    """`text` with the require line appended, or None when one is already there."""
    if any(_LUARC_REQUIRE.match(line) for line in text.splitlines()):
        return None
    if text and not text.endswith("\n"):
        # keep the file's missing final newline: uninstall then restores it byte for byte
        return text + "\n" + LUARC_LINE
    return text + LUARC_LINE + "\n"


def _luarc_without_require(text: str) -> str | None:
    """`text` without any raw2rgb require line, or None when it has none."""
    lines = text.splitlines(keepends=True)
    kept = [line for line in lines if not _LUARC_REQUIRE.match(line.rstrip("\r\n"))]
    if len(kept) == len(lines):
        return None
    result = "".join(kept)
    last_removed = lines and _LUARC_REQUIRE.match(lines[-1].rstrip("\r\n"))
    if last_removed and not lines[-1].endswith("\n") and result.endswith("\n"):
        result = result[:-1]
    return result


def _plan_darktable_install(plan: Plan, settings: RecordedSettings) -> None:
    template = (integrations_dir() / "darktable" / "raw2rgb.lua").read_text(encoding="utf-8")
    script = fill_placeholders(template, settings, lua_string_literal)
    _plan_file(plan, plan.config_dir / "lua" / f"{LUA_MODULE}.lua", script.encode("utf-8"), 0o644)

    luarc = plan.config_dir / "luarc"
    current = luarc.read_text(encoding="utf-8", errors="surrogateescape") if luarc.is_file() else ""
    updated = _luarc_with_require(current)
    if updated is None:
        plan.add(f"keep {luarc} (it already requires {LUA_MODULE})")
    else:
        plan.add(
            f"add `{LUARC_LINE}` to {luarc}",
            lambda: _write_file(luarc, updated.encode("utf-8", errors="surrogateescape"), 0o644),
        )


def _plan_darktable_uninstall(plan: Plan) -> None:
    for path in installed_paths("darktable", plan.config_dir):
        _plan_remove_file(plan, path, plan.config_dir)
    luarc = plan.config_dir / "luarc"
    if not luarc.is_file():
        return
    current = luarc.read_text(encoding="utf-8", errors="surrogateescape")
    updated = _luarc_without_require(current)
    if updated is None:
        plan.add(f"keep {luarc} (it does not require {LUA_MODULE})")
    elif not updated.strip():
        # only our line was in it: the install created it
        plan.add(f"remove {luarc} (it only required {LUA_MODULE})", luarc.unlink)
    else:
        plan.add(
            f"remove `{LUARC_LINE}` from {luarc}",
            lambda: _write_file(luarc, updated.encode("utf-8", errors="surrogateescape"), luarc.stat().st_mode & 0o777),
        )


# ----------------------------------------------------------------------------------------------
# GIMP 3


def _plan_gimp_install(plan: Plan, settings: RecordedSettings) -> None:
    template = (integrations_dir() / "gimp" / GIMP_PLUG_IN / f"{GIMP_PLUG_IN}.py").read_text(encoding="utf-8")
    script = fill_placeholders(template, settings, python_string_literal, number=repr)
    (target,) = installed_paths("gimp", plan.config_dir)
    _plan_file(plan, target, script.encode("utf-8", errors="surrogateescape"), 0o755)


# ----------------------------------------------------------------------------------------------
# GIMP 2.10


def gimp2_build_flags() -> list[str]:
    """Compiler and linker flags for a libgimp 2.0 plug-in, from gimptool-2.0 (or pkg-config)."""
    gimptool = shutil.which("gimptool-2.0")
    if gimptool:
        command = [gimptool, "--cflags-noui", "--libs-noui"]
    elif shutil.which("pkg-config"):
        command = ["pkg-config", "--cflags", "--libs", "gimp-2.0"]
    else:
        raise HostInstallError(
            "cannot build the GIMP 2.10 plug-in: gimptool-2.0 is missing",
            "install GIMP's development files (Debian/Ubuntu: apt install libgimp2.0-dev gcc)",
        )
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise HostInstallError(
            f"cannot build the GIMP 2.10 plug-in: `{shlex.join(command)}` failed: {done.stderr.strip()}",
            "install GIMP's development files (Debian/Ubuntu: apt install libgimp2.0-dev)",
        )
    return shlex.split(done.stdout)


def c_compiler() -> str:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    raise HostInstallError(
        "cannot build the GIMP 2.10 plug-in: no C compiler found", "install gcc (Debian/Ubuntu: apt install gcc)"
    )


def gimp2_config_header(settings: RecordedSettings) -> str:
    values = settings.values()
    return (
        "/* generated by `raw2rgb install gimp2` */\n"
        f"#define RAW2RGB_RECORDED_EXECUTABLE {c_string_literal(values['executable'])}\n"
        f"#define RAW2RGB_RECORDED_PROFILE {c_string_literal(values['profile'])}\n"
        f"#define RAW2RGB_RECORDED_DEVICE {c_string_literal(values['device'])}\n"
        f"#define RAW2RGB_RECORDED_DENOISE {c_string_literal(values['denoise'])}\n"
        + gimp2_constants_header()
    )


def gimp2_constants_header() -> str:
    """raw2rgb's constants the GIMP 2.10 plug-in needs, as C macros (`CONSTANTS`)."""
    return "".join(f"#define RAW2RGB_{name} {float(value)!r}\n" for name, value in CONSTANTS.items())


def build_gimp2_plug_in(settings: RecordedSettings, build_dir: Path) -> Path:
    """Compile the GIMP 2.10 plug-in with the recorded settings; the path of the binary."""
    source = integrations_dir() / "gimp2" / f"{GIMP_PLUG_IN}.c"
    header = build_dir / "raw2rgb-recorded.h"
    header.write_text(gimp2_config_header(settings), encoding="ascii")
    binary = build_dir / GIMP_PLUG_IN
    command = [c_compiler(), "-O2", "-include", str(header), "-o", str(binary), str(source), *gimp2_build_flags()]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise HostInstallError(
            "building the GIMP 2.10 plug-in failed: "
            f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}",
            f"run `{shlex.join(command)}` to see the whole compiler output",
        )
    return binary


def _plan_gimp2_install(plan: Plan, settings: RecordedSettings, dry_run: bool) -> None:
    (target,) = installed_paths("gimp2", plan.config_dir)
    if dry_run:
        # nothing is built on a dry run, but a missing tool is still reported now
        compiler, flags = c_compiler(), gimp2_build_flags()
        plan.add(f"build {target} with {compiler} and {len(flags)} libgimp flags", lambda: None)
        return
    with tempfile.TemporaryDirectory(prefix="raw2rgb-gimp2-build-") as build_dir:
        binary = build_gimp2_plug_in(settings, Path(build_dir))
        data = binary.read_bytes()
    _plan_file(plan, target, data, 0o755)


# ----------------------------------------------------------------------------------------------
# entry points


def plan_install(
    host: str, config_dir: Path | None = None, settings: RecordedSettings | None = None, dry_run: bool = False
) -> Plan:
    if host not in HOSTS:
        raise HostInstallError(f"unknown host {host!r}", f"pick one of {', '.join(HOSTS)}")
    settings = settings or RecordedSettings.build()
    plan = Plan(host, Path(config_dir) if config_dir else default_config_dir(host))
    if host == "darktable":
        _plan_darktable_install(plan, settings)
    elif host == "gimp":
        _plan_gimp_install(plan, settings)
    else:
        _plan_gimp2_install(plan, settings, dry_run)
    return plan


def plan_uninstall(host: str, config_dir: Path | None = None) -> Plan:
    if host not in HOSTS:
        raise HostInstallError(f"unknown host {host!r}", f"pick one of {', '.join(HOSTS)}")
    plan = Plan(host, Path(config_dir) if config_dir else default_config_dir(host))
    if host == "darktable":
        _plan_darktable_uninstall(plan)
    else:
        for path in installed_paths(host, plan.config_dir):
            _plan_remove_file(plan, path, plan.config_dir)
    return plan


def install(host: str, config_dir: Path | None = None, settings: RecordedSettings | None = None,
            dry_run: bool = False) -> list[str]:
    """Install (or update) the integration; the lines saying what was (or would be) done."""
    return plan_install(host, config_dir, settings, dry_run).run(dry_run)


def uninstall(host: str, config_dir: Path | None = None, dry_run: bool = False) -> list[str]:
    """Remove what `install` added; the lines saying what was (or would be) done."""
    return plan_uninstall(host, config_dir).run(dry_run)
