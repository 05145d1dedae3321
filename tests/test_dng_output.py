"""`convert --format dng`: an editable linear DNG whose LibRaw rendering has the source's colours.

The profile here is a scene-linear G1 whose gate is shut, so its image is exactly the linear
Malvar–He–Cutler demosaic of its input: what is tested is the engine's colour path (levels,
headroom white balance, back to camera-native values, the DNG's matrix and neutral), not how
well a network was trained.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import exifread
import numpy as np
import pytest
import rawpy
import tifffile
from typer.testing import CliRunner

from raw2rgb_cli.main import app
from raw2rgb_plugin.engine.converter import Converter
from raw2rgb_plugin.engine.jobs import ConvertJob
from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.io.exif_read import PhotoMetadata
from raw2rgb_plugin.profiles.store import load_profile
from raw2rgb_plugin.training.color_difference import delta_e2000, linear_srgb_to_lab
from raw2rgb_plugin.training.data.unprocess import BAYER_ORDERS, random_params, write_synthetic_dng

from helpers import (
    dng_opcode_ids,
    dng_opcode_list,
    fix_vignette_radial,
    make_classical_develop_profile,
    smooth_scene,
    warp_rectilinear,
)

MAX_MEDIAN_DELTA_E = 3.0  # the bar; the classical path measures well below it
META = PhotoMetadata(make="Testmaker", model="T-100", iso=400, exposure_time=Fraction(1, 125), f_number=Fraction(28, 10),
                     datetime_original="2026:11:29 10:11:12", orientation=1)


@pytest.fixture(scope="module")
def classical_develop(tmp_path_factory) -> Path:
    return make_classical_develop_profile(tmp_path_factory.mktemp("develop") / "develop-test.safetensors")


def _libraw_linear_srgb(path: Path, wb_gains_rgb: np.ndarray | None = None) -> np.ndarray:
    """LibRaw's rendering with the camera's white balance (or `wb_gains_rgb`), linear sRGB in [0, 1]."""
    wb = {"use_camera_wb": True} if wb_gains_rgb is None else {"user_wb": [*map(float, wb_gains_rgb), float(wb_gains_rgb[1])]}
    with rawpy.imread(str(path)) as raw:
        # adjust_maximum_thr=0: LibRaw would otherwise rescale a frame whose brightest value is near white.
        rgb = raw.postprocess(**wb, no_auto_bright=True, gamma=(1, 1), output_bps=16, output_color=rawpy.ColorSpace.sRGB,
                              adjust_maximum_thr=0.0)
    return rgb.astype(np.float64) / 65535.0


def _median_delta_e(a: np.ndarray, b: np.ndarray, block: int) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)

    def mean(image: np.ndarray) -> np.ndarray:  # downscaled: demosaic differences are not colour
        h, w = image.shape[0] // block * block, image.shape[1] // block * block
        return image[:h, :w].reshape(h // block, block, w // block, block, 3).mean(axis=(1, 3))

    return float(np.median(delta_e2000(linear_srgb_to_lab(mean(a)), linear_srgb_to_lab(mean(b)))))


def _convert(profile: Path, source: Path, out_dir: Path, output_format: str = "dng") -> Path:
    converter = Converter(load_profile(profile), device="cpu", output_format=output_format)
    suffix = ".dng" if output_format == "dng" else ".tif"
    [result] = converter.convert([ConvertJob(source, out_dir / f"{source.stem}{suffix}")])
    assert result.status == "converted", result.error
    return result.output


@pytest.mark.parametrize("cfa", BAYER_ORDERS)
def test_libraw_renders_the_dng_in_the_colours_of_its_source(tmp_path, classical_develop, cfa):
    rng = np.random.default_rng(BAYER_ORDERS.index(cfa))
    params = random_params(rng, cfa_pattern=cfa, noise=False)
    source = tmp_path / "in" / "scene.dng"
    source.parent.mkdir()
    write_synthetic_dng(smooth_scene(96, 128, seed=4), source, rng, params=params, metadata=META)
    out = _convert(classical_develop, source, tmp_path)
    with rawpy.imread(str(out)) as raw:
        assert raw.raw_type == rawpy.RawType.Stack
        assert raw.raw_image_visible.shape[:2] == (96, 128)
        assert np.allclose(np.asarray(raw.camera_whitebalance[:3]) / raw.camera_whitebalance[1],
                           [params.red_gain, 1.0, params.blue_gain], rtol=1e-3)
    delta = _median_delta_e(_libraw_linear_srgb(out), _libraw_linear_srgb(source), block=4)
    assert delta <= MAX_MEDIAN_DELTA_E, delta


# Not the DC50: its KDC carries no colour matrix (the engine takes camera RGB as sRGB, LibRaw renders
# "raw colour"), so there is no source colour to keep; measured 5.4 median ΔE between the two.
@pytest.mark.parametrize("name", ["RAW_CANON_D30_SRGB.CRW"])
def test_a_real_raw_keeps_its_colours_and_exif(tmp_path, classical_develop, shared_data, name):
    from raw2rgb_plugin.io.raw_file import decode_raw

    source = shared_data / "raw" / name
    out = _convert(classical_develop, source, tmp_path)
    # The source is rendered with the white balance the engine read from it: the D30 stores "auto"
    # (-1) as its as-shot multipliers, which LibRaw answers with its own auto white balance, while
    # the engine (and so the DNG's AsShotNeutral) takes the camera's daylight balance.
    gains = decode_raw(source).wb_gains_rgb
    delta = _median_delta_e(_libraw_linear_srgb(out), _libraw_linear_srgb(source, gains), block=8)
    assert delta <= MAX_MEDIAN_DELTA_E, delta
    with open(out, "rb") as f:
        tags = exifread.process_file(f, details=False)
    from raw2rgb_plugin.io.exif_read import read_photo_metadata

    # The camera's own matrix, rows at its own scale: darktable 5 and RawTherapee read them as written.
    written = np.array([float(Fraction(str(v))) for v in tags["Image Tag 0xC621"].values]).reshape(3, 3)
    with rawpy.imread(str(source)) as raw:
        assert np.allclose(written, raw.rgb_xyz_matrix[:3], atol=1e-4)
    meta = read_photo_metadata(source)
    assert str(tags["Image Make"]) == meta.make and str(tags["Image Model"]) == meta.model
    assert str(tags["EXIF DateTimeOriginal"]) == meta.datetime_original
    assert read_photo_metadata(out).exposure_time == meta.exposure_time


def test_orientation_stays_a_tag_and_renders_as_the_source(tmp_path, classical_develop):
    from raw2rgb_plugin.io.dng_write import write_bayer_dng
    from raw2rgb_plugin.training.data.unprocess import unprocess

    rng = np.random.default_rng(8)
    params = random_params(rng, cfa_pattern="GRBG", noise=False)
    mosaic = unprocess(smooth_scene(64, 96, seed=2), params, rng)
    source = tmp_path / "in" / "rotated.dng"
    source.parent.mkdir()
    write_bayer_dng(source, mosaic, "GRBG", black_level=params.black_level, white_level=params.white_level,
                    color_matrix1=np.asarray(params.xyz_to_camera), as_shot_neutral=params.as_shot_neutral, orientation=6)
    out = _convert(classical_develop, source, tmp_path)
    with rawpy.imread(str(out)) as ours, rawpy.imread(str(source)) as theirs:
        assert ours.sizes.flip == theirs.sizes.flip != 0
    a, b = _libraw_linear_srgb(out), _libraw_linear_srgb(source)
    assert a.shape == b.shape == (96, 64, 3)
    assert _median_delta_e(a, b, block=4) <= MAX_MEDIAN_DELTA_E


def test_a_display_profile_cannot_write_a_dng(tiny_profile):
    with pytest.raises(Raw2RgbError, match="scene-linear"):
        Converter(load_profile(tiny_profile), device="cpu", output_format="dng")


def test_a_scene_linear_tiff_is_linear_srgb_with_a_linear_icc(tmp_path, classical_develop):
    from PIL import ImageCms

    rng = np.random.default_rng(3)
    source = tmp_path / "in" / "scene.dng"
    source.parent.mkdir()
    write_synthetic_dng(smooth_scene(64, 64, seed=1), source, rng, params=random_params(rng, noise=False))
    out = _convert(classical_develop, source, tmp_path, output_format="tiff")
    with tifffile.TiffFile(out) as tif:
        pixels = tif.pages[0].asarray().astype(np.float64) / 65535.0
        icc = tif.pages[0].tags["InterColorProfile"].value
    import io

    assert "linear" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
    # Linear sRGB: LibRaw's linear rendering of the source, not a display-encoded image.
    assert _median_delta_e(pixels, _libraw_linear_srgb(source), block=4) <= MAX_MEDIAN_DELTA_E


def test_cli_format_dng_refuses_to_replace_a_dng_input_and_never_clobbers(tmp_path, classical_develop):
    rng = np.random.default_rng(6)
    source = tmp_path / "shot.dng"
    write_synthetic_dng(smooth_scene(64, 64, seed=6), source, rng, params=random_params(rng, noise=False))
    before = source.read_bytes()
    runner = CliRunner()
    beside = runner.invoke(app, ["convert", str(source), "--format", "dng", "-p", str(classical_develop), "--json"])
    assert beside.exit_code == 1 and "would replace an input" in beside.output
    assert source.read_bytes() == before
    out_dir = tmp_path / "out"
    first = runner.invoke(app, ["convert", str(source), "--format", "dng", "-p", str(classical_develop), "-o", str(out_dir),
                                "--json", "-q"])
    assert first.exit_code == 0, first.output
    written = out_dir / "shot.dng"
    assert json.loads(first.stdout)["files"][0]["output"] == str(written)
    stamp = written.stat().st_mtime_ns
    again = runner.invoke(app, ["convert", str(source), "--format", "dng", "-p", str(classical_develop), "-o", str(out_dir),
                                "--json", "-q"])
    assert again.exit_code == 0 and json.loads(again.stdout)["files"][0]["status"] == "skipped"
    assert written.stat().st_mtime_ns == stamp and sorted(p.name for p in out_dir.iterdir()) == ["shot.dng"]
    assert source.read_bytes() == before


def test_cli_format_dng_refuses_a_display_profile_in_one_line(tmp_path, tiny_profile):
    rng = np.random.default_rng(6)
    source = tmp_path / "shot.dng"
    write_synthetic_dng(smooth_scene(64, 64, seed=6), source, rng, params=random_params(rng, noise=False))
    result = CliRunner().invoke(app, ["convert", str(source), "--format", "dng", "-p", str(tiny_profile), "-o",
                                      str(tmp_path / "out")])
    assert result.exit_code != 0 and "scene-linear" in result.output
    assert not (tmp_path / "out" / "shot.dng").exists()


# --- a DNG source's OpcodeList3 -------------------------------------------------------------------

#: a barrel distortion and a vignetting to undo, as a camera's OpcodeList3 would say
LENS_OPCODES = dng_opcode_list(warp_rectilinear((1.0, 0.02, -0.004, 0.0)), fix_vignette_radial((0.4, 0.1, 0.0, 0.0, 0.0)))
OPCODE_LISTS = {51008: "OpcodeList1", 51009: "OpcodeList2", 51022: "OpcodeList3"}


def _source_with_opcodes(path: Path, *, active_area: tuple[int, int, int, int] | None = None) -> Path:
    """A Bayer DNG whose IFD0 (its raw image) holds LENS_OPCODES as OpcodeList3 and a stage-2 list
    (OpcodeList2, acting on the mosaic), and optionally an ActiveArea (top, left, bottom, right)."""
    import tifftools
    from tifftools import Datatype

    from raw2rgb_plugin.io.dng_write import write_bayer_dng
    from raw2rgb_plugin.training.data.unprocess import unprocess

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    params = random_params(rng, cfa_pattern="RGGB", noise=False)
    mosaic = unprocess(smooth_scene(64, 96, seed=5), params, rng)
    write_bayer_dng(path, mosaic, "RGGB", black_level=params.black_level, white_level=params.white_level,
                    color_matrix1=np.asarray(params.xyz_to_camera), as_shot_neutral=params.as_shot_neutral,
                    metadata=META, opcode_list3=LENS_OPCODES)
    info = tifftools.read_tiff(str(path))
    tags = info["ifds"][0]["tags"]
    tags[51009] = {"datatype": Datatype.UNDEFINED, "data": dng_opcode_list(fix_vignette_radial((0.1, 0, 0, 0, 0)))}
    if active_area is not None:
        tags[50829] = {"datatype": Datatype.LONG, "data": list(active_area)}
    tifftools.write_tiff(info, str(path), allowExisting=True)
    return path


def _convert_cli(source: Path, profile: Path, out_dir: Path, *options: str) -> Path:
    result = CliRunner().invoke(app, ["convert", str(source), "--format", "dng", "-p", str(profile), "-o", str(out_dir),
                                      "--json", "-q", *options])
    assert result.exit_code == 0, result.output
    return Path(json.loads(result.stdout)["files"][0]["output"])


def _lists(page: tifffile.TiffPage) -> dict[str, bytes]:
    return {name: page.tags[code].value for code, name in OPCODE_LISTS.items() if code in page.tags}


def _opcode_lists(dng: Path) -> tuple[dict[str, bytes], dict[str, bytes], tuple[int, int]]:
    """The opcode lists of our DNG's IFD0 and of its raw image's SubIFD, and that image's (height, width)."""
    with tifffile.TiffFile(dng) as tif:
        ifd0, raw_ifd = tif.pages[0], tif.pages[0].pages[0]
        assert raw_ifd.subfiletype == 0 and raw_ifd.photometric == 34892
        return _lists(ifd0), _lists(raw_ifd), (raw_ifd.imagelength, raw_ifd.imagewidth)


