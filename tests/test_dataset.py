import json
import pickle

import cv2
import numpy as np
import pytest
import torch

from raw2rgb_plugin.io.raw_file import decode_raw
from raw2rgb_plugin.pipeline.normalization import network_input
from raw2rgb_plugin.pipeline.packing import pack_rggb, unpack_rggb
from raw2rgb_plugin.training.data.build import BuildOptions, build_dataset
from raw2rgb_plugin.training.data.sources import CsvPairs, FolderPairs, SyntheticPairs, find_pairs
from raw2rgb_plugin.training.data.store import DatasetError, assign_splits, augment_patch, open_dataset
from raw2rgb_plugin.training.data.synth import SynthOptions, synthesize_dataset

from scene_images import save_srgb, textured_scene, write_pair

PATCH = 32
H, W = 240, 320
#: the misaligned target: the scene rotated 4°, scaled 1.15 about the centre and shifted.
MISALIGN = cv2.getRotationMatrix2D((W / 2, H / 2), 4.0, 1.15) + np.array([[0, 0, 7], [0, 0, -5]])


@pytest.fixture(scope="module")
def pairs_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    raw, rgb = root / "raw", root / "rgb"
    scenes = {name: textured_scene(H, W, seed=i) for i, name in enumerate(["a_aligned", "b_aligned", "c_misaligned", "d_wrong"])}
    write_pair(raw, rgb, "a_aligned", scenes["a_aligned"], seed=1, cfa="GRBG")
    write_pair(raw, rgb, "b_aligned", scenes["b_aligned"], seed=2, cfa="BGGR")
    moved = cv2.warpAffine(scenes["c_misaligned"], MISALIGN, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    write_pair(raw, rgb, "c_misaligned", scenes["c_misaligned"], target=moved, seed=3, cfa="RGGB")
    write_pair(raw, rgb, "d_wrong", scenes["d_wrong"], target=textured_scene(H, W, seed=99), seed=4)
    save_srgb(rgb / "e_orphan.png", scenes["a_aligned"])
    pairs, unmatched = find_pairs(raw, rgb)
    out = root / "dataset"
    report = build_dataset(pairs, out, BuildOptions(patch_size=PATCH, val_fraction=0.34), unmatched=unmatched)
    return {"root": root, "out": out, "report": report, "scenes": scenes, "pairs": pairs}


def _pair(report, stem):
    return next(p for p in report["pairs"] if p["scene"] == stem)


def test_build_aligns_recovers_and_drops(pairs_dataset):
    report, out = pairs_dataset["report"], pairs_dataset["out"]
    counts = report["counts"]
    assert counts["pairs"] == 4 and counts["pairs_kept"] == 3
    assert report["unmatched"]["rgb_without_raw"] == ["e_orphan.png"]
    wrong = _pair(report, "d_wrong")
    assert wrong["status"] == "dropped" and wrong["reason"] in ("poor global alignment", "alignment failed")
    assert sum(counts["pairs_dropped"].values()) == 1 and wrong["reason"] in counts["pairs_dropped"]
    for stem in ("a_aligned", "b_aligned", "c_misaligned"):
        assert _pair(report, stem)["status"] == "kept" and _pair(report, stem)["alignment_score"] > 0.9

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "raw2rgb-dataset" and manifest["patch_size"] == PATCH
    assert manifest["input_normalization"] == "linear-srgb"  # the default
    assert counts["patches"] == sum(s["count"] for s in manifest["shards"]) > 0
    assert counts["patches_dropped"].get("outside target", 0) > 0  # the misaligned target leaves borders uncovered
    assert len(list((out / "previews").glob("*.png"))) == 4
    assert json.loads((out / "report.json").read_text())["counts"] == counts

    # The recovered transform maps the target back onto the sensor (RGGB: no phase padding).
    shard = next(s for s in manifest["shards"] if s["scene"] == "c_misaligned")
    found = np.array(shard["alignment"]["matrix"])
    truth = np.linalg.inv(np.vstack([MISALIGN, [0, 0, 1]]))
    ys, xs = np.mgrid[40:200:20, 40:280:20]
    points = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    a, b = found @ points, truth @ points
    assert np.abs(a[:2] / a[2] - b[:2] / b[2]).max() < 0.4

    # And the stored targets are the scene where each patch's sensor box says.
    rgb = np.load(out / "shards" / shard["name"] / "rgb.npy", mmap_mode="r")
    scene = pairs_dataset["scenes"]["c_misaligned"]
    for k, patch in enumerate(shard["patches"]):
        y0, x0, y1, x1 = patch["box_sensor"]
        stored = rgb[k].transpose(1, 2, 0).astype(np.float32) / 255
        assert np.abs(stored - scene[y0:y1, x0:x1]).mean() < 0.02


def test_items_are_the_engines_input_and_targets(pairs_dataset):
    ds = open_dataset(pairs_dataset["out"])
    for mode in ("wb+ccm", "raw"):
        split = ds.split("train", input_normalization=mode)
        item = split[0]
        assert item["raw"].shape == (4, PATCH, PATCH) and item["raw"].dtype == torch.float32
        assert item["rgb"].shape == (3, 2 * PATCH, 2 * PATCH) and item["saliency"].shape == (1, 2 * PATCH, 2 * PATCH)
        for key in ("raw", "rgb", "saliency"):
            assert 0.0 <= float(item[key].min()) and float(item[key].max()) <= 1.0
        shard = next(s for s in ds.manifest["shards"] if s["split"] == "train")
        assert item["scene"] == shard["scene"]
        frame = decode_raw(shard["raw"])
        packed = network_input(frame, mode).packed[0]
        y0, x0 = shard["patches"][0]["box_sensor"][:2]
        top, left = shard["padding"][:2]
        py, px = (y0 + top) // 2, (x0 + left) // 2
        torch.testing.assert_close(item["raw"], packed[:, py : py + PATCH, px : px + PATCH])


def test_split_never_shares_a_scene(pairs_dataset, tmp_path):
    raw, rgb = pairs_dataset["root"] / "raw", pairs_dataset["root"] / "rgb"
    # Two views of scene "s1", one of "s2" and one of "s3": s1's pair must stay together.
    csv = tmp_path / "pairs.csv"
    csv.write_text("raw,rgb,scene\na_aligned.dng,a_aligned.png,s1\nb_aligned.dng,b_aligned.png,s1\n"
                   "c_misaligned.dng,c_misaligned.png,s2\na_aligned.dng,b_aligned.png,s3\n")
    report = build_dataset(CsvPairs(csv, raw, rgb), tmp_path / "ds",
                           BuildOptions(patch_size=PATCH, val_fraction=0.5, previews=0, jobs=2))
    ds = open_dataset(tmp_path / "ds")
    train, val = ds.split("train"), ds.split("val")
    assert len(train) and len(val)
    assert not set(train.scenes) & set(val.scenes)
    splits_of_s1 = {p["split"] for p in report["pairs"] if p["scene"] == "s1"}
    assert len(splits_of_s1) == 1

    rng = np.random.default_rng(0)
    for _ in range(20):
        scenes = [f"scene{int(v)}" for v in rng.integers(0, 12, size=30)]
        split = assign_splits(scenes, 0.25, seed=int(rng.integers(100)))
        assert set(split) == set(scenes) and "train" in split.values() and "val" in split.values()
    assert assign_splits(["x", "y", "z"], 0.3) == assign_splits(["z", "y", "x", "x"], 0.3)  # order-free


@pytest.mark.parametrize("turns", range(4))
@pytest.mark.parametrize("mirror", [False, True])
def test_augmentation_keeps_every_site_its_colour(turns, mirror):
    n, p = 9, 8
    rng = np.random.default_rng(turns * 2 + mirror)
    rgb = torch.from_numpy(rng.uniform(0, 1, size=(3, 2 * n, 2 * n)).astype(np.float32))
    mosaic = torch.empty(2 * n, 2 * n)
    mosaic[0::2, 0::2] = rgb[0, 0::2, 0::2]
    mosaic[0::2, 1::2] = rgb[1, 0::2, 1::2]
    mosaic[1::2, 0::2] = rgb[1, 1::2, 0::2]
    mosaic[1::2, 1::2] = rgb[2, 1::2, 1::2]
    saliency = rgb[1:2] * 0.5
    raw, out_rgb, out_sal = augment_patch(pack_rggb(mosaic), rgb, saliency, turns, mirror, p)
    assert raw.shape == (4, p, p) and out_rgb.shape == (3, 2 * p, 2 * p) and out_sal.shape == (1, 2 * p, 2 * p)
    m = unpack_rggb(raw)
    torch.testing.assert_close(m[0::2, 0::2], out_rgb[0, 0::2, 0::2], rtol=0, atol=0)  # red sites
    torch.testing.assert_close(m[0::2, 1::2], out_rgb[1, 0::2, 1::2], rtol=0, atol=0)  # greens
    torch.testing.assert_close(m[1::2, 0::2], out_rgb[1, 1::2, 0::2], rtol=0, atol=0)
    torch.testing.assert_close(m[1::2, 1::2], out_rgb[2, 1::2, 1::2], rtol=0, atol=0)  # blue sites
    torch.testing.assert_close(out_sal, out_rgb[1:2] * 0.5)  # saliency moved with the target
    expected = torch.rot90(rgb, turns, dims=(-2, -1))
    expected = expected.flip(-1) if mirror else expected
    assert any(torch.equal(out_rgb, expected[:, dy : dy + 2 * p, dx : dx + 2 * p]) for dy in (0, 1) for dx in (0, 1))


def test_training_items_stream_from_memory_maps(pairs_dataset):
    split = open_dataset(pairs_dataset["out"]).split("train", augment=True)
    assert split.open_shards == 0
    torch.manual_seed(0)
    item = split[0]
    assert item["raw"].shape == (4, PATCH, PATCH) and item["rgb"].shape == (3, 2 * PATCH, 2 * PATCH)
    assert split.open_shards == 1  # only the shard holding item 0 is mapped
    arrays = next(iter(split._open.values()))
    assert all(isinstance(a, np.memmap) for a in arrays.values())
    clone = pickle.loads(pickle.dumps(split))  # what a spawned DataLoader worker receives
    assert clone.open_shards == 0 and len(clone) == len(split)
    batch = next(iter(torch.utils.data.DataLoader(split, batch_size=4)))
    assert batch["raw"].shape == (4, 4, PATCH, PATCH) and len(batch["scene"]) == 4


def test_build_resumes_and_refuses_changed_options(pairs_dataset):
    out = pairs_dataset["out"]
    (out / "shards" / ".stale.partial").mkdir()  # what a killed build leaves behind
    events = []
    report = build_dataset(pairs_dataset["pairs"], out, BuildOptions(patch_size=PATCH, val_fraction=0.34),
                           progress=lambda kind, data: events.append((kind, data)))
    assert all(p["resumed"] for p in report["pairs"])
    assert report["counts"] == pairs_dataset["report"]["counts"]
    assert [k for k, _ in events].count("pair") == 4
    with pytest.raises(DatasetError, match="patch_size"):
        build_dataset(pairs_dataset["pairs"], out, BuildOptions(patch_size=2 * PATCH))


def test_synth_builds_a_dataset_from_three_images(tmp_path):
    images = tmp_path / "images"
    for i in range(3):
        save_srgb(images / f"img{i}.png", textured_scene(100 + 20 * i, 150, seed=10 + i))
    options = SynthOptions(patches_per_image=3, patch_size=PATCH, seed=5, val_fraction=0.34, previews=1)
    report = synthesize_dataset(images, tmp_path / "synth", options)
    assert report["counts"]["patches"] == 9 and report["counts"]["pairs_kept"] == 3
    ds = open_dataset(tmp_path / "synth")
    assert ds.manifest["kind"] == "synthetic"
    assert {s["synthetic"]["cfa_pattern"] for s in ds.manifest["shards"]} <= {"RGGB", "BGGR", "GRBG", "GBRG"}
    assert all((tmp_path / "synth" / "synthetic_raw").glob("*.dng"))
    train, val = ds.split("train", augment=True), ds.split("val")
    assert len(train) == 6 and len(val) == 3 and not set(train.scenes) & set(val.scenes)
    item = val[0]
    assert item["raw"].shape == (4, PATCH, PATCH) and item["rgb"].shape == (3, 2 * PATCH, 2 * PATCH)
    again = synthesize_dataset(images, tmp_path / "synth", options)  # same seed: nothing to redo
    assert all(p["resumed"] for p in again["pairs"]) and again["counts"] == report["counts"]
    first = np.load(tmp_path / "synth" / "shards" / ds.manifest["shards"][0]["name"] / "raw.npy")
    assert first.dtype == np.uint16 and first.shape == (3, 4, PATCH + 1, PATCH + 1)


def test_synth_gives_each_copy_of_an_image_its_own_camera_in_the_images_split(tmp_path):
    images = tmp_path / "images"
    for i in range(3):
        save_srgb(images / f"img{i}.png", textured_scene(100, 150, seed=20 + i))
    options = SynthOptions(patches_per_image=2, cameras_per_image=3, patch_size=PATCH, seed=1, val_fraction=0.34, previews=0)
    report = synthesize_dataset(images, tmp_path / "synth", options)
    assert report["counts"]["pairs_kept"] == 9 and report["counts"]["patches"] == 18
    shards = open_dataset(tmp_path / "synth").manifest["shards"]
    by_scene: dict[str, list[dict]] = {}
    for shard in shards:
        by_scene.setdefault(shard["scene"], []).append(shard)
    assert sorted(by_scene) == ["img0", "img1", "img2"]
    for copies in by_scene.values():
        assert len(copies) == 3 and len({c["split"] for c in copies}) == 1
        cameras = {(c["synthetic"]["red_gain"], c["synthetic"]["blue_gain"]) for c in copies}
        assert len(cameras) == 3  # three different random cameras
    with pytest.raises(DatasetError, match="cameras-per-image"):
        SynthOptions(cameras_per_image=0).build_options()


def test_targets_are_turned_into_sensor_orientation(tmp_path):
    from raw2rgb_plugin.io.dng_write import write_bayer_dng
    from raw2rgb_plugin.pipeline.orientation import orient
    from raw2rgb_plugin.training.data.unprocess import random_params, unprocess

    scene = textured_scene(96, 128, seed=30)  # sensor orientation
    (tmp_path / "raw").mkdir()
    rng = np.random.default_rng(0)
    params = random_params(rng, cfa_pattern="GBRG", noise=False)
    write_bayer_dng(tmp_path / "raw" / "portrait.dng", unprocess(scene, params, rng), params.cfa_pattern,
                    black_level=params.black_level, white_level=params.white_level,
                    color_matrix1=np.asarray(params.xyz_to_camera), as_shot_neutral=params.as_shot_neutral,
                    orientation=6)  # shown rotated 90° clockwise: LibRaw flip 6
    display = orient(torch.from_numpy(scene).permute(2, 0, 1), 6).permute(1, 2, 0).numpy()
    assert display.shape == (128, 96, 3)
    save_srgb(tmp_path / "rgb" / "portrait.png", display)
    pairs, _ = find_pairs(tmp_path / "raw", tmp_path / "rgb")
    report = build_dataset(pairs, tmp_path / "ds", BuildOptions(patch_size=16, align="none", val_fraction=0, previews=0))
    assert report["counts"]["patches"] > 0
    shard = open_dataset(tmp_path / "ds").manifest["shards"][0]
    assert shard["flip"] == 6 and shard["cfa_pattern"] == "GBRG"
    rgb = np.load(tmp_path / "ds" / "shards" / shard["name"] / "rgb.npy")
    top, left, bottom, right = shard["padding"]
    assert (top, left) == (1, 0)  # GBRG: one reflected row in front brings red to (0, 0)
    padded = np.pad(scene, ((top, bottom), (left, right), (0, 0)), mode="reflect")  # as the mosaic is padded
    for k, patch in enumerate(shard["patches"]):
        y0, x0, y1, x1 = patch["box_sensor"]
        expected = padded[y0 + top : y1 + top, x0 + left : x1 + left]
        np.testing.assert_allclose(rgb[k].transpose(1, 2, 0) / 255, expected, atol=1 / 255 + 1e-6)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_targets_are_read_upright_and_at_full_depth(tmp_path, orientation):
    import tifffile
    from PIL import Image, ImageOps

    from raw2rgb_plugin.training.data.images import load_rgb

    pixels = (np.random.default_rng(orientation).random((6, 9, 3)) * 65535).astype(np.uint16)
    exif = Image.Exif()
    exif[274] = orientation
    image8 = Image.fromarray((pixels >> 8).astype(np.uint8))
    image8.save(tmp_path / "t.png", exif=exif.tobytes())
    image8.save(tmp_path / "t.jpg", exif=exif.tobytes(), quality=100)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "t.png")))
    for name in ("t.png", "t.jpg"):
        got, bits = load_rgb(tmp_path / name)
        assert bits == 8 and got.shape == upright.shape
        if name.endswith(".png"):
            np.testing.assert_array_equal(np.rint(got * 255).astype(np.uint8), upright)
    tifffile.imwrite(tmp_path / "t.tif", pixels, photometric="rgb", extratags=[(274, "H", 1, orientation, True)], metadata=None)
    got, bits = load_rgb(tmp_path / "t.tif")
    assert bits == 16
    np.testing.assert_array_equal(np.rint(got * 65535).astype(np.uint16) >> 8, upright)


