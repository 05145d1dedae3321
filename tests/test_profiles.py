import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from raw2rgb_plugin.errors import ProfileError
from raw2rgb_plugin.models.g1 import G1, VARIANT_WIDTHS, G1Config, count_parameters, load_plain_state_dict
from raw2rgb_plugin.profiles.store import METADATA_KEY, list_profile_paths, load_profile, read_profile_metadata, save_profile

from helpers import make_tiny_profile


@pytest.fixture(autouse=True)
def user_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RAW2RGB_PROFILE_DIR", str(tmp_path / "user-profiles"))
    return tmp_path / "user-profiles"


def test_seed_width_has_the_seed_parameter_count():
    assert count_parameters(G1(G1Config.for_variant("base"))) == pytest.approx(23.6e6, rel=0.01)
    assert set(VARIANT_WIDTHS) == {"base", "slim", "lite"}


def test_g1_outputs_full_sensor_resolution_in_unit_range():
    model = G1(G1Config(width=8)).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 4, 24, 32))
    assert out.shape == (2, 3, 48, 64) and 0 <= float(out.min()) and float(out.max()) <= 1
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.rand(1, 4, 20, 32))


def test_residual_base_g1_starts_as_the_classical_rendering_and_round_trips(tmp_path):
    from raw2rgb_plugin.pipeline.classical import mhc_srgb_rendering

    torch.manual_seed(3)
    model = G1(G1Config(width=8, residual_base="mhc-srgb")).eval()
    grey = model(torch.full((1, 4, 16, 16), 0.18))
    encoded = 1.055 * 0.18 ** (1 / 2.4) - 0.055
    assert torch.allclose(grey, torch.full_like(grey, encoded * encoded * (3 - 2 * encoded)), atol=1e-5)
    x = torch.rand(1, 4, 16, 24)
    assert torch.equal(model(x), mhc_srgb_rendering(x).clamp(0, 1))  # the residual starts at zero

    with torch.no_grad():
        model.residual_gain.fill_(0.5)
    path = save_profile(tmp_path / "residual", model, {"input_normalization": "linear-srgb"})
    loaded = load_profile(path).model
    assert loaded.config.residual_base == "mhc-srgb"
    assert (loaded(x) - model(x)).abs().max() < 1e-5 and (loaded(x) - mhc_srgb_rendering(x)).abs().max() > 0.01
    with pytest.raises(ProfileError, match="residual base"):
        save_profile(tmp_path / "mismatch", model, {"input_normalization": "wb+ccm"})


@pytest.mark.slow
def test_gated_g1_blends_its_image_with_the_classical_rendering(tmp_path):
    from raw2rgb_plugin.models.g1 import adapt_plain_state
    from raw2rgb_plugin.pipeline.classical import mhc_srgb_rendering

    torch.manual_seed(5)
    plain = G1(G1Config(width=8, spectral_norm=False)).eval()
    gated = G1(G1Config(width=8, spectral_norm=False, residual_base="mhc-srgb-gated")).eval()
    gated.load_state_dict(adapt_plain_state(plain.state_dict(), "none", "mhc-srgb-gated"))
    x = torch.rand(1, 4, 16, 24)
    with torch.no_grad():
        # A gate adapted from a plain profile starts half-way: (G1's image + classical) / 2.
        assert torch.allclose(gated(x), (plain(x) + mhc_srgb_rendering(x)) / 2, atol=1e-6)
        gated.d4.conv.bias[12:].fill_(-30.0)  # gates shut: the classical rendering alone
        assert torch.allclose(gated(x), mhc_srgb_rendering(x), atol=1e-6)
    path = save_profile(tmp_path / "gated", gated, {"input_normalization": "linear-srgb"})
    assert torch.equal(load_profile(path).model(x), gated(x))
    back = G1(G1Config(width=8, spectral_norm=False)).eval()
    back.load_state_dict(adapt_plain_state(gated.state_dict(), "mhc-srgb-gated", "none"))
    assert torch.equal(back(x), plain(x))


@pytest.mark.slow
def test_round_trip_by_name_and_by_path(user_dir):
    path = make_tiny_profile(user_dir / "mine")
    meta = read_profile_metadata(path)
    assert meta["name"] == "mine" and meta["input_normalization"] == "wb+ccm"
    assert meta["architecture"] == {"name": "g1", "width": 8, "norm": "batch", "spectral_norm": False,
                                    "residual_blocks": 4, "in_channels": 4, "out_channels": 3, "residual_base": "none"}
    by_name, by_path = load_profile("mine"), load_profile(str(path))
    x = torch.rand(1, 4, 16, 16)
    assert torch.equal(by_name.model(x), by_path.model(x))
    assert path in list_profile_paths()


@pytest.mark.slow
def test_fp16_profile_reproduces_the_model(tmp_path):
    torch.manual_seed(1)
    model = G1(G1Config(width=8)).eval()
    path = save_profile(tmp_path / "half", model, {"input_normalization": "raw"}, dtype=torch.float16)
    x = torch.rand(1, 4, 16, 16)
    assert (load_profile(path).model(x) - model(x)).abs().max() < 5e-3


