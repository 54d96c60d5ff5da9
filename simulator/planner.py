"""The memory planner over a trace's tensor lifetimes (docs/architecture.md §3).

Given the ops of a training step (each allocs tensors and frees ids after it), the planner reports:

- ``naive_bytes``: every tensor live at once (the sum of all sizes);
- ``lower_bound_bytes``: the most bytes live during any op, the physical limit without recompute;
- ``planned_bytes``: the size of an arena whose offsets it assigns, reusing freed space.

A tensor allocated by op ``i`` and freed after op ``j`` is live during ops ``i..j``. An op of an
elementwise-like kind (``INPLACE_OP_KINDS``) that frees an input (allocated by an earlier op) and
allocates an output of no more bytes may write the output over the input: the pair may share bytes
during that op, and the lower bound counts such an output only once it outlives its input.

Offsets come from greedy placement with best fit into the gaps between tensors live at the same time,
tried in several orders: by size (TFLite's ``GreedyMemoryPlanner``), by breadth (TFLite's other
strategy), by size x duration, by duration, by first op (NNTrainer's ``OptimizedV1Planner`` order),
then seeded noisy size orders; a piece stops at the first order that reaches its lower bound. The
trace is cut where nothing but persistent tensors is live and each piece is planned alone (identical
pieces, such as repeated steps, once), so concatenated steps cost linear time. Persistent tensors, and
trace tensors live from the first op to the last, overlap everything: they are stacked at the bottom.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from workloads.trace import Op, Tensor

INPLACE_OP_KINDS = ("eltwise", "copy", "reduce")   # ops that can stream an output over a same-size input
RESTART_BUDGET = 20_000   # tensor placements per trace piece spent on noisy restarts
ORDERINGS = ("size", "breadth", "size-duration", "duration", "first-op")   # then seeded restarts


@dataclass
class ArenaPlan:
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


def _aligned(nbytes: int, align: int) -> int:
    return -(-int(nbytes) // align) * align


def plan_arena(ops: Iterable[Op], persistent: Iterable[Tensor] = (), *, inplace: bool = True,
               align_bytes: int = 1, restarts: int = 64, reuse: bool = True) -> ArenaPlan:
    """Plan an arena for ``ops``; ``persistent`` tensors (weights, optimiser state) live throughout.

    Sizes are rounded up to ``align_bytes``. ``restarts``: extra noisy size orderings tried on a piece
    of the trace that the named orderings leave above its lower bound. ``reuse``: plan identical pieces
    (repeated steps) once. A persistent id freed by the trace stays live to the end. Raises ValueError
    for a malformed trace (an id allocated twice, freed twice or never allocated), naming the op.
    """
    if isinstance(align_bytes, bool) or not isinstance(align_bytes, int) or align_bytes < 1:
        raise ValueError(f"plan_arena: align_bytes must be an integer >= 1 (got {align_bytes!r})")
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
            raise ValueError(f"plan_arena: persistent tensor {t.id} ({t.name or t.kind}) is listed twice")
        if t.nbytes < 0:
            raise ValueError(f"plan_arena: persistent tensor {t.id} has nbytes {t.nbytes} < 0")
        sizes[t.id], kinds[t.id] = _aligned(t.nbytes, align_bytes), t.kind
        first[t.id], last[t.id] = 0, last_op
        pers_ids.append(t.id)
    pers_set = set(pers_ids)
    pairs: dict[int, int] = {}   # output id -> input id (in-place)
    for i, op in enumerate(ops):
        for t in op.alloc:
            if t.id in sizes:
                raise ValueError(f"plan_arena: op {i} {op.name!r} allocates tensor {t.id}, which is already allocated")
            if t.nbytes < 0:
                raise ValueError(f"plan_arena: op {i} {op.name!r} allocates tensor {t.id} with nbytes {t.nbytes} < 0")
            sizes[t.id], kinds[t.id], first[t.id] = _aligned(t.nbytes, align_bytes), t.kind, i
        freed = []
        for tid in op.free:
            if tid not in sizes:
                raise ValueError(f"plan_arena: op {i} {op.name!r} frees tensor {tid}, which was never allocated")
            if tid in pers_set:
                continue   # persistent tensors stay live for the whole trace
            if tid in last:
                raise ValueError(f"plan_arena: op {i} {op.name!r} frees tensor {tid} a second time")
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
    # transient tensors live for the whole trace overlap everything too: stack them next
    in_pairs = set(pairs) | set(pairs.values())
    for tid in sizes:
        if tid not in pers_set and first[tid] == 0 and last[tid] == last_op and tid not in in_pairs:
            offsets[tid] = pos
            pos += sizes[tid]
    base = pos
    transient = [tid for tid in sizes if tid not in offsets]
    transient_live = live - base if n else live
    arena, ordering = 0, ORDERINGS[0]
    cache: dict[tuple, tuple[int, list[int], str]] | None = {} if reuse else None
    for group in _segments(transient, first, last, n):
        seg_arena, seg_offsets, seg_ordering = _plan_segment(group, sizes, first, last, pairs, transient_live,
                                                             restarts, cache)
        for tid, o in zip(group, seg_offsets, strict=True):
            offsets[tid] = base + o
        if seg_arena > arena:
            arena, ordering = seg_arena, seg_ordering
    used_pairs = {o: i for o, i in pairs.items() if offsets[o] == offsets[i]}
    return ArenaPlan(
        naive_bytes=sum(sizes.values()), lower_bound_bytes=lower, planned_bytes=base + arena,
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


def _plan_segment(group: list[int], sizes: dict[int, int], first: dict[int, int], last: dict[int, int],
                  pairs: dict[int, int], transient_live: np.ndarray, restarts: int,
                  cache: dict[tuple, tuple[int, list[int], str]] | None) -> tuple[int, list[int], str]:
    """Best arena over several greedy orderings for one segment; returns (arena, offsets in group order,
    ordering). Identical segments (same sizes, relative lifetimes, in-place pairs) are planned once."""
    f0 = min(first[t] for t in group)
    local = {t: k for k, t in enumerate(group)}
    size = [sizes[t] for t in group]
    fst = [first[t] - f0 for t in group]
    lst = [last[t] - f0 for t in group]
    partners: list[tuple[int, ...]] = [()] * len(group)
    for t in group:
        q = pairs.get(t)
        if q is not None and q in local:
            a, b = local[t], local[q]
            partners[a] += (b,)
            partners[b] += (a,)
    key = (tuple(size), tuple(fst), tuple(lst), tuple(partners))
    hit = cache.get(key) if cache is not None else None
    if hit is not None:
        return hit
    span = max(lst) + 1
    seg_lb = int(transient_live[f0:f0 + span].max()) if len(transient_live) else 0
    best: tuple[int, list[int], str] | None = None
    restarts = min(restarts, RESTART_BUDGET // len(group))   # big pieces: fewer restarts, bounded time
    adj = _overlaps(fst, lst)
    for name, order in _orderings(size, fst, lst, span, restarts):
        arena, offs = _place(order, size, adj, partners)
        if best is None or arena < best[0]:
            best = (arena, offs, name)
        if arena <= seg_lb:
            break   # at the lower bound: nothing can do better
    assert best is not None
    if cache is not None:
        cache[key] = best
    return best


def _orderings(size: list[int], fst: list[int], lst: list[int], span: int, restarts: int):
    """Placement orders to try, best-known first: (name, list of local indices)."""
    idx = range(len(size))
    dur = [la - f + 1 for f, la in zip(fst, lst, strict=True)]
    yield "size", sorted(idx, key=lambda k: (-size[k], fst[k], k))
    yield "breadth", _breadth_order(size, fst, lst, span)
    yield "size-duration", sorted(idx, key=lambda k: (-size[k] * dur[k], -size[k], fst[k], k))
    yield "duration", sorted(idx, key=lambda k: (-dur[k], -size[k], fst[k], k))
    yield "first-op", sorted(idx, key=lambda k: (fst[k], -size[k], k))
    for r in range(restarts):   # size order with seeded noise: escapes the ties and near-ties greedy gets wrong
        noise = np.random.default_rng(r).lognormal(0.0, (0.5, 1.0, 2.0)[r % 3], len(size))
        yield f"size~{r}", sorted(idx, key=lambda k: (-size[k] * noise[k], k))


def _breadth_order(size: list[int], fst: list[int], lst: list[int], span: int) -> list[int]:
    """TFLite's greedy by breadth: ops by live bytes, widest first; each op's tensors by size."""
    at: list[list[int]] = [[] for _ in range(span)]
    width = [0] * span
    for k in range(len(size)):
        for i in range(fst[k], lst[k] + 1):
            at[i].append(k)
            width[i] += size[k]
    seen: set[int] = set()
    order: list[int] = []
    for i in sorted(range(span), key=lambda i: (-width[i], i)):
        for k in sorted(at[i], key=lambda k: (-size[k], k)):
            if k not in seen:
                seen.add(k)
                order.append(k)
    return order


def _overlaps(fst: list[int], lst: list[int]) -> list[list[int]]:
    """For each tensor, the others live during at least one of its ops (a sweep by first op)."""
    m = len(fst)
    adj: list[list[int]] = [[] for _ in range(m)]
    by_first = sorted(range(m), key=lambda k: fst[k])
    for a, i in enumerate(by_first):
        li = lst[i]
        for j in by_first[a + 1:]:
            if fst[j] > li:
                break
            adj[i].append(j)
            adj[j].append(i)
    return adj


def _place(order: list[int], size: list[int], adj: list[list[int]],
           partners: list[tuple[int, ...]]) -> tuple[int, list[int]]:
    """Greedy placement in ``order``: sit on an in-place partner if free, else the best-fitting gap among
    placed tensors live at the same time, else on top. Returns (arena bytes, offsets by local index)."""
    offs = [-1] * len(order)
    top = 0
    for t in order:
        sz = size[t]
        if sz == 0:
            offs[t] = 0
            continue
        placed = [(offs[q], offs[q] + size[q], q) for q in adj[t] if offs[q] >= 0 and size[q]]
        chosen = -1
        for q in partners[t]:   # in-place: exactly on a placed partner, if nothing else is in the way
            o = offs[q]
            if o < 0 or size[q] == 0:
                continue
            hi = o + sz
            if all(not (jo < hi and je > o) or (jo == o and j in partners[t]) for jo, je, j in placed):
                chosen = o
                break
        if chosen < 0:
            placed.sort()
            cur, best_gap = 0, -1
            for jo, je, _ in placed:
                gap = jo - cur
                if gap >= sz and (best_gap < 0 or gap < best_gap):
                    best_gap, chosen = gap, cur
                if je > cur:
                    cur = je
            if chosen < 0:
                chosen = cur
        offs[t] = chosen
        if chosen + sz > top:
            top = chosen + sz
    return top, offs
