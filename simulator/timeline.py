"""Timelines of a run for the report: memory by tensor kind, CPU segments (docs/architecture.md §3).

The memory timeline is kept as (time, kind, delta) records and summed at the end; the CPU timeline is
the device's segment log, cut to a cap for the report with busy seconds per hour kept in full.
"""
from __future__ import annotations

import bisect
from operator import itemgetter
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


def cpu_timeline(log: list[tuple[float, float, str, bool]], by_hour: dict[int, dict[str, float]],
                 log_full: bool = False) -> dict[str, Any]:
    """CPU segments for the report: every training segment and its preemptors, then the rest up to a
    cap (of the segments the device logged; ``log_full``: it logged only the first ones); plus busy
    seconds per task for each hour of the run (``by_hour``, every segment)."""
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
    truncated = truncated or log_full
    segs = [{"start_s": rounded(s), "end_s": rounded(e), "task": task, "preempted": pre} for s, e, task, pre in keep]
    hours = [{"hour": h, **{k: rounded(v, 6) for k, v in sorted(d.items())}} for h, d in sorted(by_hour.items())]
    return {"segments": segs, "truncated": truncated, "by_hour": hours}


_time = itemgetter(0)
EXACT_HORIZON_S = 86400.0   # runs up to a day keep every record (exact series); longer ones stream
MEMORY_BUCKETS = MAX_MEMORY_POINTS // 3   # streaming: the min, max and last sample of each bucket


class StreamingMemTimeline(MemTimeline):
    """Bytes by tensor kind over a long run in bounded memory: records are folded, in time order, into
    running totals, and each of ``MEMORY_BUCKETS`` equal time buckets keeps its samples with the smallest
    and the largest total (the peak stays exact) and its last sample."""

    def __init__(self, horizon_s: float) -> None:
        super().__init__()
        self.bucket_s = max(horizon_s, 1e-9) / MEMORY_BUCKETS
        self.kinds: list[str] = []
        self._kidx: dict[str, int] = {}
        self.totals = np.zeros(0, dtype=np.int64)
        self.buckets: dict[int, list[tuple[float, np.ndarray]]] = {}   # bucket -> [min, max, last] samples

    def _grow(self, kinds) -> None:
        for k in kinds:
            if k not in self._kidx:
                self._kidx[k] = len(self.kinds)
                self.kinds.append(k)
        if len(self.totals) < len(self.kinds):
            self.totals = np.concatenate([self.totals, np.zeros(len(self.kinds) - len(self.totals), np.int64)])
            for b in self.buckets.values():
                for i, (t, v) in enumerate(b):
                    b[i] = (t, np.concatenate([v, np.zeros(len(self.kinds) - len(v), np.int64)]))

    def fold(self, safe_s: float) -> None:
        """Fold the records before ``safe_s`` (no record earlier than that can still arrive)."""
        recs = self.recs
        if not recs:
            return
        recs.sort(key=_time)                     # stable: records at one time keep their order
        n = bisect.bisect_left(recs, safe_s, key=_time)
        if n == 0:
            return
        head = recs[:n]
        del recs[:n]
        self._grow({r[1] for r in head})
        ts, ks, ds = zip(*head, strict=True)
        t = np.array(ts, dtype=float)
        kidx = self._kidx
        ki = np.array([kidx[k] for k in ks], dtype=np.int64)
        d = np.array(ds, dtype=np.int64)
        vals = np.zeros((n, len(self.kinds)), dtype=np.int64)
        vals[np.arange(n), ki] = d
        vals = np.cumsum(vals, axis=0) + self.totals
        self.totals = vals[-1].copy()
        last = np.r_[t[1:] != t[:-1], True]     # one sample per distinct time: the last record at it
        self.add_samples(t[last], vals[last])

    def add_samples(self, times: np.ndarray, vals: np.ndarray) -> None:
        """Fold samples of the totals (time order) into the buckets."""
        if not len(times):
            return
        total = vals.sum(axis=1)
        b = np.floor(times / self.bucket_s).astype(np.int64)
        starts = np.r_[0, np.nonzero(b[1:] != b[:-1])[0] + 1]
        ends = np.r_[starts[1:], len(b)]
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            lo = s + int(np.argmin(total[s:e]))
            hi = s + int(np.argmax(total[s:e]))
            cand = [(float(times[lo]), vals[lo]), (float(times[hi]), vals[hi]), (float(times[e - 1]), vals[e - 1])]
            cur = self.buckets.get(int(b[s]))
            if cur is None:
                self.buckets[int(b[s])] = cand
                continue
            if cand[0][1].sum() < cur[0][1].sum():
                cur[0] = cand[0]
            if cand[1][1].sum() > cur[1][1].sum():
                cur[1] = cand[1]
            cur[2] = cand[2]

    def series(self, until_s: float, max_points: int = MAX_MEMORY_POINTS) -> dict[str, Any]:
        self.fold(float("inf"))
        pts = sorted({t: v for b in self.buckets.values() for t, v in b if t <= until_s}.items())
        kinds = sorted(self.kinds)
        return {"time_s": [round(t, 6) for t, _ in pts],
                "by_kind": {k: [int(v[self._kidx[k]]) if self._kidx[k] < len(v) else 0 for _, v in pts]
                            for k in kinds}}

    def peak_sample(self) -> tuple[float, np.ndarray] | None:
        self.fold(float("inf"))
        best = None
        for b in self.buckets.values():
            t, v = b[1]
            if best is None or v.sum() > best[1].sum():
                best = (t, v)
        return best


def memory_timeline(horizon_s: float) -> MemTimeline:
    """The exact timeline for runs up to ``EXACT_HORIZON_S``, the streaming one beyond."""
    return MemTimeline() if horizon_s <= EXACT_HORIZON_S else StreamingMemTimeline(horizon_s)


BATTERY_EXACT_POINTS = 20000    # battery samples kept one by one up to this many over the horizon
BATTERY_BUCKETS = 2000          # beyond: each bucket keeps its lowest and its last sample


class SampleLog:
    """(time, value) samples in time order, bounded: every sample while the horizon holds at most
    ``BATTERY_EXACT_POINTS`` of them, else the lowest and the last sample of each time bucket."""

    def __init__(self, horizon_s: float, sample_s: float) -> None:
        self.exact = horizon_s / sample_s <= BATTERY_EXACT_POINTS
        self.bucket_s = max(horizon_s, 1e-9) / BATTERY_BUCKETS
        self._items: list[tuple[float, float]] = []
        self._buckets: dict[int, list[tuple[float, float]]] = {}   # bucket -> [lowest, last]
        self._last: tuple[float, float] | None = None

    def append(self, sample: tuple[float, float]) -> None:
        self._last = sample
        if self.exact:
            self._items.append(sample)
            return
        b = int(sample[0] // self.bucket_s)
        cur = self._buckets.get(b)
        if cur is None:
            self._buckets[b] = [sample, sample]
        else:
            if sample[1] < cur[0][1]:
                cur[0] = sample
            cur[1] = sample

    def __len__(self) -> int:
        return len(self._items) if self.exact else sum(1 for _ in self)

    def __bool__(self) -> bool:
        return self._last is not None

    def __getitem__(self, i: int) -> tuple[float, float]:
        if self.exact:
            return self._items[i]
        if i == -1 and self._last is not None:
            return self._last
        return list(self)[i]

    def __iter__(self):
        if self.exact:
            return iter(self._items)
        pts = sorted({s for b in self._buckets.values() for s in b})
        return iter(pts)
