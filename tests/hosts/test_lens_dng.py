"""darktable's and RawTherapee's lens correction find the lens in raw2rgb's DNG as in its source.

The source is a Bayer DNG whose EXIF says what a Canon EOS 550D with its kit zoom at 18 mm, f/3.5
writes (Make, Model, LensModel, LensSpecification, FocalLength, FNumber, SubjectDistance): a camera
and lens that the lensfun databases of darktable 4.2, darktable 5.0 (the trixie chroot) and
RawTherapee 5.9 all know ("Canon EF-S 18-55mm f/3.5-5.6 IS": distortion, TCA, and a vignetting
of k1 = -1.05 at 18 mm, f/3.5). Each host develops the DNG with its lens correction on (lensfun,
camera and lens found from the file) and off; where it found the lens, the two renders differ
clearly: the lines of a grid move (distortion) and the corners brighten (vignetting). The same
DNG with its lens tags stripped must come out the same either way (so the check can fail), and
the grid must move in our DNG as in the source: the same lens and focal length found. (Brightness
is compared only within one file: each host's tone curve treats a Bayer and a LinearRaw DNG apart.)
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from helpers import TEST_XYZ_TO_CAMERA, make_classical_develop_profile
from hostrun import in_trixie, run_bounded, skip_unless_in_trixie, skip_unless_installed

pytestmark = pytest.mark.hosts

HOST_TIMEOUT_S = 120
#: 256×384: RawTherapee 5.9 refuses files under 100,000 bytes; the Bayer source is 197 kB
HEIGHT, WIDTH = 256, 384
#: mean |lens on − lens off| (renders scaled to [0, 1]) above which a host corrected the lens, and
#: below which it did not. Measured: 0.11–0.16 with the lens found, exactly 0 without the tags.
APPLIED, NOT_APPLIED = 0.03, 0.003
#: the distortion correction's magnification (`magnification`): measured 1.005–1.007 across and
#: 0.992–0.994 down the frame, ours within 0.001 of the source's on each host
MOVED, SAME_MAGNIFICATION = 0.003, 0.002
#: `corner_lift` with the vignetting corrected: measured 1.11–1.35
LIFTED = 1.03


def _lens_metadata():
    from raw2rgb_plugin.io.exif_read import PhotoMetadata

    return PhotoMetadata(
        make="Canon", model="Canon EOS 550D", lens_model="EF-S18-55mm f/3.5-5.6 IS",
        lens_info=(Fraction(18), Fraction(55), Fraction(7, 2), Fraction(28, 5)), focal_length=Fraction(18),
        f_number=Fraction(7, 2), subject_distance=Fraction(3), exposure_time=Fraction(1, 100), iso=100)


def write_lens_source(path: Path) -> Path:
    """A Bayer DNG of a grey frame ruled by dark lines every 16 px, with the lens EXIF above."""
    from raw2rgb_plugin.io.dng_write import write_bayer_dng
    from raw2rgb_plugin.training.data.unprocess import mosaic_rgb

    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    # darker than mid-grey: lifted corners must not clip in the hosts' display renders
    scene = np.where(((y % 16) < 2) | ((x % 16) < 2), 0.05, 0.3)[..., None].repeat(3, axis=2)
    black, white = 64, 4095
    mosaic = mosaic_rgb(np.round(black + scene * (white - black)).astype(np.uint16), "RGGB")
    write_bayer_dng(path, mosaic, "RGGB", black_level=black, white_level=white, color_matrix1=TEST_XYZ_TO_CAMERA,
                    as_shot_neutral=(0.55, 1.0, 0.7), make="Canon", model="Canon EOS 550D",
                    metadata=_lens_metadata())
    return path


#: the lens tags a DNG of ours carries: EXIF LensMake, LensModel, LensSpecification, FocalLength,
#: FNumber, SubjectDistance (EXIF IFD) and DNG LensInfo (IFD0)
EXIF_LENS_TAGS = (0xA433, 0xA434, 0xA432, 0x920A, 0x829D, 0x9206)
DNG_LENS_INFO = 0xC630


def strip_lens_tags(dng: Path, out: Path) -> Path:
    import tifftools

    info = tifftools.read_tiff(str(dng))
    ifd0 = info["ifds"][0]["tags"]
    ifd0.pop(DNG_LENS_INFO, None)
    exif = ifd0[int(tifftools.Tag.EXIFIFD)]["ifds"][0][0]["tags"]
    for tag in EXIF_LENS_TAGS:
        exif.pop(tag, None)
    tifftools.write_tiff(info, str(out))
    return out


@pytest.fixture(scope="module")
def dngs(raw2rgb_exe, tmp_path_factory) -> dict[str, Path]:
    """The source, raw2rgb's DNG of it, and that DNG with its lens tags stripped."""
    folder = tmp_path_factory.mktemp("lens dngs")
    source = write_lens_source(folder / "kit zoom.dng")
    profile = make_classical_develop_profile(folder / "develop-classical.safetensors")
    done = subprocess.run(
        [str(raw2rgb_exe), "convert", str(source), "--format", "dng", "--profile", str(profile), "--device", "cpu",
         "--output-dir", str(folder / "ours"), "--quiet", "--json"],
        capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"raw2rgb convert --format dng failed:\n{done.stdout}\n{done.stderr}"
    ours = Path(json.loads(done.stdout)["files"][0]["output"])
    return {"source": source, "ours": ours, "stripped": strip_lens_tags(ours, folder / "stripped.dng")}


# ------------------------------------------------------------------------------------------
# lens correction on and off, per host


def darktable_sidecar(path: Path, enabled: bool) -> Path:
    """An XMP whose history holds darktable's lens module, on or off, detecting camera and lens itself.

    Its parameters are the lens module's version 5 (darktable 3.x), whose last field `modified` = 0
    says "nothing changed after auto-detection": darktable 4.2 (version 6) and 5.0 (version 10)
    convert such parameters to the module's defaults, which it fills from the image's EXIF as the
    GUI does when the module is switched on. Seen: both then correct the lens of a file they know.
    """
    camera = lens = bytes(128)
    all_corrections = 1 | 2 | 8  # lensfun's LF_MODIFY_TCA | LF_MODIFY_VIGNETTING | LF_MODIFY_DISTORTION
    # modify_flags, inverse, scale, crop, focal, aperture, distance, target_geom (LF_RECTILINEAR),
    # camera, lens, tca_override, tca_r, tca_b, modified
    params = (struct.pack("<iifffffi", all_corrections, 0, 1.0, 0.0, 0.0, 0.0, 0.0, 1) + camera + lens
              + struct.pack("<iffi", 0, 1.0, 1.0, 0))
    path.write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:darktable="http://darktable.sf.net/"
    darktable:xmp_version="5" darktable:history_end="1">
   <darktable:history>
    <rdf:Seq>
     <rdf:li darktable:num="0" darktable:operation="lens" darktable:enabled="{int(enabled)}"
      darktable:modversion="5" darktable:params="{params.hex()}"
      darktable:multi_name="" darktable:multi_priority="0"/>
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
""")
    return path


def _darktable_args(dng: Path, sidecar: Path, out: Path, config: Path) -> list[str]:
    return ["darktable-cli", str(dng), str(sidecar), str(out), "--core", "--configdir", str(config),
            "--cachedir", str(config / "cache"), "--library", ":memory:", "--conf", "write_sidecar_files=never"]


def darktable42(dng: Path, out: Path, work: Path, lens: bool) -> None:
    config = work / "dt42 config"
    config.mkdir()
    sidecar = darktable_sidecar(work / "lens.xmp", lens)
    finished = run_bounded(_darktable_args(dng, sidecar, out, config), timeout=HOST_TIMEOUT_S,
                           env={**os.environ, "HOME": str(work)})
    assert finished.returncode == 0, f"darktable-cli failed ({finished.returncode}):\n{finished.output[-4000:]}"


def darktable50(dng: Path, out: Path, work: Path, lens: bool) -> None:
    config = work / "dt50 config"
    config.mkdir()
    dng = Path(shutil.copy(dng, work / dng.name))  # the chroot sees only `work` of the host's files
    sidecar = darktable_sidecar(work / "lens.xmp", lens)
    # Two threads, not one as in test_linear_dng: darktable 5.0.1 with `-t 1` aborts ("double free
    # or corruption") whenever its lens module has a lens to correct (seen on every such run here).
    # With OMP_NUM_THREADS out of its environment and `-t 2` it renders whole frames.
    command = in_trixie(work, "/usr/bin/env", f"HOME={work}", "timeout", "-k", "5", str(HOST_TIMEOUT_S),
                        *_darktable_args(dng, sidecar, out, config), "-t", "2")
    env = {name: value for name, value in os.environ.items() if name != "OMP_NUM_THREADS"}
    finished = run_bounded(command, timeout=HOST_TIMEOUT_S + 20, env=env)
    assert finished.returncode == 0, f"darktable-cli 5.0 failed ({finished.returncode}):\n{finished.output[-4000:]}"


def rawtherapee(dng: Path, out: Path, work: Path, lens: bool) -> None:
    home = work / "rt home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_CACHE_HOME": str(home / ".cache")}
    # lfauto: lensfun, camera and lens found from the file's EXIF; every other setting RawTherapee's
    # neutral default
    profile = work / "lens.pp3"
    profile.write_text("[Version]\nAppVersion=5.9\nVersion=346\n\n[LensProfile]\n"
                       f"LcMode={'lfauto' if lens else 'none'}\nLCPFile=\n"
                       "UseDistortion=true\nUseVignette=true\nUseCA=true\n")
    command = ["rawtherapee-cli", "-o", str(out), "-t", "-Y", "-p", str(profile), "-c", str(dng)]
    finished = run_bounded(command, timeout=HOST_TIMEOUT_S, env=env)
    assert finished.returncode == 0, f"rawtherapee-cli failed ({finished.returncode}):\n{finished.output[-4000:]}"


HOSTS = {
    "darktable-4.2": (darktable42, lambda: skip_unless_installed("darktable-cli")),
    "darktable-5.0": (darktable50, lambda: skip_unless_in_trixie("darktable-cli")),
    "rawtherapee": (rawtherapee, lambda: skip_unless_installed("rawtherapee-cli")),
}


def develop(host: str, dng: Path, work: Path, *, lens: bool) -> np.ndarray:
    """`host`'s render of `dng` with its lens correction on or off, as floats in [0, 1]."""
    import tifffile

    run, _ = HOSTS[host]
    work.mkdir(parents=True)
    out = work / "render.tif"
    run(dng, out, work, lens)
    assert out.is_file(), f"{host} wrote no render of {dng.name}"
    image = tifffile.imread(out)[..., :3]
    return image.astype(np.float64) / np.iinfo(image.dtype).max


def difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference over the common top-left area (darktable's lens module trims a pixel)."""
    height, width = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    return float(np.abs(a[:height, :width] - b[:height, :width]).mean())


def grid_lines(image: np.ndarray, axis: int) -> np.ndarray:
    """Sub-pixel positions of the grid's dark lines across `axis` (1: the vertical lines' x), from the
    middle half of the frame along the other axis: where each line's darkness is centred."""
    grey = image.mean(axis=2) if axis == 1 else image.mean(axis=2).T
    profile = grey[grey.shape[0] // 4:3 * grey.shape[0] // 4].mean(axis=0)
    background = float(np.median(profile))
    dark = profile < (profile.min() + background) / 2
    edges = np.flatnonzero(np.diff(dark.astype(np.int8)))  # the last light / last dark sample of each run
    starts, ends = edges[dark[edges + 1]] + 1, edges[~dark[edges + 1]] + 1
    lines = []
    for start in starts:
        after = ends[ends > start]
        if after.size:  # a line cut by the frame's edge has no end and no reliable centre
            weights = background - profile[start:after[0]]
            lines.append(float((np.arange(start, after[0]) * weights).sum() / weights.sum()))
    return np.asarray(lines)


def magnification(on: np.ndarray, off: np.ndarray) -> tuple[float, float]:
    """How the lens correction moved the grid's lines, across (x) and down (y) the frame: the slope of
    each line's corrected position over its uncorrected one. A tone curve cannot change it; the lens
    profile, its focal length and the frame's crop factor set it (1, 1: no geometry corrected)."""
    slopes = []
    for axis in (1, 0):
        corrected, uncorrected = grid_lines(on, axis), grid_lines(off, axis)
        nearest = uncorrected[np.abs(corrected[:, None] - uncorrected[None, :]).argmin(axis=1)]
        slopes.append(float(np.polyfit(nearest, corrected, 1)[0]))
    return slopes[0], slopes[1]


def corner_lift(on: np.ndarray, off: np.ndarray) -> float:
    """How much more the corners brighten than the centre with the correction on (1: no vignetting
    corrected): medians of each corner's and the centre's block, the grey between the lines."""
    def corners_over_centre(image: np.ndarray) -> float:
        h, w = image.shape[0] // 8, image.shape[1] // 8
        corners = [np.median(b) for b in (image[:h, :w], image[:h, -w:], image[-h:, :w], image[-h:, -w:])]
        middle = image[image.shape[0] // 2 - h:image.shape[0] // 2 + h, image.shape[1] // 2 - w:image.shape[1] // 2 + w]
        return float(np.mean(corners) / np.median(middle))

    return corners_over_centre(on) / corners_over_centre(off)


# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", list(HOSTS))
def test_host_finds_the_lens_in_our_dng_as_in_the_source(host, dngs, tmp_path):
    HOSTS[host][1]()
    renders = {(name, lens): develop(host, dngs[name], tmp_path / f"{name} {'on' if lens else 'off'}", lens=lens)
               for name in ("ours", "stripped", "source") for lens in (True, False)}
    for (name, lens), image in renders.items():  # darktable 5.0.1's half-black frames (test_linear_dng)
        assert image[image.shape[0] // 2:].mean() > 0.1, f"{host} rendered {name} (lens {lens}) half black"
    changed = {name: difference(renders[name, True], renders[name, False]) for name in dngs}
    moved = {name: magnification(renders[name, True], renders[name, False]) for name in ("ours", "source")}
    lifted = {name: corner_lift(renders[name, True], renders[name, False]) for name in ("ours", "source")}
    measured = f"mean |on - off| {changed}; magnification {moved}; corner lift {lifted}"
    assert changed["source"] > APPLIED and changed["ours"] > APPLIED, f"{host} corrected no lens: {measured}"
    assert changed["stripped"] < NOT_APPLIED, f"{host} corrected a lens the stripped DNG does not name: {measured}"
    # the source's lens, focal length and crop factor found in ours: the same geometry, corners lifted
    assert max(abs(1 - v) for v in moved["source"]) > MOVED, f"{host} corrected no distortion: {measured}"
    assert np.allclose(moved["ours"], moved["source"], atol=SAME_MAGNIFICATION), (
        f"{host} corrected our DNG's geometry unlike its source's: {measured}")
    assert min(lifted.values()) > LIFTED, f"{host} corrected no vignetting: {measured}"
