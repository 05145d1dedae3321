"""Several devices and several machines: every input converted exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest

from raw2rgb_plugin.engine.converter import Converter
from raw2rgb_plugin.engine.fanout import stream_on_devices
from raw2rgb_plugin.engine.jobs import ConvertJob
from raw2rgb_plugin.engine.options import ConvertOptions
from raw2rgb_plugin.engine.plan import parse_shard, shard
from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.profiles.store import load_profile

from test_convert import write_scene_dng


def test_shards_are_disjoint_cover_everything_and_ignore_listing_order():
    inputs = [Path(f"/photos/{name}.nef") for name in "qwertyuiopasdfg"]
    shares = [shard(inputs, k, 4) for k in range(1, 5)]
    assert sorted(p for share in shares for p in share) == sorted(inputs)
    assert all(len(share) in (3, 4) for share in shares)
    assert shard(list(reversed(inputs)), 2, 4) == list(reversed(shard(inputs, 2, 4)))


@pytest.mark.parametrize("text", ["0/4", "5/4", "a/b", "3"])
def test_bad_shard_text_is_one_line(text):
    with pytest.raises(Raw2RgbError, match="--shard"):
        parse_shard(text)


def test_two_converters_share_one_batch(tmp_path, tiny_profile):
    profile = load_profile(tiny_profile)
    converters = [Converter(profile, device="cpu", threads=1), Converter(profile, device="cpu", threads=1)]
    inputs = [write_scene_dng(tmp_path / f"f{i}.dng", seed=i) for i in range(6)]
    jobs = [ConvertJob(p, tmp_path / f"{p.stem}.tif") for p in inputs]
    results = list(stream_on_devices(converters, jobs, options=ConvertOptions(decode_workers=1)))
    assert sorted(r.input for r in results) == sorted(inputs)
    assert {r.status for r in results} == {"converted"}


def test_cli_shards_and_devices_cover_every_file_once(tmp_path, tiny_profile):
    import json

    from typer.testing import CliRunner

    from raw2rgb_cli.main import app

    (tmp_path / "in").mkdir()
    inputs = [write_scene_dng(tmp_path / "in" / f"g{i}.dng", seed=i) for i in range(5)]
    runner = CliRunner()
    converted = []
    for k in (1, 2):
        done = runner.invoke(app, ["convert", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--profile", str(tiny_profile),
                                   "--shard", f"{k}/2", "--devices", "cpu,cpu", "--json", "-q"])
        assert done.exit_code == 0, done.output
        converted += [f["input"] for f in json.loads(done.stdout)["files"] if f["status"] == "converted"]
    assert sorted(converted) == sorted(str(p) for p in inputs)
    bad = runner.invoke(app, ["convert", str(tmp_path / "in"), "--shard", "3/2", "--json"])
    assert bad.exit_code == 2 and "--shard" in json.loads(bad.stdout)["error"]
