"""The memory planner over a trace's tensor lifetimes (DESIGN.md §3).

Given the ops of a training step (each allocs tensors and frees ids after it), the planner reports:

- ``naive_bytes``: every tensor live at once (the sum of all sizes);
- ``lower_bound_bytes``: the most bytes live during any op, the physical limit without recompute;
- ``planned_bytes``: the size of an arena whose offsets it assigns, reusing freed space.

A tensor allocated by op ``i`` and freed after op ``j`` is live during ops ``i..j``. An op of an
elementwise-like kind (``INPLACE_OP_KINDS``) that frees an input (allocated by an earlier op) and
allocates an output of no more bytes may write the output over the input: the pair may share bytes
during that op, and the lower bound counts such an output only once it outlives its input.

Offsets come from greedy-by-size placement with best fit into the gaps between tensors that are live
at the same time (TFLite's ``GreedyMemoryPlanner``; NNTrainer's optimised planner does the same),
trying a few orderings and keeping the smallest arena. The trace is cut where nothing but persistent
tensors is live, and each piece is planned alone, so concatenated steps cost linear time.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workloads.trace import Op, Tensor

INPLACE_OP_KINDS = ("eltwise", "copy", "reduce")   # ops that can stream an output over a same-size input
ORDERINGS = ("size", "size-duration", "first-op")


@dataclass
class MemoryPlan:
    """What the planner found for one trace. Byte figures include the persistent tensors."""

    naive_bytes: int
    lower_bound_bytes: int
    planned_bytes: int
    persistent_bytes: int
    offsets: dict[int, int]                     # tensor id -> byte offset in the arena
    sizes: dict[int, int]                       # tensor id -> bytes (after alignment)
    lifetimes: dict[int, tuple[int, int]]       # tensor id -> (first op, last op), inclusive
    kinds: dict[int, str]                       # tensor id -> kind
    op_names: list[str]
    live_bytes: list[int]                       # per op, in-place aware; max == lower_bound_bytes
    live_by_kind: dict[str, list[int]]          # per op, sums to live_bytes
    peak_op: int                                # index of the first op where live bytes peak (-1: no ops)
    inplace: dict[int, int] = field(default_factory=dict)   # output id -> input id it overwrites
    ordering: str = "size"                      # which greedy ordering gave the arena

    @property
    def peak_op_name(self) -> str:
        return self.op_names[self.peak_op] if self.peak_op >= 0 else ""

    @property
    def planned_over_lower_bound(self) -> float:
        return self.planned_bytes / self.lower_bound_bytes if self.lower_bound_bytes else 1.0

    @property
    def naive_over_planned(self) -> float:
        return self.naive_bytes / self.planned_bytes if self.planned_bytes else 1.0

    def summary(self) -> dict[str, Any]:
        """The headline figures as a JSON-able dict."""
        return {"naive_bytes": self.naive_bytes, "lower_bound_bytes": self.lower_bound_bytes,
                "planned_bytes": self.planned_bytes, "persistent_bytes": self.persistent_bytes,
                "peak_op": self.peak_op_name, "inplace_pairs": len(self.inplace), "ordering": self.ordering}


def _aligned(nbytes: int, align: int) -> int:
    return -(-nbytes // align) * align


def plan(ops: Iterable[Op], persistent: Iterable[Tensor] = (), *, inplace: bool = True,
         align_bytes: int = 1) -> MemoryPlan:
    """Plan an arena for ``ops``; ``persistent`` tensors (weights, optimiser state) live throughout.

    Sizes are rounded up to ``align_bytes``. Raises ValueError for a malformed trace (a tensor id
    allocated twice, or freed before it was allocated), naming the op.
    """
    if isinstance(align_bytes, bool) or not isinstance(align_bytes, int) or align_bytes < 1:
        raise ValueError(f"plan: align_bytes must be an integer >= 1 (got {align_bytes!r})")
    ops = list(ops)
    n = len(ops)
    last_op = max(n - 1, 0)
    sizes: dict[int, int] = {}
    kinds: dict[int, str] = {}
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    pers_ids: list[int] = []
    for t in persistent:
        if t.id in sizes:
            raise ValueError(f"plan: persistent tensor {t.id} ({t.name or t.kind}) is listed twice")
        if t.nbytes < 0:
            raise ValueError(f"plan: persistent tensor {t.id} has nbytes {t.nbytes} < 0")
        sizes[t.id], kinds[t.id] = _aligned(t.nbytes, align_bytes), t.kind
        first[t.id], last[t.id] = 0, last_op
        pers_ids.append(t.id)
    pers_set = set(pers_ids)
    pairs: dict[int, int] = {}   # output id -> input id (in-place)
    for i, op in enumerate(ops):
        for t in op.alloc:
            if t.id in sizes:
                raise ValueError(f"plan: op {i} {op.name!r} allocates tensor {t.id}, which is already allocated")
            if t.nbytes < 0:
                raise ValueError(f"plan: op {i} {op.name!r} allocates tensor {t.id} with nbytes {t.nbytes} < 0")
            sizes[t.id], kinds[t.id], first[t.id] = _aligned(t.nbytes, align_bytes), t.kind, i
        freed = []
        for tid in op.free:
            if tid not in sizes:
                raise ValueError(f"plan: op {i} {op.name!r} frees tensor {tid}, which was never allocated")
            if tid in pers_set:
                continue   # persistent tensors stay live for the whole trace
            if tid in last:
                raise ValueError(f"plan: op {i} {op.name!r} frees tensor {tid} a second time")
            last[tid] = i
            freed.append(tid)
        if inplace and op.kind in INPLACE_OP_KINDS and op.alloc and freed:
            # inputs read by this op and released by it (allocated earlier): best-fit match outputs
            cands = sorted((sizes[t], t) for t in freed if first[t] < i and sizes[t] > 0)
            for t in sorted(op.alloc, key=lambda t: (-sizes[t.id], t.id)):
                if sizes[t.id] == 0:
                    continue
                for k, (s, tin) in enumerate(cands):
                    if s >= sizes[t.id]:
                        pairs[t.id] = tin
                        del cands[k]
                        break
    for tid in sizes:
        last.setdefault(tid, last_op)   # never freed: live until the end of the trace

    # --- liveness: per-op live bytes by kind; an in-place output counts from the op after ---------
    diff: dict[str, np.ndarray] = {}
    for tid, size in sizes.items():
        if size == 0:
            continue
        d = diff.get(kinds[tid])
        if d is None:
            d = diff[kinds[tid]] = np.zeros(n + 2, dtype=np.int64)
        start = first[tid] + (1 if tid in pairs else 0)
        d[start] += size
        d[last[tid] + 1] -= size
    live_by_kind = {k: np.cumsum(d)[:n] for k, d in sorted(diff.items())}
    live = sum(live_by_kind.values()) if live_by_kind else np.zeros(n, dtype=np.int64)
    live = np.asarray(live, dtype=np.int64)
    persistent_bytes = sum(sizes[t] for t in pers_ids)
    lower = int(live.max()) if n else persistent_bytes
    peak_op = int(live.argmax()) if n else -1

    # --- placement --------------------------------------------------------------------------------
    offsets: dict[int, int] = {}
    pos = 0
    for tid in pers_ids:   # live throughout: stacked at the bottom, which no placement can beat
        offsets[tid] = pos
        pos += sizes[tid]
    transient = [tid for tid in sizes if tid not in pers_set]
    best: tuple[int, dict[int, int], str] | None = None
    for ordering in ORDERINGS:
        arena, offs = _place_all(transient, sizes, first, last, pairs, n, ordering)
        if best is None or arena < best[0]:
            best = (arena, offs, ordering)
        if arena + persistent_bytes <= lower:
            break   # optimal: cannot do better
    assert best is not None
    arena, offs, ordering = best
    for tid, o in offs.items():
        offsets[tid] = persistent_bytes + o
    used_pairs = {o: i for o, i in pairs.items() if offsets[o] == offsets[i]}
    return MemoryPlan(
        naive_bytes=sum(sizes.values()), lower_bound_bytes=lower, planned_bytes=persistent_bytes + arena,
        persistent_bytes=persistent_bytes, offsets=offsets, sizes=sizes,
        lifetimes={t: (first[t], last[t]) for t in sizes}, kinds=kinds, op_names=[op.name for op in ops],
        live_bytes=live.tolist(), live_by_kind={k: v.tolist() for k, v in live_by_kind.items()},
        peak_op=peak_op, inplace=used_pairs, ordering=ordering)


def _segments(tids: list[int], first: dict[int, int], last: dict[int, int], n: int) -> list[list[int]]:
    """Split tensors into groups whose lifetimes never overlap another group's (cuts where none is live)."""
    if not tids:
        return []
    cover = np.zeros(n + 1, dtype=np.int64)   # cover[i] > 0: some tensor is live across the i -> i+1 boundary
    for t in tids:
        if last[t] > first[t]:
            cover[first[t]] += 1
            cover[last[t]] -= 1
    crossing = np.cumsum(cover)[:n] > 0
    seg_of_op = np.concatenate(([0], np.cumsum(~crossing[:-1]))) if n else np.zeros(0, dtype=np.int64)
    groups: dict[int, list[int]] = {}
    for t in tids:
        groups.setdefault(int(seg_of_op[first[t]]), []).append(t)
    return [groups[k] for k in sorted(groups)]


