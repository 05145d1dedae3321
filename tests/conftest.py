"""Fixtures shared by the test suite.

Real test data lives beside the project in ../shared/data (never inside it); tests that need it
take the `shared_data` fixture and skip cleanly when it is absent, as in a fresh clone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def shared_data() -> Path:
    path = ROOT.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip("../shared/data is absent")
    return path


@pytest.fixture(autouse=True)
def isolated_profile_dir(tmp_path_factory, monkeypatch) -> Path:
    """Profiles a test installs land in a temp folder, never in the user's data directory."""
    path = tmp_path_factory.mktemp("user-profiles")
    monkeypatch.setenv("RAW2RGB_PROFILE_DIR", str(path))
    return path


def _shipped_less(tmp_path_factory, monkeypatch, hidden) -> Path:
    """A stand-in for the shipped profile folder without the profiles `hidden(stem)` names."""
    from raw2rgb_plugin.profiles import catalog

    folder = tmp_path_factory.mktemp("shipped-less")
    for path in catalog.SHIPPED_PROFILE_DIR.iterdir():
        if not hidden(path.name.split(".")[0]):
            (folder / path.name).symlink_to(path)
    monkeypatch.setattr(catalog, "SHIPPED_PROFILE_DIR", folder)
    return folder


@pytest.fixture
def without_shipped_xtrans(tmp_path_factory, monkeypatch) -> Path:
    """The shipped profiles less the X-Trans ones: a machine where no X-Trans profile is installed
    (what an older wheel, or a user who removed them, has)."""
    return _shipped_less(tmp_path_factory, monkeypatch, lambda stem: stem.startswith("xtrans"))


@pytest.fixture
def without_shipped_xtrans_develop(tmp_path_factory, monkeypatch) -> Path:
    """The shipped profiles less the scene-linear X-Trans one: X-Trans TIFFs but no X-Trans DNGs
    (what the wheels before it shipped had)."""
    return _shipped_less(tmp_path_factory, monkeypatch, lambda stem: stem == "xtrans-develop-lite")


@pytest.fixture(autouse=True)
def deterministic_cpu_runtime(tmp_path_factory, monkeypatch):
    """fp32 on the CPU whatever this machine would pick, and no measurement cached in the user's
    cache folder (tests of the precision choice set these themselves)."""
    monkeypatch.setenv("RAW2RGB_CPU_PRECISION", "fp32")
    monkeypatch.setenv("RAW2RGB_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def tiny_profile(tmp_path_factory) -> Path:
    """A width-8 G1 profile with random weights (wb+ccm input): fast, and every code path is real."""
    from helpers import make_tiny_profile

    return make_tiny_profile(tmp_path_factory.mktemp("profiles") / "tiny")


@pytest.fixture
def one_torch_thread():
    """Tiny networks gain nothing from intra-op threads, and on a shared 2-core machine
    spinning OpenMP threads made training tests up to 10× slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
