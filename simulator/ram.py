"""The device RAM under a memory policy, and the step memo that makes repeated heap steps cheap
(docs/architecture.md §3).

``heap``: every tensor is placed in a ``memory.Heap`` at op time (fragmentation can fail it).
``planned``: persistent tensors and two static arenas (training step, inference) are placed once;
each step's trace must fit its arena (checked with the arena planner), and the timeline shows live
bytes by kind inside the arenas.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from workloads.trace import Op, Tensor

from .memory import Heap, OutOfMemory
from .planner import ArenaPlan, plan_arena
from .run_end import RunEnded
from .timeline import memory_timeline

RESERVED_KIND = "runtime"      # the runtime's reserved RAM, a band at the bottom of the memory plot
ARENA_FREE_KIND = "arena_unused"
MAX_MEMO_ENTRIES = 256


def trace_signature(ops: list[Op]) -> tuple:
    """What the memory of a trace depends on: op names and kinds, alloc sizes, free counts."""
    return (tuple([op.name for op in ops]), tuple([op.kind for op in ops]),
            tuple([t.nbytes for op in ops for t in op.alloc]), tuple([len(op.alloc) for op in ops]),
            tuple([len(op.free) for op in ops]))


def oom_message(e: OutOfMemory, op_name: str, tensor: Tensor) -> str:
    """The heap's error without process-dependent tensor ids (results must not depend on them)."""
    what = "heap fragmented" if e.kind == "fragmentation" else "out of memory"
    label = f"{tensor.kind} {tensor.name!r}" if tensor.name else tensor.kind
    return (f"{what} at op {op_name!r}: need {e.need:,} B for {label}, free {e.total_free:,} B in total, "
            f"largest free block {e.largest_free:,} B (heap {e.capacity:,} B)")


class Ram:
    """RAM of ``ram_bytes`` with ``runtime``'s reserve, under ``policy`` (planned | heap)."""

    def __init__(self, runtime: Any, ram_bytes: int, policy: str, heap_policy: str,
                 persistent: tuple[Tensor, ...], memo: bool = True, horizon_s: float = 86400.0) -> None:
        self.policy = policy
        self.reserved = runtime.ram_reserved_bytes
        self.budget = ram_bytes
        self.heap = Heap.for_runtime(self.budget - self.reserved, runtime, policy=heap_policy)
        self.persistent = persistent
        self.timeline = memory_timeline(horizon_s)
        self._recs = self.timeline.recs
        self.timeline.add(0.0, RESERVED_KIND, self.reserved)
        self._live: dict[int, tuple[str, int]] = {}
        self._plans: dict[tuple, ArenaPlan] = {}
        self._draw_cache: dict[int, tuple[list[int], list[str], list[int]]] = {}
        self._last_key: tuple[list[Op], ArenaPlan] | None = None
        self.memo = StepMemo(self) if memo else None
        self.arena = {"train": 0, "infer": 0}
        self.first_plan: ArenaPlan | None = None

    @property
    def peak_bytes(self) -> int:
        return self.reserved + self.heap.peak_bytes

    def arena_plan(self, ops: list[Op]) -> ArenaPlan:
        """The arena plan of a trace, cached by the trace's signature."""
        last = self._last_key
        if last is not None and last[0] is ops:
            return last[1]
        key = trace_signature(ops)
        p = self._plans.get(key)
        if p is None:
            p = self._plans[key] = plan_arena(ops, ())
        self._last_key = (ops, p)
        return p

    def setup(self, train_ops: list[Op], infer_ops: list[Op]) -> None:
        """Place persistent tensors (and, for ``planned``, the arenas) at t=0."""
        self.first_plan = plan_arena(train_ops, self.persistent)
        for t in self.persistent:
            self.alloc(0.0, t, f"persistent:{t.name or t.kind}")
        if self.policy != "planned":
            return
        for name, ops in (("train", train_ops), ("infer", infer_ops)):
            p = self.arena_plan(ops)
            size = p.planned_bytes
            self.arena[name] = size
            try:
                self.heap.alloc(-1 if name == "train" else -2, size, ARENA_FREE_KIND, f"arena:{name}")
            except OutOfMemory as e:
                i = self._first_over(p, self.heap.free_bytes)
                op = p.op_names[i] if i >= 0 else ""
                raise RunEnded(e.kind, 0.0, op, f"the planned {name} arena ({size:,} B) does not fit: "
                               f"{oom_message(e, 'arena:' + name, Tensor(0, size, 'arena'))} "
                               f"(live bytes first exceed the free heap at op {op!r})",
                               self.reserved + self.heap.used_bytes + e.need) from None
            self.timeline.add(0.0, ARENA_FREE_KIND, self.heap.size_for(size))

    @staticmethod
    def _first_over(p: ArenaPlan, limit: int) -> int:
        """Index of the first op whose live bytes exceed ``limit`` (the plan's peak op if none does)."""
        return next((i for i, b in enumerate(p.live_bytes) if b > limit), p.peak_op)

    # heap policy: per-op placement
    def alloc(self, t: float, tensor: Tensor, op_name: str) -> None:
        try:
            self.heap.alloc(tensor.id, tensor.nbytes, tensor.kind, op_name)
        except OutOfMemory as e:
            if self.memo is not None and self.memo.recording:
                self.memo.end_peak()
            raise RunEnded(e.kind, t, op_name, oom_message(e, op_name, tensor),
                           self.reserved + self.heap.used_bytes + e.need) from None
        size = self.heap.size_for(tensor.nbytes)
        self._live[tensor.id] = (tensor.kind, size)
        self._recs.append((t, tensor.kind, size))

    def free(self, t: float, tid: int) -> None:
        kind, size = self._live.pop(tid)
        self.heap.free(tid)
        self._recs.append((t, kind, -size))

    def place_step(self, ops: list[Op], t0: float, cum_t: list[float]) -> None:
        """Heap policy, one inference: allocs at op start, frees at op end (``t0`` + cumulative time)."""
        starts, end = cum_t[:-1], cum_t[-1]
        for op, st, en in zip(ops, starts, starts[1:] + [end], strict=False):
            for tensor in op.alloc:
                self.alloc(t0 + st, tensor, op.name)
            for tid in op.free:
                self.free(t0 + en, tid)

    # planned policy: check a trace against its arena and draw its live bytes
    def check_arena(self, name: str, ops: list[Op], t0: float, starts: list[float]) -> None:
        p = self.arena_plan(ops)
        if p.planned_bytes > self.arena[name]:
            i = self._first_over(p, self.arena[name])
            op = p.op_names[i] if i >= 0 else name
            raise RunEnded("out_of_memory", t0 + starts[max(i, 0)], op,
                           f"the {name} step needs a {p.planned_bytes:,} B arena but {self.arena[name]:,} B was "
                           f"planned (from the first step); live bytes reach {p.live_bytes[max(i, 0)]:,} B at op "
                           f"{op!r}", self.reserved + self.heap.used_bytes - self.arena[name] + p.planned_bytes)

    def draw_planned(self, name: str, ops: list[Op], abs_starts: list[float], end: float) -> None:
        """Add a planned-arena step's live bytes by kind (op granularity) to the timeline."""
        if not ops:
            return
        p = self.arena_plan(ops)
        steps = self._draw_cache.get(id(p))
        if steps is None:
            steps = self._draw_cache[id(p)] = self._deltas(p, len(ops))
        idx, kinds, deltas = steps
        times = abs_starts + [end]
        self.timeline.extend([times[i] for i in idx], kinds, deltas)

    @staticmethod
    def _deltas(p: ArenaPlan, n: int) -> tuple[list[int], list[str], list[int]]:
        """(op index, kind, delta) records of a plan's live bytes: index n is the step's end."""
        idx: list[int] = []
        kinds: list[str] = []
        deltas: list[int] = []
        unused = np.zeros(n + 1, dtype=np.int64)
        for kind, live in sorted(p.live_by_kind.items()):
            v = np.zeros(n + 2, dtype=np.int64)
            v[1:n + 1] = live
            dv = np.diff(v)
            unused -= dv
            nz = np.nonzero(dv)[0]
            idx += nz.tolist()
            kinds += [kind] * len(nz)
            deltas += dv[nz].tolist()
        nz = np.nonzero(unused)[0]
        idx += nz.tolist()
        kinds += [ARENA_FREE_KIND] * len(nz)
        deltas += unused[nz].tolist()
        return idx, kinds, deltas

    def figures(self) -> dict[str, Any]:
        """The RAM part of the result (planner figures are the first step's, persistent tensors included)."""
        fp = self.first_plan
        return {"peak_ram_bytes": int(self.peak_bytes),
                "naive_ram_bytes": fp.naive_bytes if fp else None,
                "lower_bound_ram_bytes": fp.lower_bound_bytes if fp else None,
                "planned_ram_bytes": fp.planned_bytes if fp else None,
                "arena_bytes": dict(self.arena)}


