#!/usr/bin/env python3
"""file-raw2rgb: open camera RAW files in GIMP 3 through raw2rgb (neural RAW development).

Copyright (c) the raw2rgb developers. MIT licence.

It runs `raw2rgb convert --json` into a temporary folder, opens the 16-bit TIFF whose path raw2rgb
reports in its JSON summary (with its ICC profile and EXIF) through GIMP's TIFF loader, and removes
the temporary files.

Procedures
  file-raw2rgb-raw-load  the RAW loader: pick it under Edit > Preferences > Image Import & Export >
                         Raw Image Importer. Profile and device come from the environment
                         (RAW2RGB_PROFILE, RAW2RGB_DEVICE), else from `raw2rgb install gimp`; its
                         arguments "denoise" (0-2, the denoising strength) and "lens-corrections"
                         (on: `--lens auto`, off: `--lens off`) are shown in a dialog when a RAW is
                         opened interactively.
  plug-in-raw2rgb-open   the same with explicit profile, device, denoise and lens-corrections
                         arguments, for batch use.
Arguments added later come last and have defaults, so callers written before them still work.
"lens-corrections" is a boolean, not a choice of "auto" and "off": GIMP 3.0's own file loading
passes an empty string for a load procedure's choice argument, which GIMP then refuses.

Installed by `raw2rgb install gimp` as <GIMP profile>/plug-ins/file-raw2rgb/file-raw2rgb.py; the
installer records the absolute path of the raw2rgb executable below, because GIMP started from a
desktop menu does not see the PATH of the user's shell.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, Gio, GLib, GObject  # noqa: E402

# Filled in by `raw2rgb install gimp`; empty, or still shaped like @NAME@, means "not recorded".
RECORDED_EXECUTABLE = "@RAW2RGB_EXECUTABLE@"
RECORDED_PROFILE = "@RAW2RGB_PROFILE@"
RECORDED_DEVICE = "@RAW2RGB_DEVICE@"
RECORDED_DENOISE = "@RAW2RGB_DENOISE@"

LOAD_PROC = "file-raw2rgb-raw-load"
OPEN_PROC = "plug-in-raw2rgb-open"
PLUG_IN_BINARY = "file-raw2rgb"

#: `raw2rgb convert --denoise` range and default (0 keeps all detail and grain, 2 denoises strongly),
#: written in as numbers by `raw2rgb install gimp` from raw2rgb's own definition.
DENOISE_MIN = "@RAW2RGB_DENOISE_MIN@"
DENOISE_MAX = "@RAW2RGB_DENOISE_MAX@"
DENOISE_DEFAULT = "@RAW2RGB_DENOISE_DEFAULT@"
DENOISE_BLURB = ("Denoising strength of a noise-aware profile: 0 keeps all detail and grain, 1 is "
                 "raw2rgb's default, 2 denoises strongly; other profiles ignore it")

#: `raw2rgb convert --lens` for each value of the "lens-corrections" argument (the values are
#: raw2rgb_plugin.vocabulary.LENS_MODES; a test keeps them equal). On by default, as for any TIFF.
LENS_MODES = {True: "auto", False: "off"}
LENS_BLURB = ("Correct the lens's distortion, colour fringes and vignetting from lensfun's database "
              "(found by the file's camera, lens and settings); off leaves them as they are")

#: raw2rgb_plugin.engine.plan.RAW_EXTENSIONS (a test keeps them equal).
RAW_EXTENSIONS = (
    "3fr,ari,arw,bay,cr2,cr3,crw,cs1,dcr,dcs,dng,drf,eip,erf,fff,gpr,iiq,k25,kdc,mdc,mef,mos,"
    "mrw,nef,nrw,orf,pef,ptx,pxn,qtk,raf,raw,rw2,rwl,rwz,sr2,srf,srw,sti,x3f"
)


class ConversionError(Exception):
    """A one-line message for the user: what went wrong and what to do."""


def _recorded(value):
    if value.startswith("@RAW2RGB_") and value.endswith("@"):
        return ""
    return value


def _setting(env_name, recorded):
    return os.environ.get(env_name) or _recorded(recorded)


def recorded_denoise():
    """The strength `raw2rgb install gimp --denoise` recorded, else raw2rgb's default: the default
    of the "denoise" arguments (GIMP fills an argument a caller leaves out with its default)."""
    try:
        value = float(_recorded(RECORDED_DENOISE))
    except ValueError:
        return DENOISE_DEFAULT
    return value if DENOISE_MIN <= value <= DENOISE_MAX else DENOISE_DEFAULT


def denoise_argument(value):
    """`--denoise`'s value: a plain decimal ("0.5", "1"); format() ignores the locale."""
    return format(min(DENOISE_MAX, max(DENOISE_MIN, float(value))) + 0.0, "g")


