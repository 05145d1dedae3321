"""`raw2rgb convert` on a synthetic X-Trans DNG, end to end through the command line: the X-Trans
profile installed as xtrans-lite (and xtrans-develop-lite for --format dng) is picked without
--profile, and the TIFF / DNG written are what the file holds. The profiles have a shut gate, so
they render their classical X-Trans base and the output can be held to the scene."""

from __future__ import annotations

import json
import shutil

import exifread
import numpy as np
import rawpy
import tifffile
from typer.testing import CliRunner

from raw2rgb_cli.main import app
from raw2rgb_plugin.io.icc import icc_profile_bytes
from raw2rgb_plugin.pipeline.cfa import xtrans_pattern
from raw2rgb_plugin.pipeline.metrics import image_psnr
from raw2rgb_plugin.training.data.unprocess import random_params, unprocess

from helpers import smooth_scene
from xtrans_helpers import META, make_xtrans_profile


def run_cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_convert_renders_an_xtrans_dng_with_the_installed_xtrans_profile(tmp_path, isolated_profile_dir):
    from raw2rgb_plugin.io.dng_write import write_cfa_dng

    scene = smooth_scene(90, 126, seed=8)  # upright; the sensor sees it turned (orientation 6)
    rng = np.random.default_rng(8)
    params = random_params(rng, cfa_pattern=xtrans_pattern(2, 5), noise=False)
    mosaic = unprocess(np.ascontiguousarray(np.rot90(scene, 1)), params, rng)  # 126×90 in sensor orientation
    source = tmp_path / "in" / "DSCF0001.dng"
    source.parent.mkdir()
    write_cfa_dng(source, mosaic, params.cfa_pattern, black_level=params.black_level, white_level=params.white_level,
                  color_matrix1=np.asarray(params.xyz_to_camera), as_shot_neutral=params.as_shot_neutral,
                  orientation=6, make=META.make, model=META.model, metadata=META)
    before = source.read_bytes()
    for kind, name in (("srgb", "xtrans-lite"), ("scene-linear", "xtrans-develop-lite")):
        profile = make_xtrans_profile(tmp_path / kind, kind, classical=True)
        shutil.copy(profile, isolated_profile_dir / f"{name}.safetensors")

    result = run_cli("convert", source, "-o", tmp_path / "out", "--json", "--quiet")
    assert result.exit_code == 0, result.output
    [entry] = json.loads(result.stdout)["files"]
    assert entry["status"] == "converted" and entry["profile"] == "srgb" and entry["hot_pixels"] == 0
    with tifffile.TiffFile(tmp_path / "out" / "DSCF0001.tif") as tif:
        page = tif.pages[0]
        pixels = page.asarray()
        assert pixels.shape == (90, 126, 3) and pixels.dtype == np.uint16  # turned upright, visible size
        assert page.tags["Orientation"].value == 1 and page.tags["InterColorProfile"].value == icc_profile_bytes("srgb")
    with open(tmp_path / "out" / "DSCF0001.tif", "rb") as fh:
        tags = exifread.process_file(fh, details=False)
    assert str(tags["Image Make"]) == META.make and tags["EXIF ISOSpeedRatings"].values[0] == META.iso
    inner = (slice(6, -6), slice(6, -6))
    # the classical X-Trans rendering of the unprocessed scene: measured 37.3 dB with the fitted
    # demosaic on this scene of unrelated colours (47.4 with the Gaussian average it replaced);
    # a phase or orientation slip gives ~9 dB
    assert image_psnr(pixels[inner] / 65535.0, scene[inner]) >= 35.0

    dng = run_cli("convert", source, "-o", tmp_path / "dng", "--format", "dng", "--json", "--quiet")
    assert dng.exit_code == 0, dng.output
    with rawpy.imread(str(tmp_path / "dng" / "DSCF0001.dng")) as raw:
        assert raw.raw_type == rawpy.RawType.Stack and raw.sizes.flip == 6  # sensor orientation, tagged
        assert raw.raw_image_visible.shape[:2] == (126, 90)
    assert source.read_bytes() == before  # inputs are never modified

    refused = run_cli("convert", source, "-o", tmp_path / "no", "--format", "dng", "--profile", "xtrans-lite")
    # settings that cannot work stop the run before any file (exit 2), in one line
    assert refused.exit_code == 2 and len(refused.stderr.splitlines()) == 1 and "finished display image" in refused.stderr
