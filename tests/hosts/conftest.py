"""Fixtures of the host tests: the real raw2rgb console script and the small RAWs they open.

Every test here drives a real program (darktable 4.2 under Xvfb, gimp-console-2.10, GIMP 3 in a
Debian trixie chroot). `.ci/install-hosts` installs them; where one is missing its tests skip and
say why.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hostrun import raw2rgb_console_script


@pytest.fixture(scope="session")
def raw2rgb_exe() -> Path:
    script = raw2rgb_console_script()
    if script is None:
        pytest.skip("no raw2rgb console script beside this Python or on the PATH (pip install -e .)")
    return script

