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
