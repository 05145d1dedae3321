"""The darktable integration inside the real darktable (4.2 from Debian) under Xvfb.

Each test installs the script with `raw2rgb install darktable`, starts the full program with a
driver module (darktable_driver.lua) that imports synthetic DNGs, selects them, presses the real
export button or fires the render-free action, waits for raw2rgb's run to finish and dumps the
library, then checks the TIFFs on disk and what darktable made of them. The "editable DNG" output
is also run in darktable 5.0 (the trixie chroot of .ci/install-hosts, on this machine's Xvfb), and
its grouping is read from the library.db darktable leaves behind.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from helpers import make_classical_develop_profile
from hostrun import (
    EXPECTED_TIFF,
    HOSTILE_STEMS,
    TimedOut,
    in_trixie,
    install_integration,
    option_values,
    recorded_calls,
    run_bounded,
    run_on_host,
    tiff_summary,
    trixie_skip_reason,
    write_converter_wrapper,
    write_test_raw,
)
from xtrans_helpers import make_xtrans_profile

pytestmark = pytest.mark.hosts

DRIVER = Path(__file__).with_name("darktable_driver.lua")
DARKTABLE_TIMEOUT_S = 120
#: darktable loads luarc (the raw2rgb script) and then the driver within a few seconds.
STARTUP_TIMEOUT_S = 25
#: darktable 4.2 can deadlock while it loads Lua scripts at start-up, before any raw2rgb code
#: runs: luarc runs on a thread-pool thread, and when that thread calls a GTK-wrapped Lua
#: function (dt.preferences.register is one) while the GUI thread does not own GLib's main
#: context, g_main_context_invoke() runs the callback right there, and it locks a mutex its own
#: caller holds (seen with gdb). Here that hit about one start-up in six, also with a luarc of a
#: single dt.preferences.register call. Only that case, a driver that never started, is retried.
STARTUP_ATTEMPTS = 4
#: what `setup` records with `raw2rgb install darktable --denoise`: the preference's default
RECORDED_DENOISE = "1.5"
#: Switch off the lighttable's three default filter rules (plugins/lighttable/filtering), so that
#: darktable's collection holds every imported image. The rules are stored as numbers of collection
#: properties, and darktable 5.0.1 reads its first default rule (32, "%") as a module order filter,
#: `id NOT IN (SELECT imgid FROM main.module_order)` (seen with -d sql): it hides every image with a
#: module order. darktable gives an image one when it first processes it (the auto-applied presets,
#: for the lighttable's thumbnail, on a background thread) or applies a style to it. Each re-query
#: of the collection (every dt.database.import makes one) drops the hidden images from the
#: collection and the selection, and an export takes the selected images of the collection: the
#: images whose thumbnails darktable had made before the driver's last import were not exported
#: (under load 1 or none of 2; with a 3 s pause after the imports, none every time).
#: "off<n>" switches a rule off whatever its number means, in 4.2 and 5.0 alike.
NO_LIGHTTABLE_FILTERS = tuple(f"plugins/lighttable/filtering/off{rule}=1" for rule in range(3))


@pytest.fixture(scope="module")
def darktable() -> str:
    for program in ("darktable", "xvfb-run", "xauth"):
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed (.ci/install-hosts installs darktable, xvfb and xauth)")
    return shutil.which("darktable")


@pytest.fixture
def setup(tmp_path, raw2rgb_exe, tiny_profile, darktable):
    """A darktable config with raw2rgb installed, recording an executable path a shell would choke on
    (and a denoise strength other than raw2rgb's default)."""
    hostile_bin = tmp_path / "bin dir 'q' $x;`y`"
    hostile_bin.mkdir()
    executable = hostile_bin / "raw2rgb"
    executable.symlink_to(raw2rgb_exe)
    config = tmp_path / "darktable config"
    config.mkdir()
    install_integration(raw2rgb_exe, "darktable", config, "--executable", str(executable),
                        "--profile", str(tiny_profile), "--device", "cpu", "--denoise", RECORDED_DENOISE)
    shutil.copyfile(DRIVER, config / "lua" / "raw2rgb_test_driver.lua")
    canary = tmp_path / "darktable cwd"
    canary.mkdir()
    return {"tmp": tmp_path, "config": config, "canary": canary}


def run_darktable(setup: dict, inputs: list[Path], mode: str, *conf: str, library: str = ":memory:",
                  trixie: bool = False, lens_on: tuple[Path, ...] = ()) -> dict:
    """Run the full darktable with the driver; `trixie`: darktable 5.0 in the trixie chroot, on an
    Xvfb of this machine (the X socket is an abstract one: the chroot shares the network namespace);
    `lens_on`: inputs that get the LENS_ON_STYLE applied first (their lens correction module on)."""
    tmp = setup["tmp"]
    for name in ("cache", "dt-tmp", "home"):
        (tmp / name).mkdir(exist_ok=True)
    result_file = tmp / "driver-result.json"
    progress_file = tmp / "driver-progress.txt"
    env = dict(os.environ)
    env.update(
        HOME=str(tmp / "home"),
        RAW2RGB_TEST_RESULT=str(result_file),
        RAW2RGB_TEST_PROGRESS=str(progress_file),
        RAW2RGB_TEST_INPUTS="\n".join(str(p) for p in inputs),
        RAW2RGB_TEST_MODE=mode,
        RAW2RGB_TEST_STYLE=str(write_lens_on_style(tmp)) if lens_on else "",
        RAW2RGB_TEST_STYLED="\n".join(str(p) for p in lens_on),
        RAW2RGB_TEST_TIMEOUT="90",
    )
    darktable = ["darktable"]
    xvfb_run = ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24"]
    if trixie:
        # the X cookie where the chroot sees it; everything darktable reads or writes is in `tmp`
        xauthority = tmp / "xauthority"
        xvfb_run[1:1] = ["-f", str(xauthority)]
        darktable = in_trixie(tmp, "/usr/bin/env", f"XAUTHORITY={xauthority}", "darktable")
    command = [
        "timeout", "-k", "10", str(DARKTABLE_TIMEOUT_S),
        *xvfb_run, *darktable, "--configdir", str(setup["config"]), "--cachedir", str(tmp / "cache"),
        "--tmpdir", str(tmp / "dt-tmp"), "--library", library,
        # never .xmp files beside the test images
        "--conf", "write_sidecar_files=never",
        "--conf", "plugins/lighttable/export/storage_name=raw2rgb",
    ]
    for setting in (*NO_LIGHTTABLE_FILTERS, *conf):
        command += ["--conf", setting]
    command += ["-d", "lua", "--luacmd", 'require "raw2rgb_test_driver"']

    def driver_started() -> bool:
        return progress_file.is_file() and "started" in progress_file.read_text(encoding="utf-8")

    for attempt in range(1, STARTUP_ATTEMPTS + 1):
        progress_file.unlink(missing_ok=True)
        try:
            finished = run_bounded(command, timeout=DARKTABLE_TIMEOUT_S + 20, env=env, cwd=setup["canary"],
                                   started_by=driver_started, start_timeout=STARTUP_TIMEOUT_S)
            break
        except TimedOut as exc:
            progress = progress_file.read_text(encoding="utf-8") if progress_file.exists() else ""
            if not progress and attempt < STARTUP_ATTEMPTS:
                print(f"darktable hung while loading its Lua scripts (attempt {attempt}); starting it again")
                continue
            raise TimedOut(f"{exc}\ndriver steps:\n{progress or '(the driver never started)'}") from None
    log = finished.output[-6000:]
    assert result_file.is_file(), f"darktable wrote no driver result (exit {finished.returncode}):\n{log}"
    result = json.loads(result_file.read_text(encoding="utf-8"))
    assert "error" not in result, f"driver error: {result['error']}\n{log}"
    result["seconds"] = finished.seconds
    print(f"darktable ran {finished.seconds:.1f} s")
    return result


def assert_converted_and_grouped(result: dict, raws: list[Path], out_dir: Path) -> None:
    run = result["run"]
    assert (run["converted"], run["failed"]) == (len(raws), 0), run["messages"]
    by_path = {image["path"]: image for image in result["images"]}
    for raw in raws:
        tiff = out_dir / f"{raw.stem}.tif"
        summary = tiff_summary(tiff)
        assert summary == EXPECTED_TIFF, tiff
        assert str(tiff) in by_path, f"{tiff.name} was not imported: {sorted(by_path)}"
        imported = by_path[str(tiff)]
        assert imported["group_leader"] == str(raw), f"{tiff.name} is not grouped with its RAW"
        assert "raw2rgb-test|original" in imported["tags"], f"{tiff.name} did not get the RAW's tags"


def assert_nothing_left_behind(setup: dict, raw_dir: Path) -> None:
    assert not list(raw_dir.glob("*.xmp")), "an .xmp file was written beside the inputs"
    # the copies darktable made for the storage are deleted at once
    assert not [p for p in (setup["tmp"] / "dt-tmp").rglob("*") if p.is_file()]


def test_export_storage_converts_the_original_raw(setup):
    raw_dir = setup["tmp"] / "photos"
    raw_dir.mkdir()
    raws = [write_test_raw(raw_dir / "plain.dng"), write_test_raw(raw_dir / "second.dng", seed=1)]

    # no export format given: the storage itself must make darktable use "copy" (no render)
    result = run_darktable(setup, raws, "export")

    assert result["run"]["export_format"] == "copy"
    assert_converted_and_grouped(result, raws, raw_dir / "raw2rgb")
    assert_nothing_left_behind(setup, raw_dir)


def test_render_free_action_converts_the_selection(setup):
    raw_dir = setup["tmp"] / "photos"
    raw_dir.mkdir()
    raws = [write_test_raw(raw_dir / "action.dng", seed=2)]
    out_dir = setup["tmp"] / "developed here"

    result = run_darktable(setup, raws, "action", f"lua/raw2rgb/output_folder={out_dir}")

    assert "export_format" not in result["run"]
    assert_converted_and_grouped(result, raws, out_dir)
    assert_nothing_left_behind(setup, raw_dir)


def test_hostile_file_names_convert_and_execute_nothing(setup):
    raw_dir = setup["tmp"] / "it's a \"folder\" $(touch pwned-folder); `touch pwned-folder2`"
    raw_dir.mkdir()
    raws = [write_test_raw(raw_dir / f"{stem}.dng", seed=i) for i, stem in enumerate(HOSTILE_STEMS)]

    result = run_darktable(setup, raws, "export")

    # one batch holds at most 8 files: this ran the converter twice
    assert_converted_and_grouped(result, raws, raw_dir / "raw2rgb")
    assert not [p for p in setup["tmp"].rglob("pwned*")], "a file name was executed by the shell"
    assert not list(setup["canary"].iterdir()), "something ran in darktable's working folder"


def test_conversion_failures_are_reported_per_image(setup):
    raw_dir = setup["tmp"] / "photos"
    raw_dir.mkdir()
    raws = [write_test_raw(raw_dir / "one.dng"), write_test_raw(raw_dir / "two.dng", seed=1)]
    missing = setup["tmp"] / "no such profile.safetensors"

    result = run_darktable(setup, raws, "action", f"lua/raw2rgb/profile={missing}")

    run = result["run"]
    assert (run["converted"], run["failed"]) == (0, 2)
    assert len(run["messages"]) == 2  # one toast per image
    for raw, message in zip(sorted(raws), sorted(run["messages"])):
        assert message.startswith(f"{raw.name}: ") and "profile" in message and str(missing) in message
    assert not (raw_dir / "raw2rgb").exists() or not list((raw_dir / "raw2rgb").iterdir())
    assert sorted(image["path"] for image in result["images"]) == sorted(str(p) for p in raws)


def set_darktablerc(config: Path, key: str, value: str) -> None:
    """Set `key` in darktablerc as a user (or darktable's preferences dialog) leaves it."""
    rc = config / "darktablerc"
    lines = rc.read_text(encoding="utf-8").splitlines() if rc.is_file() else []
    lines = [line for line in lines if not line.startswith(f"{key}=")] + [f"{key}={value}"]
    rc.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_denoise_preference_reaches_the_converter(setup, raw2rgb_exe):
    raw_dir = setup["tmp"] / "photos"
    raw_dir.mkdir()
    raws = [write_test_raw(raw_dir / "grain.dng")]
    recording = write_converter_wrapper(setup["tmp"], raw2rgb_exe)
    executable = f"lua/raw2rgb/executable={recording}"

    # no denoise preference yet: the strength `raw2rgb install` recorded is its default
    result = run_darktable(setup, raws, "action", executable)
    assert_converted_and_grouped(result, raws, raw_dir / "raw2rgb")
    (first,) = recorded_calls(recording)
    assert first[0] == "convert" and option_values(first, "--denoise") == [RECORDED_DENOISE], first

    # the preference (preferences > lua options > raw2rgb: denoise strength) as darktablerc keeps it
    set_darktablerc(setup["config"], "lua/raw2rgb/denoise", "0.5")
    result = run_darktable(setup, raws, "export", executable)
    assert_converted_and_grouped(result, raws, raw_dir / "raw2rgb")
    (_, second) = recorded_calls(recording)
    assert option_values(second, "--denoise") == ["0.5"], second


# ------------------------------------------------------------------------------------------
# the "editable DNG" output: imported, grouped with its RAW, leading the group when asked


def library_groups(library: Path) -> dict[str, dict]:
    """{path: {id, group_id}} of every image in a darktable library.db (4.2 and 5.0 alike)."""
    import sqlite3

    with sqlite3.connect(f"file:{library}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT images.id, images.group_id, film_rolls.folder, images.filename "
                          "FROM images JOIN film_rolls ON images.film_id = film_rolls.id").fetchall()
    return {f"{folder}/{filename}": {"id": image_id, "group_id": group_id}
            for image_id, group_id, folder, filename in rows}


@pytest.fixture(scope="module")
def develop_profile(tmp_path_factory) -> Path:
    return make_classical_develop_profile(tmp_path_factory.mktemp("dng profile") / "develop test.safetensors")


@pytest.mark.parametrize("leader", [False, True], ids=["raw-leads", "dng-leads"])
@pytest.mark.parametrize("release", ["4.2", "5.0"])
def test_editable_dng_is_imported_and_grouped(setup, raw2rgb_exe, develop_profile, release, leader):
    trixie = release == "5.0"
    if trixie and (reason := trixie_skip_reason("darktable")):
        pytest.skip(reason)
    tmp = setup["tmp"]
    raw_dir = tmp / "photos"
    raw_dir.mkdir()
    raws = [write_test_raw(raw_dir / "first.dng"), write_test_raw(raw_dir / "it's second.dng", seed=1)]
    recording = write_converter_wrapper(tmp, raw2rgb_exe)
    # in the chroot, raw2rgb (its Python, torch) runs on this machine through a wrapper
    executable = run_on_host(tmp / "raw2rgb on the host", recording) if trixie else recording
    library = tmp / "library.db"

    result = run_darktable(
        setup, raws, "export", f"lua/raw2rgb/executable={executable}", "lua/raw2rgb/format=editable DNG",
        f"lua/raw2rgb/dng_profile={develop_profile}", f"lua/raw2rgb/dng_group_leader={'TRUE' if leader else 'FALSE'}",
        library=str(library), trixie=trixie,
    )

    run = result["run"]
    assert (run["converted"], run["failed"], run["format"]) == (2, 0, "editable DNG"), run["messages"]
    (call,) = recorded_calls(recording)
    # the DNG profile, never the TIFF profile `raw2rgb install` recorded
    assert option_values(call, "--format") == ["dng"] and option_values(call, "--profile") == [str(develop_profile)], call
    # the lens preference (auto) is for TIFFs: a DNG's lens is left to darktable's lens module
    assert option_values(call, "--lens") == [], call
    groups = library_groups(library)
    for raw in raws:
        dng = raw_dir / "raw2rgb" / raw.name  # <stem>.dng: the RAWs here are DNGs themselves
        assert dng.is_file(), f"no {dng.name} written"
        assert str(dng) in groups, f"{dng.name} was not imported: {sorted(groups)}"
        raw_row, dng_row = groups[str(raw)], groups[str(dng)]
        leader_id = dng_row["id"] if leader else raw_row["id"]
        assert raw_row["group_id"] == dng_row["group_id"] == leader_id, (
            f"{dng.name}: RAW {raw_row}, DNG {dng_row}, expected the {'DNG' if leader else 'RAW'} to lead")
        imported = next(image for image in result["images"] if image["path"] == str(dng))
        assert "raw2rgb-test|original" in imported["tags"], f"{dng.name} did not get the RAW's tags"
    assert_nothing_left_behind(setup, raw_dir)


# ------------------------------------------------------------------------------------------
# lens corrections: the preference, and darktable's own lens module on an image


#: a darktable style that switches the lens correction module on, as darktable 4.2 exports one
#: (its lens module's default params, version 6; darktable 5.0 updates them as it applies it)
LENS_ON_STYLE = """<?xml version="1.0" encoding="UTF-8"?>
<darktable_style version="1.0"><info><name>{name}</name><description>lens correction on</description></info>
<style><plugin><num>0</num><module>6</module><operation>lens</operation>
<op_params>gz07eJxjZGBgYGeAgQZ7GMvY2NiBgaHKhRHI9sgvLlEISS0uYRjJABQ2yJiBAQB7YAi6</op_params><enabled>1</enabled>
<blendop_params>gz14eJxjYIAACQYYOOHEgAZY0QVwggZ7CB6pfNoAAE8gGQg=</blendop_params><blendop_version>11</blendop_version>
<multi_priority>0</multi_priority><multi_name></multi_name></plugin></style></darktable_style>
"""

#: the sidecar darktable writes for a RAW whose lens correction module was switched on and then
#: undone by picking "original" in the history module (history_end 0): the item is there, but
#: beyond the history end, so the module is off. Trimmed from darktable 4.2's own sidecar.
LENS_UNDONE_XMP = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:darktable="http://darktable.sf.net/"
   xmp:Rating="1"
   darktable:xmp_version="5"
   darktable:auto_presets_applied="1"
   darktable:history_end="0"
   darktable:iop_order_version="2">
   <darktable:history>
    <rdf:Seq>
     <rdf:li
      darktable:num="0"
      darktable:operation="lens"
      darktable:enabled="1"
      darktable:modversion="6"
      darktable:params="gz07eJxjZGBgYGeAgQZ7GMvY2NiBgaHKhRHI9sgvLlEISS0uYRjJABQ2yJiBAQB7YAi6"
      darktable:multi_name=""
      darktable:multi_priority="0"
      darktable:blendop_version="11"
      darktable:blendop_params="gz14eJxjYIAACQYYOOHEgAZY0QVwggZ7CB6pfNoAAE8gGQg="/>
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def write_lens_on_style(folder: Path) -> Path:
    """LENS_ON_STYLE as a .dtstyle file named like the style (the driver finds it by that name)."""
    path = folder / "raw2rgb test lens on.dtstyle"
    path.write_text(LENS_ON_STYLE.format(name=path.stem), encoding="utf-8")
    return path


def lens_by_input(calls: list[list[str]]) -> dict[str, str | None]:
    """{RAW file name: the --lens it was converted with, None for none} over `convert` calls."""
    found: dict[str, str | None] = {}
    for call in calls:
        lens = option_values(call, "--lens")
        assert len(lens) <= 1, call
        for source in call[1:call.index("--output-dir")]:
            found[Path(source).name] = lens[0] if lens else None
    return found


def assert_no_copies_left(setup: dict, raw_dir: Path, *sidecars: Path) -> None:
    # the copies whose XMP tells the history (darktable's for an export, raw2rgb's own for the
    # action) are deleted at once; beside the RAWs only the sidecars the test wrote
    assert not [p for p in (setup["tmp"] / "dt-tmp").rglob("*") if p.is_file()]
    assert sorted(raw_dir.glob("*.xmp")) == sorted(sidecars)


def test_lens_preference_and_darktables_lens_module_reach_the_converter(setup, raw2rgb_exe):
    raw_dir = setup["tmp"] / "photos"
    raw_dir.mkdir()
    plain = write_test_raw(raw_dir / "plain.dng")
    lens_on = write_test_raw(raw_dir / "lens on.dng", seed=1)
    undone = write_test_raw(raw_dir / "lens undone.dng", seed=2)
    sidecar = raw_dir / "lens undone.dng.xmp"  # darktable imports it with the RAW
    sidecar.write_text(LENS_UNDONE_XMP, encoding="utf-8")
    recording = write_converter_wrapper(setup["tmp"], raw2rgb_exe)
    executable = f"lua/raw2rgb/executable={recording}"

    # the preference's default, auto: --lens auto, but off where the image's lens module is on
    raws = [plain, lens_on, undone]
    result = run_darktable(setup, raws, "export", executable, lens_on=(lens_on,))
    assert_converted_and_grouped(result, raws, raw_dir / "raw2rgb")
    assert result["run"]["lens_module_on"] == ["lens on.dng"]
    assert lens_by_input(recorded_calls(recording)) == {"plain.dng": "auto", "lens on.dng": "off",
                                                        "lens undone.dng": "auto"}
    assert_no_copies_left(setup, raw_dir, sidecar)

    # the action has no export's copy: it reads the history the same way on its own
    result = run_darktable(setup, [plain, lens_on], "action", executable, lens_on=(lens_on,))
    assert_converted_and_grouped(result, [plain, lens_on], raw_dir / "raw2rgb")
    assert lens_by_input(recorded_calls(recording)[2:]) == {"plain.dng": "auto", "lens on.dng": "off"}
    assert_no_copies_left(setup, raw_dir, sidecar)

    # preferences > lua options > raw2rgb: lens corrections = off
    set_darktablerc(setup["config"], "lua/raw2rgb/lens", "off")
    result = run_darktable(setup, [plain], "export", executable)
    assert_converted_and_grouped(result, [plain], raw_dir / "raw2rgb")
    assert result["run"]["lens_module_on"] == []
    assert lens_by_input(recorded_calls(recording)[4:]) == {"plain.dng": "off"}


def test_darktable_5_leaves_the_lens_to_its_lens_module(setup, raw2rgb_exe):
    if reason := trixie_skip_reason("darktable"):
        pytest.skip(reason)
    tmp = setup["tmp"]
    raw_dir = tmp / "photos"
    raw_dir.mkdir()
    plain, lens_on = write_test_raw(raw_dir / "plain.dng"), write_test_raw(raw_dir / "lens on.dng", seed=1)
    undone = write_test_raw(raw_dir / "lens undone.dng", seed=2)
    sidecar = raw_dir / "lens undone.dng.xmp"  # darktable 5.0 imports it with the RAW as well
    sidecar.write_text(LENS_UNDONE_XMP, encoding="utf-8")
    recording = write_converter_wrapper(tmp, raw2rgb_exe)
    executable = run_on_host(tmp / "raw2rgb on the host", recording)

    raws = [plain, lens_on, undone]
    result = run_darktable(setup, raws, "export", f"lua/raw2rgb/executable={executable}",
                           trixie=True, lens_on=(lens_on,))

    assert_converted_and_grouped(result, raws, raw_dir / "raw2rgb")
    assert result["run"]["lens_module_on"] == ["lens on.dng"]
    assert lens_by_input(recorded_calls(recording)) == {"plain.dng": "auto", "lens on.dng": "off",
                                                        "lens undone.dng": "auto"}
    assert_no_copies_left(setup, raw_dir, sidecar)


# ------------------------------------------------------------------------------------------
# X-Trans (issue 25): no --profile recorded, so convert picks each file's sensor's profile


@pytest.fixture
def picking_setup(tmp_path, raw2rgb_exe, darktable, isolated_profile_dir):
    """darktable with raw2rgb installed without a profile, and a small X-Trans test profile installed
    as xtrans-lite in the test's profile folder: Bayer files get the shipped default-lite."""
    shutil.copyfile(make_xtrans_profile(tmp_path / "xtrans-lite", "srgb", classical=True),
                    isolated_profile_dir / "xtrans-lite.safetensors")
    config = tmp_path / "darktable config"
    config.mkdir()
    install_integration(raw2rgb_exe, "darktable", config, "--executable", str(raw2rgb_exe), "--device", "cpu")
    shutil.copyfile(DRIVER, config / "lua" / "raw2rgb_test_driver.lua")
    canary = tmp_path / "darktable cwd"
    canary.mkdir()
    return {"tmp": tmp_path, "config": config, "canary": canary}


def test_export_converts_an_xtrans_raw_beside_a_bayer_one(picking_setup, raw2rgb_exe):
    setup = picking_setup
    raw_dir = setup["tmp"] / "photos"
    raw_dir.mkdir()
    raws = [write_test_raw(raw_dir / "bayer.dng"), write_test_raw(raw_dir / "DSCF0001.dng", seed=1, cfa="xtrans")]
    recording = write_converter_wrapper(setup["tmp"], raw2rgb_exe)

    result = run_darktable(setup, raws, "export", f"lua/raw2rgb/executable={recording}")

    assert result["run"]["export_format"] == "copy"  # darktable imported the X-Trans DNG, rendered nothing
    assert_converted_and_grouped(result, raws, raw_dir / "raw2rgb")
    summary = json.loads(Path(f"{recording}.stdout").read_text(encoding="utf-8"))
    assert {Path(f["input"]).name: f["profile"] for f in summary["files"]} == {
        "bayer.dng": "default-lite", "DSCF0001.dng": "xtrans-lite"}
    assert_nothing_left_behind(setup, raw_dir)
