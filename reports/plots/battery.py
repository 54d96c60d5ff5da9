"""The battery plot: state of charge over the run."""
from __future__ import annotations

import numpy as np

from .figure import figure, mark_end, png, time_axis


def battery_plot(battery: dict, energy_per_day_j: float | None, ended: tuple[float, str] | None = None) -> bytes:
    """State of charge over the run (J), with the capacity as reference; ``ended`` (time, reason) marks
    where a run stopped early."""
    t = np.asarray(battery.get("time_s") or [], dtype=float)
    q = np.asarray(battery.get("charge_j") or [], dtype=float)
    cap = battery.get("capacity_j")
    with figure(height=3.2) as (fig, axes):
        ax = axes[0][0]
        span = max(float(t[-1]) if len(t) else 1.0, ended[0] if ended else 0.0)
        tdiv, tunit = time_axis(span)
        ax.plot(t / tdiv, q, color="#4c72b0", lw=1.5, label="charge")
        if cap:
            ax.axhline(cap, color="black", lw=1, ls="--", label=f"capacity {cap:,.0f} J")
        if len(q) > 1:
            used = q[0] - q[-1]
            ax.plot([], [], " ", label=f"used over the run: {used:,.1f} J")
        if energy_per_day_j is not None:
            ax.plot([], [], " ", label=f"energy per day: {energy_per_day_j:,.1f} J/day")
        if ended:
            mark_end(ax, ended[0], tdiv, ended[1])
        ax.set_title("Battery charge over the run")
        ax.set_xlabel(f"simulated time ({tunit})")
        ax.set_ylabel("charge (J)")
        lo = float(q.min()) if len(q) else 0.0
        hi = float(cap or (q.max() if len(q) else 1.0))
        pad = max((hi - lo) * 0.1, hi * 1e-4, 1e-9)
        ax.set_ylim(lo - pad, hi + pad)
        ax.legend(loc="lower left", fontsize=8)
        return png(fig)