@pytest.mark.parametrize("active_area", [None, (2, 4, 62, 92)], ids=["whole image", "active area"])
def test_a_dng_sources_opcode_list_3_is_copied_verbatim(tmp_path, classical_develop, active_area):
    """OpcodeList3 acts on the demosaiced image, which our LinearRaw image is: its bytes go into our raw
    IFD unchanged, and the host applies them as it would to the source. OpcodeList1/2 acted on the
    mosaic the decode consumed: they stay behind. LibRaw's visible area is the ActiveArea, the
    stage-3 image the opcodes address."""
    source = _source_with_opcodes(tmp_path / "in" / "lens.dng", active_area=active_area)
    out = _convert_cli(source, classical_develop, tmp_path / "out")
    with tifffile.TiffFile(source) as tif:
        assert _lists(tif.pages[0]).keys() == {"OpcodeList2", "OpcodeList3"}
    ifd0, raw_ifd, size = _opcode_lists(out)
    assert raw_ifd == {"OpcodeList3": LENS_OPCODES} and not ifd0
    assert dng_opcode_ids(raw_ifd["OpcodeList3"]) == [1, 3]  # WarpRectilinear, FixVignetteRadial
    assert size == ((60, 88) if active_area else (64, 96))
    with rawpy.imread(str(out)) as raw:  # LibRaw reads the DNG with the opcodes as before
        assert raw.raw_image_visible.shape[:2] == size


def test_a_half_size_dng_leaves_opcode_list_3_behind(tmp_path, classical_develop):
    """At half size the image no longer has the grid the opcodes address (their pixel rectangles and
    centres would land elsewhere): none is copied; the lens tags still are."""
    source = _source_with_opcodes(tmp_path / "in" / "lens.dng")
    out = _convert_cli(source, classical_develop, tmp_path / "out", "--half-size")
    ifd0, raw_ifd, size = _opcode_lists(out)
    assert size == (32, 48) and not ifd0 and not raw_ifd


def test_a_non_dng_source_has_no_opcodes(tmp_path):
    from raw2rgb_plugin.io.dng_opcodes import read_stage3_opcodes

    tiff = tmp_path / "plain.tif"
    tifffile.imwrite(tiff, np.zeros((8, 8), np.uint16))
    garbage = tmp_path / "garbage.dng"
    garbage.write_bytes(b"II*\x00" + bytes(16))
    assert read_stage3_opcodes(tiff) is None and read_stage3_opcodes(garbage) is None
    assert read_stage3_opcodes(tmp_path / "absent.dng") is None