def _place_all(tids: list[int], sizes: dict[int, int], first: dict[int, int], last: dict[int, int],
               pairs: dict[int, int], n: int, ordering: str) -> tuple[int, dict[int, int]]:
    """Place every transient tensor; returns (arena bytes, offsets from 0)."""
    offsets: dict[int, int] = {}
    arena = 0
    partners: dict[int, list[int]] = {}
    for o, i in pairs.items():
        partners.setdefault(o, []).append(i)
        partners.setdefault(i, []).append(o)
    for group in _segments(tids, first, last, n):
        arena = max(arena, _place_group(group, sizes, first, last, partners, ordering, offsets))
    return arena, offsets


def _order_key(ordering: str, sizes: dict[int, int], first: dict[int, int], last: dict[int, int]):
    if ordering == "size":
        return lambda t: (-sizes[t], first[t], t)
    if ordering == "size-duration":
        return lambda t: (-sizes[t] * (last[t] - first[t] + 1), -sizes[t], first[t], t)
    if ordering == "first-op":
        return lambda t: (first[t], -sizes[t], t)
    raise ValueError(f"plan: unknown ordering {ordering!r} (known: {', '.join(ORDERINGS)})")


def _place_group(group: list[int], sizes: dict[int, int], first: dict[int, int], last: dict[int, int],
                 partners: dict[int, list[int]], ordering: str, offsets: dict[int, int]) -> int:
    """Greedy placement of one segment: best-fit gap among placed time-overlapping tensors."""
    order = sorted(group, key=_order_key(ordering, sizes, first, last))
    m = len(order)
    p_first = np.empty(m, dtype=np.int64)
    p_last = np.empty(m, dtype=np.int64)
    p_off = np.empty(m, dtype=np.int64)
    p_end = np.empty(m, dtype=np.int64)
    p_id: list[int] = []
    k = 0
    top = 0
    for t in order:
        size = sizes[t]
        if size == 0:
            offsets[t] = 0
            continue
        f, la = first[t], last[t]
        if k:
            mask = (p_first[:k] <= la) & (p_last[:k] >= f)
            idx = np.flatnonzero(mask)
        else:
            idx = np.zeros(0, dtype=np.int64)
        chosen = -1
        # in-place: sit exactly on a placed partner if nothing else is in the way
        for q in partners.get(t, ()):
            if q in offsets and sizes[q] > 0:
                o = offsets[q]
                lo, hi = (o, o + size)
                clash = False
                for j in idx:
                    jo, je = p_off[j], p_end[j]
                    if jo < hi and je > lo:
                        pid = p_id[j]
                        if not (jo == o and pid in partners.get(t, ())):
                            clash = True
                            break
                if not clash:
                    chosen = o
                    break
        if chosen < 0:
            if len(idx):
                order_idx = idx[np.argsort(p_off[idx], kind="stable")]
                offs_sorted = p_off[order_idx].tolist()
                ends_sorted = p_end[order_idx].tolist()
            else:
                offs_sorted, ends_sorted = [], []
            cur = 0
            best_gap = -1
            for jo, je in zip(offs_sorted, ends_sorted, strict=True):
                gap = jo - cur
                if gap >= size and (best_gap < 0 or gap < best_gap):
                    best_gap, chosen = gap, cur
                if je > cur:
                    cur = je
            if chosen < 0:
                chosen = cur
        offsets[t] = chosen
        p_first[k], p_last[k], p_off[k], p_end[k] = f, la, chosen, chosen + size
        p_id.append(t)
        k += 1
        if chosen + size > top:
            top = chosen + size
    return top