def test_pair_sources_list_match_and_refuse(tmp_path):
    raw, rgb = tmp_path / "raw", tmp_path / "rgb"
    for name in ("IMG_1", "IMG_2"):
        (raw / f"{name}.dng").parent.mkdir(exist_ok=True)
        (raw / f"{name}.dng").write_bytes(b"")
    save_srgb(rgb / "img_1.png", np.zeros((4, 4, 3)))  # stems match case-insensitively
    save_srgb(rgb / "other.jpg", np.zeros((4, 4, 3)))
    folders = FolderPairs(raw, rgb)
    assert [(p.raw.name, p.rgb.name, p.scene) for p in folders.pairs()] == [("IMG_1.dng", "img_1.png", "IMG_1")]
    assert folders.unmatched() == {"raw_without_rgb": ["IMG_2.dng"], "rgb_without_raw": ["other.jpg"]}
    assert folders.prepare(folders.pairs()[0]) == (folders.pairs()[0], None)
    save_srgb(rgb / "IMG_1.jpg", np.zeros((4, 4, 3)))
    with pytest.raises(DatasetError, match="share the stem"):
        FolderPairs(raw, rgb)

    csv = tmp_path / "pairs.csv"
    csv.write_text(f"raw,rgb,scene\nIMG_1.dng,other.jpg,\n{raw / 'IMG_2.dng'},img_1.png,hall\n", encoding="utf-8-sig")
    listed = CsvPairs(csv, raw, rgb)
    assert [(p.raw.name, p.rgb.name, p.scene) for p in listed.pairs()] == [("IMG_1.dng", "other.jpg", "IMG_1"),
                                                                           ("IMG_2.dng", "img_1.png", "hall")]
    assert listed.unmatched() == {}
    csv.write_text("raw,rgb\nIMG_3.dng,other.jpg\n")
    with pytest.raises(DatasetError, match=":2: .*IMG_3.dng does not exist"):
        CsvPairs(csv, raw, rgb)


