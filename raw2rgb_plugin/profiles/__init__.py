"""Profiles: a trained model as safetensors + JSON metadata; search, safe loading, saving.

The shipped profiles live in `profiles/shipped/`. The names below load on first use (the store
needs torch; listing profile files does not).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Profile", "default_profile_name", "list_profile_paths", "load_profile", "read_profile_metadata",
    "resolve_profile_path", "save_profile", "user_profile_dir",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from raw2rgb_plugin.profiles import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
