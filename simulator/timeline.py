"""Timelines of a run for the report: memory by tensor kind, CPU segments (docs/architecture.md).

The memory timeline is kept as (time, kind, delta) records and summed at the end; the CPU timeline is
the device's segment log, cut to a cap for the report with busy seconds per hour kept in full.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .rounding import rounded

MAX_MEMORY_POINTS = 4000
MAX_CPU_SEGMENTS = 20000


class MemTimeline:
    """Bytes by tensor kind over time, kept as (time, kind, delta) records; summed at the end."""

    def __init__(self) -> None:
        self.recs: list[tuple[float, str, int]] = []

    def add(self, t: float, kind: str, delta: int) -> None:
        self.recs.append((t, kind, delta))

    def extend(self, times, kinds, deltas) -> None:
        self.recs.extend(zip(times, kinds, deltas, strict=True))

    @property
    def t(self) -> list[float]:
        return [r[0] for r in self.recs]

    @property
    def k(self) -> list[str]:
        return [r[1] for r in self.recs]

    @property
    def d(self) -> list[int]:
        return [r[2] for r in self.recs]

    def series(self, until_s: float, max_points: int = MAX_MEMORY_POINTS) -> dict[str, Any]:
        """{time_s, by_kind}: the running totals, down-sampled to at most ``max_points`` by keeping the
        sample with the largest total in each bucket (so peaks survive)."""
        if not self.recs:
            return {"time_s": [], "by_kind": {}}
        t = np.asarray(self.t, dtype=float)
        order = np.argsort(t, kind="stable")
        t = t[order]
        ks = self.k
        kinds = sorted(set(ks))
        kidx = {k: i for i, k in enumerate(kinds)}
        ki = np.fromiter((kidx[k] for k in ks), dtype=np.int64, count=len(ks))[order]
        d = np.asarray(self.d, dtype=np.int64)[order]
        vals = np.zeros((len(t), len(kinds)), dtype=np.int64)
        vals[np.arange(len(t)), ki] = d
        vals = np.cumsum(vals, axis=0)
        # one sample per distinct time (the last record at that time)
        last = np.r_[t[1:] != t[:-1], True]
        t, vals = t[last], vals[last]
        keep = t <= until_s
        t, vals = t[keep], vals[keep]
        if len(t) > max_points:
            total = vals.sum(axis=1)
            edges = np.linspace(0, len(t), max_points + 1).astype(int)
            idx = [a + int(np.argmax(total[a:b])) for a, b in zip(edges[:-1], edges[1:], strict=False) if b > a]
            t, vals = t[idx], vals[idx]
        return {"time_s": [round(float(x), 6) for x in t],
                "by_kind": {k: [int(v) for v in vals[:, i]] for i, k in enumerate(kinds)}}


def cpu_timeline(log: list[tuple[float, float, str, bool]], end: float) -> dict[str, Any]:
    """CPU segments for the report: every training segment and its preemptors, then the rest up to a
    cap; plus busy seconds per task for each hour of the run."""
    by_hour: dict[int, dict[str, float]] = {}
    for s, e, task, _ in log:
        h = int(s // 3600)
        d = by_hour.setdefault(h, {})
        d[task] = d.get(task, 0.0) + (e - s)
    keep = []
    prev_preempted = False
    for s, e, task, pre in log:
        if task != "inference" or prev_preempted:
            keep.append((s, e, task, pre))
        prev_preempted = pre
    rest = [x for x in log if x[2] == "inference"]
    truncated = False
    if len(keep) < MAX_CPU_SEGMENTS:
        extra = rest[:MAX_CPU_SEGMENTS - len(keep)]
        truncated = len(extra) < len(rest)
        keep = sorted(set(keep) | set(extra))
    else:
        keep, truncated = keep[:MAX_CPU_SEGMENTS], True
    segs = [{"start_s": rounded(s), "end_s": rounded(e), "task": task, "preempted": pre} for s, e, task, pre in keep]
    hours = [{"hour": h, **{k: rounded(v, 6) for k, v in sorted(d.items())}} for h, d in sorted(by_hour.items())]
    return {"segments": segs, "truncated": truncated, "by_hour": hours}