def raw2rgb_executable():
    return _setting("RAW2RGB_EXECUTABLE", RECORDED_EXECUTABLE) or shutil.which("raw2rgb") or "raw2rgb"


def _last_line(text):
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _summary_entry(stdout):
    """The first `files` entry of `raw2rgb convert --json`'s summary, or None without one.

    raw2rgb reports each file's output path (and a failure's reason) there; the TIFF's name is not
    guessed from the RAW's, as darktable's storage does not guess it either. No summary comes when
    raw2rgb stops before converting anything (no converter, a bad profile: exit status 2).
    """
    try:
        # undecodable bytes of a file name come back as they were (os functions re-encode them)
        summary = json.loads(stdout.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError):
        return None
    files = summary.get("files") if isinstance(summary, dict) else None
    if not isinstance(files, list) or not files or not isinstance(files[0], dict):
        return None
    return files[0]


def convert_to_tiff(source, folder, profile, device, denoise, correct_lens):
    """Run `raw2rgb convert --json` on `source` into `folder`; the path of the TIFF it wrote."""
    executable = raw2rgb_executable()
    command = [executable, "convert", source, "--output-dir", folder, "--device", device or "auto",
               "--denoise", denoise_argument(denoise), "--lens", LENS_MODES[bool(correct_lens)]]
    if profile:
        command += ["--profile", profile]
    command += ["--overwrite", "--quiet", "--json"]
    name = os.path.basename(source)
    Gimp.progress_init(f"Developing {name} with raw2rgb")
    try:
        # an argument list, no shell: file names need no quoting
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
    except OSError as exc:
        raise ConversionError(
            f"raw2rgb: cannot run {executable} ({exc.strerror}) — run `raw2rgb install gimp` again "
            "or set RAW2RGB_EXECUTABLE"
        ) from exc
    while True:
        try:
            output, errors = process.communicate(timeout=0.25)
            break
        except subprocess.TimeoutExpired:
            Gimp.progress_pulse()  # raw2rgb reports no fraction: show that it is alive
    entry = _summary_entry(output)
    status = entry.get("status") if entry else None
    tiff = entry.get("output") if entry else None
    if status in ("converted", "skipped") and isinstance(tiff, str) and tiff:
        if not os.path.isfile(tiff):
            raise ConversionError(f"raw2rgb reported {tiff} for {name}, but there is no such file")
        return tiff
    reason = entry.get("error") if entry else None
    if not isinstance(reason, str) or not reason.strip():
        # no summary (or no reason in it): the converter's last word on stderr
        reason = _last_line(errors.decode("utf-8", "replace"))
    if not reason and process.returncode == 0:
        raise ConversionError(f"raw2rgb reported success but wrote no TIFF for {name}")
    raise ConversionError(
        f"raw2rgb could not convert {name}: {reason or 'the converter failed without a message'}"
    )


def load_with_raw2rgb(gfile, profile, device, denoise, correct_lens):
    """Develop the RAW `gfile` with raw2rgb and open the result as a 16-bit GIMP image."""
    source = gfile.get_path()
    if source is None:
        raise ConversionError("raw2rgb opens local files only — copy the RAW file to a local folder")
    with tempfile.TemporaryDirectory(prefix="raw2rgb-gimp-") as folder:
        tiff = convert_to_tiff(source, folder, profile, device, denoise, correct_lens)
        Gimp.progress_set_text(f"Opening the TIFF raw2rgb developed from {os.path.basename(source)}")
        image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(tiff))
        if image is None:
            raise ConversionError(
                f"raw2rgb converted {os.path.basename(source)}, but GIMP could not open the TIFF it wrote"
            )
        return image


def _error(procedure, message):
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(message))


def _add_denoise_argument(procedure):
    procedure.add_double_argument("denoise", "Denoise", DENOISE_BLURB, DENOISE_MIN, DENOISE_MAX,
                                  recorded_denoise(), GObject.ParamFlags.READWRITE)


def _add_lens_argument(procedure):
    procedure.add_boolean_argument("lens-corrections", "Lens corrections", LENS_BLURB, True,
                                   GObject.ParamFlags.READWRITE)


def _ask_for_settings(procedure, config):
    """The load procedure's dialog (its "denoise" and "lens-corrections" arguments); False when
    the user cancels it.

    GIMP 3 load procedures take arguments beyond the file and may show their own dialog when run
    interactively (as GIMP's PDF and SVG importers do), so File > Open of a RAW asks for the
    strength here. The config GIMP hands over holds the value used last time (GIMP remembers the
    arguments of interactive runs), the defaults the first time. Non-interactive loads
    (scripts, Gimp.file_load, batch) show nothing and use the argument as given.
    """
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi

    GimpUi.init(PLUG_IN_BINARY)
    dialog = GimpUi.ProcedureDialog.new(procedure, config, "Develop with raw2rgb")
    dialog.fill(["denoise", "lens-corrections"])
    try:
        return dialog.run()
    finally:
        dialog.destroy()


