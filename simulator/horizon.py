"""Refuse a horizon this machine cannot hold, before anything runs (docs/architecture.md §3).

Every timeline of a long run is bounded (``simulator.timeline``) except the result's busy seconds per
hour of the run (``timelines.cpu_busy_by_hour``), one entry per simulated hour: a horizon whose hours
would not fit in half the memory available now is refused with a ``ValueError`` (exit 2) naming
``duration_s`` and its value.
"""
from __future__ import annotations

import os

BYTES_PER_HOUR = 1200      # ~680 B measured (tracemalloc: the hour's dict, its result entry, its JSON text), doubled
SHARE = 0.5                # of the memory available now


def available_bytes() -> int:
    """Memory available to a new process now (Linux MemAvailable; else free physical pages)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 34


def check_horizon(duration_s: float, where: str, available: int | None = None) -> None:
    """Raise ValueError if a run of ``duration_s`` cannot be held in memory here."""
    avail = available_bytes() if available is None else available
    need = duration_s / 3600.0 * BYTES_PER_HOUR
    if need > SHARE * avail:
        max_days = SHARE * avail / BYTES_PER_HOUR * 3600.0 / 86400.0
        raise ValueError(f"{where}: duration_s = {duration_s:g} s ({duration_s / 86400.0:,.0f} days) cannot be held "
                         f"here: its hourly CPU timeline needs about {need / 1e9:,.1f} GB and this machine has "
                         f"{avail / 1e9:,.1f} GB available; simulate at most {max_days:,.0f} days")
