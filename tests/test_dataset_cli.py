import json

from typer.testing import CliRunner

from scene_images import save_srgb, textured_scene


def test_cli_synth_json_and_errors(tmp_path):
    from raw2rgb_cli.main import app

    for i in range(2):
        save_srgb(tmp_path / "images" / f"im{i}.png", textured_scene(80, 96, seed=20 + i))
    runner = CliRunner()
    result = runner.invoke(app, ["dataset", "synth", str(tmp_path / "images"), "-o", str(tmp_path / "ds"),
                                 "--patch-size", "16", "--patches-per-image", "2", "--no-noise", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"]["patches"] == 4 and summary["kind"] == "synthetic"
    bad = runner.invoke(app, ["dataset", "build", str(tmp_path / "images"), str(tmp_path / "images"),
                              "-o", str(tmp_path / "ds2"), "--patch-size", "20"])
    assert bad.exit_code == 2 and "multiple of 8" in bad.output
