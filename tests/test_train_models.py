"""G2, D, the VGG16 loader, the losses and the metrics used by training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch.nn.utils import parametrize

from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.models.discriminator import MIN_PACKED_SIZE, PatchDiscriminator
from raw2rgb_plugin.models.g1 import G1, G1Config, count_parameters
from raw2rgb_plugin.models.g2 import G2
from raw2rgb_plugin.models.vgg import VGG16_URL, Vgg16Conv4_3, VggWeightsError, load_vgg16_conv4_3, vgg_cache_path
from raw2rgb_plugin.pipeline.metrics import psnr, ssim
from raw2rgb_plugin.training.losses import PerceptualLoss, attention_loss, lsgan_d_loss, lsgan_g_loss

from train_helpers import install_vgg_weights, make_vgg_state

# Tiny networks gain nothing from intra-op threads (see conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_g2_predicts_full_resolution_saliency_and_trains_g1_decoder():
    torch.manual_seed(0)
    g1 = G1(G1Config(width=8))
    g2 = G2(g1.config)
    rgb, features = g1.forward_features(torch.rand(2, 4, 16, 24))
    saliency = g2(features)
    assert saliency.shape == (2, 1, 32, 48) == (2, 1, *rgb.shape[-2:])
    assert 0 <= saliency.min().item() and saliency.max().item() <= 1
    saliency.mean().backward()
    # Multi-task learning: G2's loss reaches G1's decoder and encoder, not its RGB head.
    assert g1.d1.conv.conv.parametrizations.weight.original.grad.abs().sum() > 0
    assert g1.e1.conv.parametrizations.weight.original.grad.abs().sum() > 0
    assert g1.d4.conv.parametrizations.weight.original.grad is None


def test_g2_size_matches_the_seed():
    assert 0.6e6 < count_parameters(G2(G1Config(width=64))) < 0.8e6  # seed: ~0.78 M


def test_discriminator_layout_matches_the_seed():
    d = PatchDiscriminator(64)
    assert 8.0e6 < count_parameters(d) < 8.3e6  # seed: ~8.2 M
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 10 and all(parametrize.is_parametrized(c, "weight") for c in convs)
    with torch.no_grad():
        assert d(torch.rand(1, 4, 224, 224), torch.rand(1, 3, 448, 448)).shape == (1, 1, 26, 26)
        assert d(torch.rand(2, 4, MIN_PACKED_SIZE, 32), torch.rand(2, 3, 48, 64)).shape[:2] == (2, 1)


def test_discriminator_sees_rgb_on_its_bayer_quad():
    d = PatchDiscriminator(8).eval()
    raw, rgb = torch.rand(1, 4, 32, 32), torch.rand(1, 3, 64, 64)
    seen = {}
    d.net[0].register_forward_hook(lambda module, inputs, output: seen.update(x=inputs[0]))
    with torch.no_grad():
        d(raw, rgb)
    x = seen["x"]
    assert x.shape == (1, 16, 32, 32) and torch.equal(x[:, :4], raw)
    # Packed pixel (i, j) carries exactly the 2×2 RGB block rendered from its Bayer quad.
    i, j = 5, 9
    assert sorted(x[0, 4:, i, j].tolist()) == sorted(rgb[0, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].flatten().tolist())
    with pytest.raises(ValueError, match="twice"):
        d(raw, torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="at least"):
        d(torch.rand(1, 4, 16, 16), torch.rand(1, 3, 32, 32))


# ------------------------------------------------------------------ VGG16 weights


@pytest.fixture(scope="session")
def vgg_state() -> dict[str, torch.Tensor]:
    return make_vgg_state()


@pytest.fixture
def vgg_hub(tmp_path, monkeypatch, vgg_state):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return install_vgg_weights(vgg_state)


def test_vgg_loader_reads_the_torch_hub_cache(vgg_hub, vgg_state):
    assert vgg_hub.name == VGG16_URL.rsplit("/", 1)[1] and vgg_hub.parent.name == "checkpoints"
    model = load_vgg16_conv4_3()
    assert torch.equal(model.features[21].weight, vgg_state["features.21.weight"])
    assert len(model.features) == 22  # conv4_3 is the last layer: no ReLU after it
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 512, 8, 8)


def test_vgg_loader_reads_weights_files(tmp_path, vgg_state):
    reference = load_vgg16_conv4_3_from(vgg_state)
    image = torch.rand(1, 3, 32, 32)
    pth, st = tmp_path / "vgg.pth", tmp_path / "vgg.safetensors"
    torch.save(vgg_state, pth)
    save_file({k: v.contiguous() for k, v in vgg_state.items() if k.startswith("features.")}, str(st))
    with torch.no_grad():
        expected = reference(image)
        assert torch.equal(load_vgg16_conv4_3(pth)(image), expected)
        assert torch.equal(load_vgg16_conv4_3(st)(image), expected)


def load_vgg16_conv4_3_from(state: dict) -> Vgg16Conv4_3:
    model = Vgg16Conv4_3().eval()
    model.load_state_dict({k: v for k, v in state.items() if k in model.state_dict()})
    return model


def test_vgg_loader_without_weights_names_both_ways(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    # A URL that cannot be fetched, as offline: the real download path fails fast.
    with pytest.raises(VggWeightsError) as info:
        load_vgg16_conv4_3(url=(tmp_path / "nowhere" / "vgg16-397923af.pth").as_uri())
    message = str(info.value)
    assert isinstance(info.value, Raw2RgbError) and "\n" not in message
    assert "--vgg-weights" in message and "--no-perceptual" in message and str(vgg_cache_path()) in message


def test_vgg_loader_rejects_wrong_and_unsafe_files(tmp_path, vgg_state):
    with pytest.raises(VggWeightsError, match="does not exist"):
        load_vgg16_conv4_3(tmp_path / "missing.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({k: v[..., :1, :1] if k == "features.0.weight" else v for k, v in vgg_state.items()}, wrong)
    with pytest.raises(VggWeightsError, match="features.0.weight"):
        load_vgg16_conv4_3(wrong)
    pickled = tmp_path / "pickled.pth"
    torch.save({"features.0.weight": np.zeros(3)}, pickled)  # needs unpickling a numpy object
    with pytest.raises(VggWeightsError, match="cannot read"):
        load_vgg16_conv4_3(pickled)


# ------------------------------------------------------------------ losses and metrics


def test_attention_and_lsgan_losses():
    fake, real = torch.full((1, 3, 2, 2), 0.5), torch.full((1, 3, 2, 2), 1.0)
    predicted, target = torch.full((1, 1, 2, 2), 1.0), torch.full((1, 1, 2, 2), 0.25)
    assert attention_loss(fake, predicted, real, target).item() == pytest.approx(0.25)
    assert lsgan_d_loss(torch.zeros(2, 1, 3, 3), torch.ones(2, 1, 3, 3)).item() == 0
    assert lsgan_d_loss(torch.ones(1, 1, 3, 3), torch.zeros(1, 1, 3, 3)).item() == pytest.approx(1.0)
    assert lsgan_g_loss(torch.ones(1, 1, 3, 3)).item() == 0
    assert lsgan_g_loss(torch.zeros(1, 1, 3, 3)).item() == pytest.approx(0.5)


def test_perceptual_loss_has_gradient_only_through_the_output(vgg_state):
    loss_fn = PerceptualLoss(load_vgg16_conv4_3_from(vgg_state))
    loss_fn.train()
    assert not loss_fn.features.training
    fake = torch.rand(1, 3, 32, 32, requires_grad=True)
    real = torch.rand(1, 3, 32, 32, requires_grad=True)
    loss = loss_fn(fake, real)
    loss.backward()
    assert loss.item() > 0 and fake.grad.abs().sum() > 0 and real.grad is None
    assert loss_fn(real.detach(), real.detach()).item() == 0


def test_psnr():
    a = torch.zeros(2, 3, 16, 16)
    b = a.clone()
    b[0] += 0.1  # MSE 0.01 → 20 dB
    values = psnr(b, a)
    assert values[0].item() == pytest.approx(20.0, abs=1e-4) and values[1].item() == 100.0


def test_ssim_matches_a_direct_window_computation():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 20, 24, generator=g)
    y = (x + 0.2 * torch.rand(1, 3, 20, 24, generator=g)).clamp(0, 1)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)
    # Independent reference: weighted statistics window by window (valid positions), in numpy.
    c = np.arange(11) - 5
    w = np.exp(-(c**2) / (2 * 1.5**2))
    w = np.outer(w, w) / np.outer(w, w).sum()
    xs, ys = x[0].double().numpy(), y[0].double().numpy()
    values = []
    for ch in range(3):
        for i in range(20 - 10):
            for j in range(24 - 10):
                px, py = xs[ch, i : i + 11, j : j + 11], ys[ch, i : i + 11, j : j + 11]
                mx, my = (w * px).sum(), (w * py).sum()
                vx, vy = (w * px * px).sum() - mx**2, (w * py * py).sum() - my**2
                cxy = (w * px * py).sum() - mx * my
                values.append(((2 * mx * my + 1e-4) * (2 * cxy + 9e-4)) / ((mx**2 + my**2 + 1e-4) * (vx + vy + 9e-4)))
    assert ssim(y, x).item() == pytest.approx(float(np.mean(values)), abs=1e-6)
    assert ssim(y, x).item() < 0.99
