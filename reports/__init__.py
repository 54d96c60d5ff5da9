"""edgesim reports (docs/architecture.md §5): one self-contained HTML page and a Markdown file with PNG plots beside
it, for a run (``render_run``), a sweep (``render_sweep``) or an emulation (``render_emulation``).
matplotlib (Agg) is imported inside this package only; output is deterministic and written atomically."""
from __future__ import annotations

from .emulation import render_emulation
from .run import render_run
from .sweep import render_sweep

__all__ = ["render_emulation", "render_run", "render_sweep"]
