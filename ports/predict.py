"""The simulator's prediction for the board: its cost and heap models over the host's op trace, plus
what the MicroPython port itself costs (calibrated figures of the profile, not constants here).

Board heap = GC heap in use = the port's footprint (REPL, edgesim's device modules, the serial
sample buffer) + the workload's tensors as ``simulator.memory.Heap`` places them with the runtime's
16-byte blocks and per-object header. The footprint comes from the profile's calibrated
``runtime.micropython.ram_reserved_bytes`` (= RAM outside the GC heap + the footprint, written by
``edgesim calibrate``) and the GC heap size the firmware reports.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

RUNTIME = "micropython"


@dataclass(frozen=True)
class PortFootprint:
    """Heap the port takes before the workload's tensors."""

    code_bytes: int       # REPL + device modules, from the calibrated ram_reserved_bytes
    staging_bytes: int    # the sample buffer the serial protocol fills (one input vector)

    @property
    def bytes(self) -> int:
        return self.code_bytes + self.staging_bytes

    def as_dict(self) -> dict:
        return asdict(self) | {"bytes": self.bytes}

    @classmethod
    def from_profile(cls, profile: Any, heap_total_bytes: int, n_inputs: int) -> PortFootprint:
        """A twin's calibrated ``port_heap_bytes``; the micro:bit's ram_reserved_bytes less the RAM
        outside its GC heap (its port is the runtime there: calibrated into that figure)."""
        from simulator.memory import Heap

        rt = profile.runtime_for(RUNTIME)
        staging = Heap.for_runtime(1 << 30, rt).size_for(4 * n_inputs)
        if rt.port_heap_bytes is not None:
            return cls(code_bytes=int(rt.port_heap_bytes), staging_bytes=int(staging))
        static = profile.memory.ram_bytes - heap_total_bytes
        return cls(code_bytes=int(rt.ram_reserved_bytes - static), staging_bytes=int(staging))


def predict_trace(profile: Any, job: Any, samples: list, heap_total_bytes: int | None = None,
                  port_bytes: int = 0) -> dict:
    """Run the host steps on ``samples`` (batch 1; this trains ``job``) and price each step's trace
    with the simulator's cost model (``simulator.cost.op_cycles``) and heap model. Given the GC heap's
    size and the port's own bytes, each op also pays the collections its garbage causes
    (``simulator.cost.gc_cycles``, at the live heap the heap model gives for that op)."""
    from simulator.cost import gc_cycles, op_cycles
    from simulator.memory import Heap, OutOfMemory, place_trace
    from workloads.trace import collect

    rt = profile.runtime_for(RUNTIME)
    cpi = profile.core.cycles_per_instruction
    persistent = tuple(job.persistent_tensors())
    size = Heap.for_runtime(1 << 30, rt).size_for
    base_live = port_bytes + sum(size(t.nbytes) for t in persistent)
    losses, instr, peaks, gcs = [], [], [], []
    fits = True
    op_names: list[str] = []
    op_instr0: list[float] = []
    ops0: list = []
    n_in = int(np.prod(job.input_shape))
    # the heap the workload may use: a twin's GC heap less the port, else the RAM the profile leaves
    avail = (heap_total_bytes - (port_bytes - size(4 * n_in)) if heap_total_bytes
             else profile.memory.ram_bytes - rt.ram_reserved_bytes)
    for k, (x, y) in enumerate(samples):
        xs, ys = as_batch(job, x, y)
        n_in = xs.size
        ops, loss = collect(job.train_step(xs, ys))
        losses.append(float(loss))
        live: dict[int, int] = {}
        cyc = []
        gc_total = 0.0
        for op in ops:
            for t in op.alloc:
                live[t.id] = size(t.nbytes)
            c = op_cycles(op, rt)
            g = gc_cycles(c, base_live + sum(live.values()), heap_total_bytes, rt)
            gc_total += g
            cyc.append(c + g)
            for i in op.free:
                live.pop(i, None)
        instr.append(sum(cyc) / cpi)
        gcs.append(gc_total / cpi)
        if k == 0:
            ops0 = ops
            op_names = [op.name for op in ops]
            op_instr0 = [c / cpi for c in cyc]
        peaks.append(int(place_trace(Heap.for_runtime(1 << 30, rt), ops, persistent).peak_bytes))
        try:                                   # the verdict: the same trace in the RAM the profile leaves
            h2 = Heap.for_runtime(avail, rt)
            h2.alloc(-1, 4 * n_in, "input", "staging")
            place_trace(h2, ops, persistent)
        except OutOfMemory:
            fits = False
    return {"losses": losses, "instructions_by_step": instr, "instructions_per_step": float(np.mean(instr)),
            "gc_instructions_per_step": float(np.mean(gcs)),
            "heap_peak_bytes": max(peaks), "fits": fits, "op_names": op_names,
            "op_instructions_step0": op_instr0, "heap_available_bytes": int(avail), "ops_step0": ops0}