@pytest.mark.slow
def test_spectral_norm_training_model_exports_its_effective_weights(tmp_path):
    torch.manual_seed(2)
    model = G1(G1Config(width=8, spectral_norm=True))
    model.train()
    for _ in range(20):  # let the power iteration converge
        model(torch.rand(2, 4, 16, 16))
    model.eval()
    x = torch.rand(1, 4, 16, 16)
    path = save_profile(tmp_path / "sn", model, {"input_normalization": "wb"})
    assert (load_profile(path).model(x) - model(x)).abs().max() < 1e-5
    # …and fine-tuning starts from the same function.
    again = G1(G1Config(width=8, spectral_norm=True))
    load_plain_state_dict(again, load_file(str(path)))
    assert (again.eval()(x) - model(x)).abs().max() < 0.02


def test_tensors_that_do_not_match_the_metadata_are_rejected(tmp_path):
    path = make_tiny_profile(tmp_path / "p")
    tensors = load_file(str(path))
    meta = read_profile_metadata(path)
    meta["architecture"]["width"] = 16
    save_file(tensors, str(tmp_path / "lying.safetensors"), metadata={METADATA_KEY: json.dumps(meta)})
    with pytest.raises(ProfileError, match="wrong shape"):
        load_profile(tmp_path / "lying.safetensors")
    tensors.pop("e1.conv.weight")
    save_file(tensors, str(tmp_path / "short.safetensors"), metadata={METADATA_KEY: json.dumps(read_profile_metadata(path))})
    with pytest.raises(ProfileError, match="missing 1 tensors"):
        load_profile(tmp_path / "short.safetensors")


def test_a_pickle_is_never_loaded(tmp_path):
    evil = tmp_path / "evil.safetensors"
    torch.save({"e1.conv.weight": torch.zeros(1)}, evil)  # a pickle under a profile's name
    with pytest.raises(ProfileError, match="not a readable safetensors file"):
        load_profile(evil)


def test_unknown_names_and_metadata_are_explained(tmp_path):
    with pytest.raises(ProfileError, match="no profile named 'nope'"):
        load_profile("nope")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ProfileError, match="no raw2rgb metadata"):
        load_profile(tmp_path / "plain.safetensors")
    path = make_tiny_profile(tmp_path / "q")
    meta = read_profile_metadata(path)
    meta["input_normalization"] = "magic"
    save_file(load_file(str(path)), str(tmp_path / "odd.safetensors"), metadata={METADATA_KEY: json.dumps(meta)})
    with pytest.raises(ProfileError, match="unknown input normalisation"):
        load_profile(tmp_path / "odd.safetensors")


def test_default_profile_follows_the_device_and_falls_back(user_dir, monkeypatch, tmp_path):
    from raw2rgb_plugin.profiles import catalog as profiles  # where profiles are found (torch-free)

    monkeypatch.setattr(profiles, "SHIPPED_PROFILE_DIR", tmp_path / "shipped-empty")
    with pytest.raises(ProfileError, match="no default profile"):
        profiles.default_profile_name("cpu")
    make_tiny_profile(user_dir / "default-lite")
    assert profiles.default_profile_name("cpu") == "default-lite"
    assert profiles.default_profile_name("cuda") == "default-lite"  # the GPU one is absent
    make_tiny_profile(user_dir / "default")
    assert profiles.default_profile_name("cuda") == "default"
    assert profiles.default_profile_name("cpu") == "default-lite"


@pytest.mark.parametrize("field, value", [("width", 100000), ("residual_blocks", 10**7), ("in_channels", 0),
                                          ("width", "16"), ("norm", "instance"),
                                          ("fine_blocks", 10**6)])
def test_unbounded_architecture_fields_are_refused_before_building(tmp_path, field, value):
    """A profile is user data: its metadata must not be able to ask the allocator for terabytes."""
    meta = {"format_version": 1, "input_normalization": "wb+ccm", "output_color_space": "srgb",
            "architecture": {"name": "g1", "width": 8, field: value}}
    path = tmp_path / "hostile.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={METADATA_KEY: json.dumps(meta)})
    with pytest.raises(ProfileError, match=field):
        load_profile(path)


def test_every_architecture_is_checked_the_same_with_and_without_torch():
    from raw2rgb_plugin.models.blocks import BLOCK_CHECKS
    from raw2rgb_plugin.models.registry import ARCHITECTURES

    assert set(ARCHITECTURES) == set(BLOCK_CHECKS)
    assert all(spec.check_block is BLOCK_CHECKS[name] for name, spec in ARCHITECTURES.items())


@pytest.mark.parametrize("meta, reason", [
    ({"output": "scene-linear", "output_color_space": "srgb"}, "scene-linear"),
    ({"output": "display", "output_color_space": "camera-linear"}, "camera-linear"),
    ({"output": "hdr", "output_color_space": "srgb"}, "unknown output"),
])
def test_a_profile_says_consistently_what_it_outputs(tmp_path, meta, reason):
    """A scene-linear profile's numbers are camera RGB, not sRGB: the two fields must agree."""
    full = {"format_version": 1, "input_normalization": "wb-headroom",
            "architecture": {"name": "g1", "width": 8}, **meta}
    path = tmp_path / "mixed.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={METADATA_KEY: json.dumps(full)})
    with pytest.raises(ProfileError, match=reason):
        load_profile(path)
