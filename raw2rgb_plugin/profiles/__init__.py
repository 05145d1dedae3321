"""Profiles: a trained model as safetensors + JSON metadata; search, safe loading, saving.

The shipped profiles live in `profiles/shipped/`.
"""

from raw2rgb_plugin.profiles.store import (
    Profile,
    default_profile_name,
    list_profile_paths,
    load_profile,
    read_profile_metadata,
    resolve_profile_path,
    save_profile,
    user_profile_dir,
)

__all__ = [
    "Profile", "default_profile_name", "list_profile_paths", "load_profile", "read_profile_metadata",
    "resolve_profile_path", "save_profile", "user_profile_dir",
]
