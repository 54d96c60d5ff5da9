"""Figures for people: one byte formatter and one number test for the terminal and the reports alike
(docs/architecture.md, "Shared helpers")."""
from __future__ import annotations

from typing import Any


def is_number(v: Any) -> bool:
    """An int or float, not a bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def human_bytes(n: Any) -> str:
    """Bytes for people: 512 B, 16.0 KiB, 1.00 MiB, 1.50 GiB."""
    if not is_number(n):
        return "n/a"
    if abs(n) < 1024:
        return f"{n:,.0f} B"
    if abs(n) < 1024 ** 2:
        return f"{n / 1024:,.1f} KiB"
    if abs(n) < 1024 ** 3:
        return f"{n / 1024 ** 2:,.2f} MiB"
    return f"{n / 1024 ** 3:,.2f} GiB"
