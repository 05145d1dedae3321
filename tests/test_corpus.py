"""raw2rgb dataset corpus: photographs gathered, cleaned by downsampling, test sets kept out."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from raw2rgb_cli.main import app
from raw2rgb_plugin.training.data.corpus import (
    CorpusError,
    CorpusOptions,
    CorpusSource,
    build_corpus,
    sources_from_recipe,
    thumbnails_of,
)


def _photo(path, height, width, seed):
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.random((height, width, 3)).astype(np.float32), (0, 0), 6)
    image = (image - image.min()) / (image.max() - image.min())
    cv2.imwrite(str(path), (image * 255).astype(np.uint8))
    return image


def test_photographs_are_downsampled_in_linear_light_and_test_images_stay_out(tmp_path):
    photos, tests = tmp_path / "photos", tmp_path / "tests"
    photos.mkdir()
    tests.mkdir()
    _photo(photos / "big.jpg", 600, 800, 1)
    _photo(photos / "small.png", 300, 300, 2)  # 150 px after the 2× average: too small
    _photo(photos / "kodim05.png", 512, 768, 3)  # a test set's name
    test_image = _photo(tests / "1.png", 512, 768, 4)
    near_copy = cv2.resize(test_image, (1000, 667), interpolation=cv2.INTER_CUBIC)  # resized, recompressed
    cv2.imwrite(str(photos / "holiday.jpg"), (np.clip(near_copy, 0, 1) * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 80])
    source = CorpusSource(name="folder:photos", root=photos, licence="CC0-1.0")

    manifest = build_corpus([source], tmp_path / "corpus", CorpusOptions(max_short_side=1024, min_short_side=192),
                            tests=thumbnails_of(sorted(tests.iterdir())))

    [kept] = manifest["images"]
    assert kept["path"] == "big.jpg" and kept["size"] == [400, 300] and kept["factor"] == 2.0
    assert kept["licence"] == "CC0-1.0" and not kept["research_only"]
    pixels = cv2.imread(str(tmp_path / "corpus" / kept["file"]), cv2.IMREAD_UNCHANGED)
    assert pixels.dtype == np.uint16 and pixels.shape == (300, 400, 3)
    reasons = {e["path"]: e["reason"] for e in manifest["excluded"]}
    assert reasons["kodim05.png"] == "named like a test-set image"
    assert reasons["holiday.jpg"] == "looks like the test image 1.png"
    assert reasons["small.png"].startswith("too small")
    # A rebuild keeps what is there and writes the same manifest.
    again = build_corpus([source], tmp_path / "corpus", tests=thumbnails_of(sorted(tests.iterdir())))
    assert again["images"] == manifest["images"]


def test_an_average_of_light_not_of_code_values(tmp_path):
    """A fine black/white pattern averages to mid-grey light (sRGB 188), not to code value 128."""
    folder = tmp_path / "p"
    folder.mkdir()
    stripes = np.zeros((400, 400, 3), np.uint8)
    stripes[:, ::2] = 255
    cv2.imwrite(str(folder / "stripes.png"), stripes)
    manifest = build_corpus([CorpusSource("folder:p", folder, "mine")], tmp_path / "c")
    pixels = cv2.imread(str(tmp_path / "c" / manifest["images"][0]["file"]), cv2.IMREAD_UNCHANGED)
    assert abs(float(pixels.mean()) / 257 - 188) < 1.5


def test_a_recipe_names_its_sources_and_says_how_to_get_a_missing_one(tmp_path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"sources": [{"name": "github:someone/photos", "repository": "someone/photos",
                                               "commit": "abc", "folder": "img", "licence": "CC-BY-4.0",
                                               "research_only": True, "min_factor": 1.5}]}))
    [source] = sources_from_recipe(recipe, tmp_path / "src", fetch_packages=False)
    assert source.root == tmp_path / "src" / "someone+photos" / "img" and source.min_factor == 1.5
    with pytest.raises(CorpusError, match="clone https://github.com/someone/photos at abc"):
        source.images()


def test_the_shipped_recipe_reads(repo_root):
    sources = sources_from_recipe(repo_root / "tools" / "corpus-recipe.json", repo_root / "no-such-folder",
                                  fetch_packages=False)
    names = {s.name for s in sources}
    assert "github:alexeygrigorev/clothing-dataset" in names and all(s.licence for s in sources)
    assert not any("kodak" in n.lower() or "mcmaster" in n.lower() or "bsd68" in n.lower() for n in names)


def test_cli_builds_a_corpus_from_a_folder(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    _photo(folder / "a.jpg", 500, 700, 5)
    result = CliRunner().invoke(app, ["dataset", "corpus", str(tmp_path / "out"), "--folder", str(folder),
                                      "--licence", "CC-BY-4.0", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"]["images"] == 1 and summary["sources"][0]["licence"] == "CC-BY-4.0"