def as_batch(job: Any, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """(samples, labels) with a batch axis: one sample and an int label, or a batch and its labels."""
    ys = np.atleast_1d(np.asarray(y))
    xs = np.asarray(x).reshape((len(ys),) + tuple(job.input_shape))
    return xs, ys


class GcBlocks:
    """MicroPython's GC heap (py/gc.c) block by block: first fit from the lowest free block, a failed
    allocation is a MemoryError (the board collects first; the model holds no garbage), realloc grows
    in place when the next blocks are free, else takes a new first-fit run before freeing the old one."""

    def __init__(self, used: list[bool]) -> None:
        self.used = list(used)
        self.runs: dict[int, int] = {}        # start block -> blocks, of the allocations made here

    def alloc(self, n: int) -> int:
        run = 0
        for i, u in enumerate(self.used):
            run = 0 if u else run + 1
            if run == n:
                start = i - n + 1
                self.used[start:i + 1] = [True] * n
                self.runs[start] = n
                return start
        raise MemoryError(n)

    def free(self, start: int) -> None:
        n = self.runs.pop(start)
        self.used[start:start + n] = [False] * n

    def grow(self, start: int, n: int) -> int:
        """Realloc the run at ``start`` to ``n`` blocks; its (possibly new) start."""
        have = self.runs[start]
        end = start + have
        if n <= have:
            return start
        if end + n - have <= len(self.used) and not any(self.used[end:start + n]):
            self.used[end:start + n] = [True] * (n - have)
            self.runs[start] = n
            return start
        new = self.alloc(n)
        self.free(start)
        return new


def fits_in_heap_map(profile: Any, job: Any, ops: list, used: list[bool], staging_inputs: int,
                     line_bytes: tuple[int, ...] = ()) -> bool:
    """Whether one step's trace fits the twin's GC heap as the port leaves it, block by block from the
    board's own block map (taken after the port is loaded), so fragmentation counts (an 88 KB heap with
    29 KB free may hold no 4.6 KB run). The port's allocations are replayed in the board's order: the raw
    REPL's line buffer (one vstr kept for the session, grown 16 B at a time by realloc to each longer
    command: ``line_bytes`` in the order sent -- the setup call, then the weight lines), the model's
    buffers as net.mk() allocates them (the sample, then per layer weights, biases and momentum
    buffers), then the step's buffers and frees. Each array('f') is two allocations, as
    py/objarray.c makes them: its 16-byte object, then its items."""
    rt = profile.runtime_for(RUNTIME)
    b = rt.heap_block_bytes
    heap = GcBlocks(used)
    blocks = lambda nbytes: -(-int(nbytes) // b)              # noqa: E731
    ids: dict[int, tuple[int, int]] = {}

    def array(nbytes: int) -> tuple[int, int]:
        return heap.alloc(1), (heap.alloc(blocks(nbytes)) if nbytes else -1)

    def drop(pair: tuple[int, int]) -> None:
        for start in pair:
            if start >= 0:
                heap.free(start)

    lines = list(line_bytes)
    try:
        buf = heap.alloc(2)                               # vstr_init(&line, 32)
        model_at = 1 if lines else 0
        for k, n in enumerate(lines):
            if k == model_at:                             # mk() runs after the setup call
                place_model(array, job, staging_inputs)
            for m in range(heap.runs[buf] + 1, blocks(n + 17) + 1):
                buf = heap.grow(buf, m)
        if not lines:
            place_model(array, job, staging_inputs)
        persistent = {t.id for t in job.persistent_tensors()}
        for op in ops:
            for t in op.alloc:
                if t.id not in persistent:
                    ids[t.id] = array(t.nbytes)
            for i in op.free:
                if i in ids:
                    drop(ids.pop(i))
    except MemoryError:
        return False
    return True


def place_model(array: Any, job: Any, staging_inputs: int) -> None:
    """net.mk()'s allocations: the sample buffer, then per layer weights, biases and, with momentum, their
    velocity buffers."""
    array(4 * staging_inputs)
    mom = float(getattr(job.opt, "momentum", 0.0) or 0.0)
    for ly in job.model.layers:
        if ly.params:
            w, bias = ly.params[0], ly.params[1]
            array(4 * w.size)
            array(4 * bias.size)
            if mom:
                array(4 * w.size)
                array(4 * bias.size)
