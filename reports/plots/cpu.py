"""The CPU plot: who holds the CPU over the run (inference vs training), and a zoom on the first
preemption or training burst."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .figure import figure, mark_end, png, time_axis


def _busy_per_bin(iv: list[tuple[float, float]], edges: np.ndarray) -> np.ndarray:
    """Seconds of CPU each time bin spends inside the intervals ``iv``."""
    busy = np.zeros(len(edges) - 1)
    if not iv:
        return busy
    width = edges[1] - edges[0]
    for s, e in iv:
        k0 = int(min(max((s - edges[0]) // width, 0), len(busy) - 1))
        k1 = int(min(max((e - edges[0]) // width, 0), len(busy) - 1))
        if k0 == k1:
            busy[k0] += e - s
        else:
            busy[k0] += edges[k0 + 1] - s
            busy[k0 + 1:k1] += width
            busy[k1] += e - edges[k1]
    return busy


def cpu_plot(cpu: Sequence[dict], duration_s: float, busy_by_hour: Sequence[dict] | None = None,
             ended: tuple[float, str] | None = None) -> bytes:
    """Who holds the CPU. Left: the share of each time bin spent on inference and on training over the
    whole run, with preemptions marked (and where a run that stopped early, ``ended`` = (time, reason),
    stopped). Right: the actual slices around the first preemption, else the first training burst, else
    the first inference; preempted training slices are hatched red."""
    rows = {"inference": 1, "training": 0}
    colors = {"inference": "#4c72b0", "training": "#55a868"}
    with figure(1, 2, height=3.0, gridspec_kw={"width_ratios": [3, 2]}) as (fig, axes):
        ax_all, ax_zoom = axes[0]
        end = max(duration_s, max((c["end_s"] for c in cpu), default=0.0), 1e-9)
        tdiv, tunit = time_axis(end)
        if busy_by_hour and end >= 3 * 3600:
            # the run's own per-hour totals: exact even where the slice list was capped
            nb = int(math.ceil(end / 3600))
            edges = np.arange(nb + 1) * 3600.0
            shares = [np.zeros(nb) for _ in rows]
            for h in busy_by_hour:
                if 0 <= h["hour"] < nb:
                    for k, task in enumerate(rows):
                        shares[k][h["hour"]] = 100 * (h.get(task) or 0.0) / 3600
        else:
            nb = 200
            edges = np.linspace(0.0, end, nb + 1)
            shares = [100 * _busy_per_bin([(c["start_s"], c["end_s"]) for c in cpu if c.get("task") == task], edges)
                      / (edges[1] - edges[0]) for task in rows]
        ax_all.stackplot(edges / tdiv, [np.r_[sh, sh[-1:]] for sh in shares], step="post", colors=[colors[k] for k in rows],
                         labels=[f"{k} (busy share)" for k in rows], alpha=0.85)
        pre = [c for c in cpu if c.get("preempted")]
        top = max(float(np.max(np.sum(shares, axis=0))) if nb else 0.0, 1e-3)
        if pre:
            ax_all.plot([c["start_s"] / tdiv for c in pre], [top * 1.08] * len(pre), "v", color="#c44e52", ms=4,
                        label=f"training preempted ({len(pre)})")
        if ended:
            mark_end(ax_all, ended[0], tdiv, ended[1])
        ax_all.set_ylim(0, top * 1.25)
        ax_all.set_xlim(0, end / tdiv)
        ax_all.set_title(f"CPU use over the run (share of each {_span(edges[1] - edges[0])} bin)")
        ax_all.set_xlabel(f"simulated time ({tunit})")
        ax_all.set_ylabel("CPU busy (% of bin)")
        ax_all.legend(loc="upper right", fontsize=7)

        trained = next((c for c in cpu if c.get("task") == "training"), None)
        focus = pre[0] if pre else trained or (cpu[0] if cpu else None)
        if focus is None:
            lo, hi = 0.0, 1.0
        else:
            # the whole burst: training slices that follow on within one slice length or 0.5 s
            start, stop = focus["start_s"], focus["end_s"]
            for c in sorted(cpu, key=lambda c: c["start_s"]):
                if c["start_s"] >= stop and c["start_s"] - stop <= max(0.5, stop - start):
                    stop = max(stop, c["end_s"]) if c.get("task") == "training" else stop
            w = max(stop - start, 1e-3)
            lo, hi = max(0.0, start - 0.15 * w), stop + 0.15 * w
        zdiv, zunit = time_axis(hi - lo)
        for task, y in rows.items():
            for preempted, color, hatch in ((False, colors[task], None), (True, "#c44e52", "//")):
                iv = [(c["start_s"], c["end_s"]) for c in cpu if c.get("task") == task
                      and bool(c.get("preempted")) == preempted and c["end_s"] >= lo and c["start_s"] <= hi]
                if not iv and preempted:
                    continue
                ax_zoom.broken_barh([((s - lo) / zdiv, max((e - s) / zdiv, (hi - lo) / zdiv / 2000)) for s, e in iv],
                                    (y - 0.35, 0.7), facecolors=color, hatch=hatch,
                                    label=f"{task}{' (preempted)' if preempted else ''}")
        ax_zoom.set_yticks(list(rows.values()), list(rows))
        ax_zoom.set_xlim(0, (hi - lo) / zdiv)
        ax_zoom.set_xlabel(f"time since t = {lo:.3f} s ({zunit})")
        ax_zoom.set_ylabel("task on CPU")
        ax_zoom.set_title("Zoom: first preemption" if pre else "Zoom: first training burst" if trained
                          else "Zoom: first inference (no training ran)" if cpu else "No CPU activity in this run")
        if not cpu:
            ax_zoom.text(0.5, 0.5, "the run ended before any work", ha="center", transform=ax_zoom.transAxes)
            ax_zoom.plot([], [], label="no slices")
        ax_zoom.legend(loc="upper right", fontsize=7)
        return png(fig)


def _span(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:g} h"
    if s >= 60:
        return f"{s / 60:g} min"
    if s >= 1:
        return f"{s:.3g} s"
    return f"{s * 1e3:.3g} ms"
