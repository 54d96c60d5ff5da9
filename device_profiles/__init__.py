"""Device profiles: one TOML file per real board, validated into frozen dataclasses (docs/architecture.md §2).

Every figure carries its unit in its key (``ram_bytes``, ``clock_hz``, ``active_current_a``) and its
source in a sibling ``<key>_source`` string; a source that starts with ``estimate`` marks the figure as
an estimate. Errors name the file, the field and the value.
"""
from __future__ import annotations

from .loader import (
    Battery,
    Core,
    DeviceProfile,
    Emulator,
    Flash,
    Memory,
    Power,
    ProfileError,
    Runtime,
    list_profiles,
    load_profile,
    profile_paths,
)

__all__ = [
    "Battery",
    "Core",
    "DeviceProfile",
    "Emulator",
    "Flash",
    "Memory",
    "Power",
    "ProfileError",
    "Runtime",
    "list_profiles",
    "load_profile",
    "profile_paths",
]