def _success(image):
    return Gimp.ValueArray.new_from_values([
        GObject.Value(Gimp.PDBStatusType, Gimp.PDBStatusType.SUCCESS),
        GObject.Value(Gimp.Image, image),
    ])


class Raw2RgbPlugIn(Gimp.PlugIn):
    def do_query_procedures(self):
        return [LOAD_PROC, OPEN_PROC]

    def do_create_procedure(self, name):
        if name == LOAD_PROC:
            procedure = Gimp.LoadProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run_load, None)
            procedure.set_menu_label("Camera RAW developed by raw2rgb")
            procedure.set_documentation(
                "Open a camera RAW file developed by raw2rgb (neural RAW-to-RGB)",
                "Runs `raw2rgb convert` on the RAW file and opens the 16-bit TIFF it writes, with "
                "its ICC profile and EXIF. The profile and device come from RAW2RGB_PROFILE and "
                "RAW2RGB_DEVICE, else from the values `raw2rgb install gimp` recorded, else "
                "raw2rgb's defaults. The denoise and lens-corrections arguments are asked for in a "
                "dialog when run interactively; denoise defaults to the strength `raw2rgb install "
                "gimp` recorded, else 1, lens-corrections to on (`raw2rgb convert --lens auto`).",
                name,
            )
            procedure.set_attribution("raw2rgb developers", "raw2rgb developers (MIT)", "2025")
            procedure.set_mime_types("image/x-dcraw")
            procedure.set_extensions(RAW_EXTENSIONS)
            # no magics: a DNG starts like any TIFF, so only the extension can tell it
            procedure.set_handles_raw(True)
            _add_denoise_argument(procedure)
            _add_lens_argument(procedure)
            return procedure
        if name == OPEN_PROC:
            procedure = Gimp.Procedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run_open, None)
            procedure.set_documentation(
                "Open a camera RAW file through raw2rgb with a given profile, device, denoise strength "
                "and lens corrections",
                f"Batch form of {LOAD_PROC}: the profile, device, denoise strength and lens corrections "
                "are arguments.",
                name,
            )
            procedure.set_attribution("raw2rgb developers", "raw2rgb developers (MIT)", "2025")
            procedure.add_enum_argument("run-mode", "Run mode", "The run mode", Gimp.RunMode,
                                        Gimp.RunMode.NONINTERACTIVE, GObject.ParamFlags.READWRITE)
            procedure.add_file_argument("file", "RAW file", "The camera RAW file to open",
                                        Gimp.FileChooserAction.OPEN, False, None, GObject.ParamFlags.READWRITE)
            procedure.add_string_argument("profile", "Profile",
                                          "raw2rgb profile name or .safetensors path (empty: raw2rgb's default)",
                                          "", GObject.ParamFlags.READWRITE)
            procedure.add_string_argument("device", "Device", "auto, cpu, cuda or mps (empty: auto)",
                                          "auto", GObject.ParamFlags.READWRITE)
            _add_denoise_argument(procedure)
            _add_lens_argument(procedure)
            procedure.add_image_return_value("image", "Image", "The 16-bit image raw2rgb developed",
                                             False, GObject.ParamFlags.READWRITE)
            return procedure
        return None

    def run_load(self, procedure, run_mode, file, metadata, flags, config, data):
        profile = _setting("RAW2RGB_PROFILE", RECORDED_PROFILE)
        device = _setting("RAW2RGB_DEVICE", RECORDED_DEVICE)
        if run_mode == Gimp.RunMode.INTERACTIVE and not _ask_for_settings(procedure, config):
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error()), flags
        try:
            image = load_with_raw2rgb(file, profile, device, config.get_property("denoise"),
                                      config.get_property("lens-corrections"))
        except ConversionError as exc:
            return _error(procedure, str(exc)), flags
        # the TIFF loader already gave the image raw2rgb's ICC profile and EXIF: keep them
        return _success(image), Gimp.MetadataLoadFlags.NONE

    def run_open(self, procedure, config, data):
        file = config.get_property("file")
        if file is None:
            return _error(procedure, "raw2rgb: no RAW file given")
        try:
            image = load_with_raw2rgb(file, config.get_property("profile"), config.get_property("device"),
                                      config.get_property("denoise"), config.get_property("lens-corrections"))
        except ConversionError as exc:
            return _error(procedure, str(exc))
        return _success(image)

if __name__ == "__main__":
    Gimp.main(Raw2RgbPlugIn.__gtype__, sys.argv)
