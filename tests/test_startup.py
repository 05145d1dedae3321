"""Start-up: what each command imports before it does its work (issue 22: `raw2rgb --help` ≤ 0.3 s,
`raw2rgb info` ≤ 0.8 s, the host plug-ins' `raw2rgb convert` calls).

Nothing here is timed (timed unit tests are not reliable on a shared machine): the tests check the
modules a fresh process has loaded, which is what the time was spent on. The measurements are in
the commits that moved these imports; `python -X importtime -m raw2rgb_cli.main --help` shows them.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys

import pytest

from raw2rgb_cli.convert_cmd import _collector_paused_for_imports

#: never needed to start the CLI or to show its help: torch 1.3-2.2 s, numpy 0.1-0.15 s, the rest
#: 5-50 ms each (busy 2-core EPYC); rich.progress only when a command draws a bar.
NOT_AT_START = ("torch", "numpy", "rawpy", "exifread", "lensfunpy", "tifffile", "tifftools", "PIL", "cv2",
                "safetensors", "onnxruntime", "platformdirs", "rich.progress")
#: never needed to describe a RAW file (`raw2rgb info` decodes with rawpy and numpy).
NOT_FOR_INFO = ("torch", "onnxruntime", "cv2", "safetensors", "rich.progress")


def _loaded_after(code: str, *args: str) -> set[str]:
    """The modules of NOT_AT_START a fresh interpreter holds after running `code`."""
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps([m for m in {list(NOT_AT_START)!r} if m in sys.modules]), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def _run_app(*args: str) -> str:
    return ("import sys\nfrom raw2rgb_cli.main import app\n"
            f"try:\n    app({list(args)!r})\nexcept SystemExit as e:\n    assert not e.code, e.code\n")


def test_importing_the_cli_loads_no_heavy_module():
    assert _loaded_after("import raw2rgb_cli.main") == set()


def test_help_loads_no_heavy_module():
    assert _loaded_after(_run_app("--help")) == set()


def test_info_loads_nothing_a_raw_description_does_not_need(repo_root):
    files = [repo_root / "examples" / "astronaut.dng"]
    crw = repo_root.parent / "shared" / "data" / "raw" / "RAW_CANON_D30_SRGB.CRW"  # a real camera's, when at hand
    files += [crw] if crw.is_file() else []
    loaded = _loaded_after(_run_app("info", "--json", *map(str, files)))
    assert "rawpy" in loaded and "numpy" in loaded  # it did decode them
    assert loaded.isdisjoint(NOT_FOR_INFO), loaded & set(NOT_FOR_INFO)


def test_the_collector_is_paused_for_the_first_torch_import_then_frozen():
    """convert imports torch and loads the model with the collector off, then freezes that import's
    objects (its import and the interpreter's exit no longer walk them)."""
    code = ("import gc\nfrom raw2rgb_cli.convert_cmd import _collector_paused_for_imports\n"
            "with _collector_paused_for_imports():\n    paused = not gc.isenabled()\n"
            "print(paused, gc.isenabled(), gc.get_freeze_count() > 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "True"]


def test_a_process_that_holds_torch_keeps_its_collector():
    """In a test run (or a host calling `app` in-process) torch is loaded already: nothing is frozen,
    so that process's own garbage is never kept alive."""
    pytest.importorskip("torch")
    frozen = gc.get_freeze_count()
    with _collector_paused_for_imports():
        assert gc.isenabled()
    assert gc.isenabled() and gc.get_freeze_count() == frozen


@pytest.mark.parametrize("own", [None, "ACTIVE"])
def test_the_cli_waits_passively_unless_told_otherwise(own):
    """OpenMP reads OMP_WAIT_POLICY when torch starts it: the CLI sets it before any torch import."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | ({"OMP_WAIT_POLICY": own} if own else {})
    probe = "import os, sys\nimport raw2rgb_cli.main\nprint(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [own or "PASSIVE", "False"]