def test_synthetic_source_writes_each_dng_in_prepare(tmp_path):
    save_srgb(tmp_path / "images" / "sub" / "a.png", textured_scene(40, 48, seed=1))
    save_srgb(tmp_path / "images" / "b.jpg", textured_scene(40, 48, seed=2))
    source = SyntheticPairs(tmp_path / "images", tmp_path / "dngs", cameras=2, seed=3, keep_raw=False)
    pairs = source.pairs()
    assert [p.scene for p in pairs] == ["b", "b", "sub/a", "sub/a"]
    assert len({p.raw for p in pairs}) == 4 and not (tmp_path / "dngs").exists()  # nothing written yet
    prepared, cleanup = source.prepare(pairs[2])
    assert prepared.raw == pairs[2].raw and prepared.raw.is_file() and prepared.shard_name == pairs[2].shard_name
    assert prepared.extra["raw_kept"] is False and prepared.extra["synthetic"]["cfa_pattern"] in ("RGGB", "BGGR", "GRBG", "GBRG")
    assert decode_raw(prepared.raw).width == 48
    again, _ = SyntheticPairs(tmp_path / "images", tmp_path / "dngs", cameras=2, seed=3).prepare(pairs[2])
    assert again.extra["synthetic"] == prepared.extra["synthetic"]  # seeded by the run and the DNG's name
    cleanup()
    assert not prepared.raw.exists()
    with pytest.raises(DatasetError, match="holds no PNG"):
        SyntheticPairs(tmp_path / "dngs", tmp_path / "x")


def test_png_orientation_is_found_after_the_image_data(tmp_path):
    import io
    import struct
    import zlib

    from PIL import Image

    from raw2rgb_plugin.training.data.images import load_rgb

    pixels = (np.random.default_rng(0).random((5, 7, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    png = buffer.getvalue()
    exif = Image.Exif()
    exif[274] = 6
    chunk = (struct.pack(">I", len(exif.tobytes())) + b"eXIf" + exif.tobytes()
             + struct.pack(">I", zlib.crc32(b"eXIf" + exif.tobytes())))
    (tmp_path / "late.png").write_bytes(png[:-12] + chunk + png[-12:])  # before IEND, after IDAT
    got, bits = load_rgb(tmp_path / "late.png")
    assert bits == 8
    np.testing.assert_array_equal(np.rint(got * 255).astype(np.uint8), np.rot90(pixels, -1))
