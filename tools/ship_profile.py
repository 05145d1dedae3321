"""Copy a trained profile into the package as a shipped profile (fp16 weights, same metadata).

    python tools/ship_profile.py runs/lite/default-lite.safetensors default-lite

fp16 halves the wheel's size; inference builds the network in fp32 (or the device's half type)
from it, and tests/test_shipped_profiles.py checks the shipped file against its metadata.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from raw2rgb_plugin.profiles.store import SHIPPED_PROFILE_DIR, load_profile, save_profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", help="trained profile (name or .safetensors path)")
    parser.add_argument("name", help="name to ship it under (e.g. default-lite)")
    args = parser.parse_args()

    profile = load_profile(args.profile)
    metadata = dict(profile.metadata)
    metadata["name"] = args.name
    metadata["shipped"] = {"source_file": Path(profile.path).name, "weights_dtype": "float16"}
    path = save_profile(SHIPPED_PROFILE_DIR / args.name, profile.model, metadata, dtype=torch.float16)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