class StepMemo:
    """Heap policy, fast path for repeated steps.

    Placement depends only on the free list and the trace, so a step that starts from a free list seen
    before, with the same trace, and frees all it allocates, does exactly what it did then: same
    offsets, same peak, same timeline shape. The memo records a step's heap effect (op index, kind,
    delta) and applies it the next time instead of placing every tensor.
    """

    def __init__(self, ram: Ram) -> None:
        self.ram = ram
        self.entries: dict[tuple, tuple[int, list[tuple[int, str, int]]]] = {}
        self.recording = False
        self.rec_idx: list[int] = []

    def _key(self, ops: list[Op]) -> tuple:
        return (trace_signature(ops), tuple(self.ram.heap.holes()))

    def apply(self, ops: list[Op], base: float, cum_t: list[float]) -> bool:
        """Apply a recorded step if this trace from this heap layout was seen; False if not."""
        hit = self.entries.get(self._key(ops))
        if hit is None:
            return False
        peak_used, recs = hit
        heap = self.ram.heap
        if peak_used > heap.peak_bytes:
            heap.peak_bytes = peak_used
        out = self.ram._recs
        for i, kind, delta in recs:
            out.append((base + cum_t[i], kind, delta))
        return True

    def start(self, ops: list[Op]) -> bool:
        """Begin recording a step's heap effect; the caller appends each record's op index to rec_idx."""
        heap = self.ram.heap
        self._rec_key = self._key(ops)
        self._rec_from = len(self.ram._recs)
        self._rec_used = heap.used_bytes
        self._rec_peak = heap.peak_bytes
        self.rec_idx = []
        heap.peak_bytes = heap.used_bytes    # measure this step's own peak
        self.recording = True
        return True

    def end_peak(self) -> int:
        heap = self.ram.heap
        step_peak = heap.peak_bytes
        heap.peak_bytes = max(self._rec_peak, step_peak)
        self.recording = False
        return step_peak

    def stop(self) -> None:
        step_peak = self.end_peak()
        if self.ram.heap.used_bytes != self._rec_used:     # a leak would change the layout: do not memoise
            return
        new = self.ram._recs[self._rec_from:]
        if len(new) != len(self.rec_idx) or len(self.entries) >= MAX_MEMO_ENTRIES:
            return
        self.entries[self._rec_key] = (step_peak, [(i, k, d) for i, (_, k, d) in zip(self.rec_idx, new, strict=True)])
