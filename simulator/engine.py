"""One simulation run: the environment, the device, the job, RAM, and the processes (DESIGN.md §3).

Speed: a training step is not one SimPy event per op. Its ops are costed up front and the step runs
as one ``env.timeout`` for its remaining time; when inference preempts it, the step is interrupted,
the ops finished so far are charged (energy, RAM at op granularity, CPU timeline), and it resumes
with what is left. Memory is sampled at every op without creating events.
"""
from __future__ import annotations

import bisect
import itertools
from typing import Any

import numpy as np
import simpy

from workloads.trace import Op, Tensor, collect

from . import pipeline, schedule
from .cost import CostModel
from .device import PRIO_TRAINING, BatteryEmpty, Device
from .memory import Heap, OutOfMemory
from .planner import plan as plan_memory
from .scenario import Scenario

RESERVED_KIND = "runtime"      # the runtime's reserved RAM, a band at the bottom of the memory plot
ARENA_FREE_KIND = "arena_unused"
MAX_MEMORY_POINTS = 4000
MAX_CPU_SEGMENTS = 20000
MAX_DROP_LOG = 1000


class Fatal(Exception):
    """A run-ending event: out of memory, fragmentation, battery empty."""

    def __init__(self, kind: str, time_s: float, op: str, message: str, ram_needed_bytes: int | None = None) -> None:
        self.kind, self.time_s, self.op, self.message = kind, time_s, op, message
        self.ram_needed_bytes = ram_needed_bytes   # out of memory: RAM the failing allocation called for
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "time_s": self.time_s, "op": self.op, "message": self.message,
                "ram_needed_bytes": self.ram_needed_bytes}


def _signature(ops: list[Op]) -> tuple:
    """What the memory plan of a trace depends on: op names and kinds, alloc sizes, free counts."""
    return (tuple([op.name for op in ops]), tuple([op.kind for op in ops]),
            tuple([t.nbytes for op in ops for t in op.alloc]), tuple([len(op.alloc) for op in ops]),
            tuple([len(op.free) for op in ops]))


def _oom_message(e: OutOfMemory, op_name: str, tensor: Tensor) -> str:
    """The heap's error without process-dependent tensor ids (results must not depend on them)."""
    what = "heap fragmented" if e.kind == "fragmentation" else "out of memory"
    label = f"{tensor.kind} {tensor.name!r}" if tensor.name else tensor.kind
    return (f"{what} at op {op_name!r}: need {e.need:,} B for {label}, free {e.total_free:,} B in total, "
            f"largest free block {e.largest_free:,} B (heap {e.capacity:,} B)")


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


class Ram:
    """The device RAM under a memory policy.

    ``heap``: every tensor is placed in a ``memory.Heap`` at op time (fragmentation can fail it).
    ``planned``: persistent tensors and two static arenas (training step, inference) are placed once;
    each step's trace must fit its arena (checked with the planner), and the timeline shows live
    bytes by kind inside the arenas.
    """

    def __init__(self, sim: Simulation, persistent: tuple[Tensor, ...]) -> None:
        self.sim = sim
        rt = sim.rt
        self.policy = sim.sc.schedule["memory_policy"]
        self.reserved = rt.ram_reserved_bytes
        self.budget = sim.profile.memory.ram_bytes
        self.heap = Heap.for_runtime(self.budget - self.reserved, rt, policy=sim.sc.schedule["heap_policy"])
        self.persistent = persistent
        self.timeline = MemTimeline()
        self._recs = self.timeline.recs
        self.timeline.add(0.0, RESERVED_KIND, self.reserved)
        self._live: dict[int, tuple[str, int]] = {}
        self._plans: dict[tuple, Any] = {}
        self._memo: dict[tuple, tuple[int, list[tuple[int, str, int]]]] = {}
        self.memo_enabled = True
        self._recording = False
        self.rec_idx: list[int] = []
        self._draw_cache: dict[int, tuple[list[int], list[str], list[int]]] = {}
        self._last_key: tuple[list[Op], Any] | None = None
        self.arena = {"train": 0, "infer": 0}
        self.first_plan = None

    @property
    def peak_bytes(self) -> int:
        return self.reserved + self.heap.peak_bytes

    def plan(self, ops: list[Op]):
        last = self._last_key
        if last is not None and last[0] is ops:
            return last[1]
        key = _signature(ops)
        p = self._plans.get(key)
        if p is None:
            p = self._plans[key] = plan_memory(ops, ())
        self._last_key = (ops, p)
        return p

    def setup(self, train_ops: list[Op], infer_ops: list[Op]) -> None:
        """Place persistent tensors (and, for ``planned``, the arenas) at t=0."""
        self.first_plan = plan_memory(train_ops, self.persistent)
        for t in self.persistent:
            self.alloc(0.0, t, f"persistent:{t.name or t.kind}")
        if self.policy != "planned":
            return
        for name, ops in (("train", train_ops), ("infer", infer_ops)):
            p = self.plan(ops)
            size = p.planned_bytes
            self.arena[name] = size
            try:
                self.heap.alloc(-1 if name == "train" else -2, size, ARENA_FREE_KIND, f"arena:{name}")
            except OutOfMemory as e:
                i = self._first_over(p, self.heap.free_bytes)
                op = p.op_names[i] if i >= 0 else ""
                raise Fatal(e.kind, 0.0, op, f"the planned {name} arena ({size:,} B) does not fit: "
                            f"{_oom_message(e, 'arena:' + name, Tensor(0, size, 'arena'))} "
                            f"(live bytes first exceed the free heap at op {op!r})",
                            self.reserved + self.heap.used_bytes + e.need) from None
            self.timeline.add(0.0, ARENA_FREE_KIND, self.heap.size_for(size))

    @staticmethod
    def _first_over(p, limit: int) -> int:
        """Index of the first op whose live bytes exceed ``limit`` (the plan's peak op if none does)."""
        return next((i for i, b in enumerate(p.live_bytes) if b > limit), p.peak_op)

    # heap policy: per-op placement
    def alloc(self, t: float, tensor: Tensor, op_name: str) -> None:
        try:
            self.heap.alloc(tensor.id, tensor.nbytes, tensor.kind, op_name)
        except OutOfMemory as e:
            if self._recording:
                self._end_recording_peak()
            raise Fatal(e.kind, t, op_name, _oom_message(e, op_name, tensor),
                        self.reserved + self.heap.used_bytes + e.need) from None
        size = self.heap.size_for(tensor.nbytes)
        self._live[tensor.id] = (tensor.kind, size)
        self._recs.append((t, tensor.kind, size))

    def free(self, t: float, tid: int) -> None:
        kind, size = self._live.pop(tid)
        self.heap.free(tid)
        self._recs.append((t, kind, -size))

    # heap policy, fast path for repeated steps. Placement depends only on the free list and the
    # trace, so a step that starts from a free list seen before, with the same trace, and frees all
    # it allocates, does exactly what it did then: same offsets, same peak, same timeline shape.
    def _memo_key(self, ops: list[Op]) -> tuple:
        return (_signature(ops), tuple(self.heap.holes()))

    def replay(self, ops: list[Op], base: float, cum_t: list[float]) -> bool:
        """Apply a recorded step if this trace from this heap layout was seen; False if not."""
        if not self.memo_enabled:
            return False
        hit = self._memo.get(self._memo_key(ops))
        if hit is None:
            return False
        peak_used, recs = hit
        heap = self.heap
        if peak_used > heap.peak_bytes:
            heap.peak_bytes = peak_used
        out = self._recs
        for i, kind, delta in recs:
            out.append((base + cum_t[i], kind, delta))
        return True

    def start_recording(self, ops: list[Op]) -> bool:
        """Begin recording a step's heap effect (op index, kind, delta) to replay it next time."""
        if not self.memo_enabled:
            return False
        self._rec_key = self._memo_key(ops)
        self._rec_from = len(self._recs)
        self._rec_used = self.heap.used_bytes
        self._rec_peak = self.heap.peak_bytes
        self.rec_idx = []
        self.heap.peak_bytes = self.heap.used_bytes    # measure this step's own peak
        self._recording = True
        return True

    def _end_recording_peak(self) -> int:
        step_peak = self.heap.peak_bytes
        self.heap.peak_bytes = max(self._rec_peak, step_peak)
        self._recording = False
        return step_peak

    def stop_recording(self) -> None:
        step_peak = self._end_recording_peak()
        if self.heap.used_bytes != self._rec_used:     # a leak would change the layout: do not memoise
            return
        new = self._recs[self._rec_from:]
        if len(new) != len(self.rec_idx) or len(self._memo) >= 256:
            return
        self._memo[self._rec_key] = (step_peak, [(i, k, d) for i, (_, k, d) in zip(self.rec_idx, new, strict=True)])

    # planned policy: check a trace against its arena and draw its live bytes
    def check_arena(self, name: str, ops: list[Op], t0: float, starts: list[float]) -> None:
        p = self.plan(ops)
        if p.planned_bytes > self.arena[name]:
            i = self._first_over(p, self.arena[name])
            op = p.op_names[i] if i >= 0 else name
            raise Fatal("out_of_memory", t0 + starts[max(i, 0)], op,
                        f"the {name} step needs a {p.planned_bytes:,} B arena but {self.arena[name]:,} B was "
                        f"planned (from the first step); live bytes reach {p.live_bytes[max(i, 0)]:,} B at op {op!r}",
                        self.reserved + self.heap.used_bytes - self.arena[name] + p.planned_bytes)

    def draw_planned(self, name: str, ops: list[Op], abs_starts: list[float], end: float) -> None:
        """Add a planned-arena step's live bytes by kind (op granularity) to the timeline."""
        if not ops:
            return
        p = self.plan(ops)
        steps = self._draw_cache.get(id(p))
        if steps is None:
            steps = self._draw_cache[id(p)] = self._deltas(p, len(ops))
        idx, kinds, deltas = steps
        times = abs_starts + [end]
        self.timeline.extend([times[i] for i in idx], kinds, deltas)

    @staticmethod
    def _deltas(p, n: int) -> tuple[list[int], list[str], list[int]]:
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


class Simulation:
    """A scenario run on one device with one training job."""

    def __init__(self, sc: Scenario, profile: Any, job: Any, probe_job: Any = None, memo: bool = True) -> None:
        self.sc, self.profile, self.job = sc, profile, job
        self.memo = memo              # heap policy: replay repeated steps (results identical either way)
        self.probe_job = probe_job    # an identical job to trace one step on (default: a deep copy)
        self.rt = profile.runtime_for(sc.runtime)
        self.env = env = simpy.Environment()
        b = sc.battery
        cap_mah = b["capacity_mah"] or profile.battery.capacity_mah
        volt = b["voltage_v"] or profile.battery.voltage_v
        self.capacity_j = cap_mah * 3.6 * volt
        self.device = Device(env, profile, capacity_j=self.capacity_j, initial_fraction=b["initial_fraction"],
                             idle_timeout_s=sc.power["idle_timeout_s"], harvest_w_by_hour=b["harvest_w_by_hour"])
        self.cost = CostModel(profile, sc.runtime)
        q = sc.pipeline["queue_capacity"]
        self.q_frames = simpy.Store(env, capacity=q)
        self.q_windows = simpy.Store(env, capacity=q)
        self.q_results = simpy.Store(env, capacity=q)
        self.q_labels = simpy.Store(env, capacity=sc.schedule["every_n"] + q)
        self.infer_done = env.event()
        self.stop = env.event()
        self.stream = iter(job.labelled_stream())
        # counters
        self.frames = self.dropped_frames = self.dropped_windows = 0
        self.labels = self.dropped_labels = 0
        self.inferences = self.deadline_misses = 0
        self.first_miss_s: float | None = None
        self.worst_inference_latency_s = 0.0
        self.sunk = self.online_correct = 0
        self.training_steps = 0
        self.macs_total = 0
        self.preemptions = 0
        self.checkpoints = 0
        self.step_latencies: list[float] = []
        self.first_slow_step: tuple[float, str] | None = None
        self.first_flash_write_s: tuple[float, str] | None = None   # (sim time, op) of the first flash write
        self.swap_steps = 0
        self.idle_skips = 0          # idle trigger: rounds given up because no idle gap holds a step
        self.last_step_s = 0.0       # device time of the last step without waits (probe step at first)
        self.swap_region_bytes = 0
        self.losses: list[tuple[int, float, float]] = []
        self.evals: list[dict[str, Any]] = []
        self.fatal: Fatal | None = None
        self.drop_log: list[tuple[str, float]] = []    # (stage, sim time), the first MAX_DROP_LOG drops
        self._infer_pending: tuple[float, float, str] | None = None
        self.ram: Ram | None = None

    def log_drop(self, stage: str) -> None:
        if len(self.drop_log) < MAX_DROP_LOG:
            self.drop_log.append((stage, self.env.now))

    # --- inference ---------------------------------------------------------------------------------

    def run_inference(self, x) -> tuple[int, float]:
        """Run the model on ``x`` now (numpy), place its tensors, and return (prediction, seconds)."""
        ops, pred = collect(self.job.infer(x))
        now = self.env.now
        cum_t, cum_e = self.cost.cumulative(ops)
        starts, t, energy = cum_t[:-1], cum_t[-1], cum_e[-1]
        self.device.begin(now)
        ram = self.ram
        if ram.policy == "heap":
            for op, st, en in zip(ops, starts, starts[1:] + [t], strict=False):
                for tensor in op.alloc:
                    ram.alloc(now + st, tensor, op.name)
                for tid in op.free:
                    ram.free(now + en, tid)
        else:
            ram.check_arena("infer", ops, now, starts)
            ram.draw_planned("infer", ops, [now + s for s in starts], now + t)
        self._infer_pending = (now, energy, ops[-1].name if ops else "inference")
        return int(pred), t

    def end_inference(self) -> None:
        start, energy, op = self._infer_pending
        self.device.end(start, self.env.now, "inference", energy, op)

    # --- training ------------------------------------------------------------------------------------

    def train_step(self, xs, ys):
        """SimPy sub-process: one training step, preemptible by inference."""
        ops, loss = collect(self.job.train_step(xs, ys))
        self.training_steps += 1
        self.macs_total += sum(op.macs for op in ops)
        swapped = sum(op.bytes_written for op in ops if op.kind == "flash_write")
        if swapped:   # swap to flash: a scratch region rewritten every step wears the flash
            self.swap_steps += 1
            self.swap_region_bytes = max(self.swap_region_bytes, swapped)
            self.device.flash_write(swapped)
            if self.first_flash_write_s is None:
                self.first_flash_write_s = (self.env.now, next(op.name for op in ops if op.kind == "flash_write"))
        t_req = self.env.now
        yield from self.execute(ops, "training", check_arena=True)
        if self.fatal:
            return
        latency = self.env.now - t_req
        self.step_latencies.append(latency)
        self.losses.append((self.training_steps, self.env.now, float(loss)))
        budget = self.sc.budgets["step_latency_s"]
        if latency > budget and self.first_slow_step is None:
            self.first_slow_step = (self.env.now, f"train_step #{self.training_steps} ({ops[-1].name if ops else ''})")

    def checkpoint(self):
        """SimPy sub-process: write the trainable weights to flash (preemptible)."""
        nbytes = int(self.job.trainable_bytes())
        op = Op("checkpoint.flash_write", "flash_write", 0, nbytes, nbytes)
        self.checkpoints += 1
        self.device.flash_write(nbytes)
        if self.first_flash_write_s is None:
            self.first_flash_write_s = (self.env.now, op.name)
        yield from self.execute([op], "training")   # the CPU timeline shows it as training work

    def execute(self, ops: list[Op], task: str, check_arena: bool = False):
        """Run ``ops`` on the CPU at training priority as few timeouts as preemption allows."""
        env, dev, ram = self.env, self.device, self.ram
        n = len(ops)
        cum_t, cum_e = self.cost.cumulative(ops)
        total = cum_t[-1]
        if check_arena:
            self.last_step_s = total
        if check_arena and ram.policy == "planned":
            ram.check_arena("train", ops, env.now, cum_t)
        heap = ram.policy == "heap"
        if not n:
            return
        progress = 0.0
        next_op = 0           # ops before this are fully applied to RAM
        alloc_done = False    # allocs of ops[next_op] applied
        segments: list[tuple[float, float, float]] = []   # (abs start, progress from, progress to)
        while True:
            with dev.cpu.request(priority=PRIO_TRAINING) as req:
                yield req
                start = env.now
                dev.begin(start)
                preempted = False
                try:
                    yield env.timeout(total - progress)
                    new = total
                except simpy.Interrupt:
                    preempted = True
                    self.preemptions += 1
                    new = min(total, progress + (env.now - start))
                base = start - progress
                segments.append((start, progress, new))
                # RAM at op granularity: allocs at op start, frees at op end, in trace order.
                # A whole step run in one segment from a heap layout seen before with the same trace
                # places its tensors exactly as last time: replay the recorded effect (ram.replay).
                if heap and check_arena and next_op == 0 and new >= total and ram.replay(ops, base, cum_t):
                    next_op = n
                recording = heap and check_arena and next_op == 0 and new >= total and ram.start_recording(ops)
                while heap and next_op < n:
                    op = ops[next_op]
                    if not alloc_done:
                        if not (cum_t[next_op] < new or new >= total):
                            break
                        for tensor in op.alloc:
                            try:
                                ram.alloc(base + cum_t[next_op], tensor, op.name)
                            except Fatal:
                                dev.end(start, env.now, task, 0.0, op.name, preempted)
                                raise
                            if recording:
                                ram.rec_idx.append(next_op)
                        alloc_done = True
                    if cum_t[next_op + 1] > new:
                        break
                    for tid in op.free:
                        ram.free(base + cum_t[next_op + 1], tid)
                        if recording:
                            ram.rec_idx.append(next_op + 1)
                    next_op += 1
                    alloc_done = False
                if recording:
                    ram.stop_recording()
                energy = self._energy_between(cum_t, cum_e, progress, new)
                i = min(max(bisect.bisect_right(cum_t, new) - 1, 0), n - 1)
                try:
                    dev.end(start, env.now, task, energy, ops[i].name, preempted)
                except BatteryEmpty as b:   # name the op that was running when the charge ran out
                    j = min(max(bisect.bisect_right(cum_t, progress + (b.time_s - start)) - 1, 0), n - 1)
                    raise BatteryEmpty(b.time_s, ops[j].name) from None
                progress = new
            if progress >= total:
                break
        if not heap and check_arena and n:
            if len(segments) == 1:   # not preempted: op starts are the step start plus the cumulative time
                s0 = segments[0][0]
                ram.draw_planned("train", ops, [s0 + c for c in cum_t[:n]], env.now)
                return
            abs_starts = []
            k = 0
            for i in range(n):
                p = cum_t[i]
                while k + 1 < len(segments) and segments[k][2] <= p:
                    k += 1
                s0, p0, _ = segments[k]
                abs_starts.append(s0 + (p - p0))
            ram.draw_planned("train", ops, abs_starts, env.now)

    @staticmethod
    def _energy_between(cum_t: list[float], cum_e: list[float], a: float, b: float) -> float:
        def at(p: float) -> float:
            i = bisect.bisect_right(cum_t, p) - 1
            if i >= len(cum_t) - 1:
                return cum_e[-1]
            i = max(i, 0)
            dt = cum_t[i + 1] - cum_t[i]
            return cum_e[i] + (cum_e[i + 1] - cum_e[i]) * ((p - cum_t[i]) / dt if dt > 0 else 1.0)
        return max(0.0, at(b) - at(a))

    # --- control ---------------------------------------------------------------------------------------

    def set_fatal(self, f: Fatal) -> None:
        if self.fatal is None:
            self.fatal = f
            log = self.device.battery_log
            if f.kind == "battery_empty" and (not log or log[-1][0] <= f.time_s):
                log.append((f.time_s, 0.0))   # the battery timeline ends where the charge did
            if not self.stop.triggered:
                self.stop.succeed()

    def _guard(self, gen):
        """Wrap a process: battery-empty and out-of-memory end the run, recorded as fatal."""
        try:
            yield from gen
        except BatteryEmpty as b:
            self.set_fatal(Fatal("battery_empty", b.time_s, b.op, str(b)))
        except Fatal as f:
            self.set_fatal(f)

    def _evaluator(self, points: int):
        every = self.sc.duration_s / points
        for _k in range(1, points):
            yield self.env.timeout(every)
            self._evaluate()

    def _evaluate(self) -> None:
        ev = self.job.evaluate()
        self.evals.append({"step": self.training_steps, "time_s": round(self.env.now, 6),
                           "user_accuracy": float(ev["user_accuracy"]),
                           "retention_accuracy": float(ev["retention_accuracy"])})

    def setup(self) -> tuple[list[Op], list[Op]]:
        """Trace one training step (on a copy of the job) and one inference, and lay out RAM."""
        train_ops, infer_ops = probe_ops(self.probe_job or self.job, self.sc.schedule["batch"],
                                         copy_first=self.probe_job is None)
        self.last_step_s = self.cost.cumulative(train_ops)[0][-1]
        self.ram = Ram(self, tuple(self.job.persistent_tensors()))
        self.ram.memo_enabled = self.memo
        self.ram.setup(train_ops, infer_ops)
        return train_ops, infer_ops

    def run(self, progress: bool = False) -> None:
        """Simulate ``duration_s`` (or until a fatal event)."""
        env, dur = self.env, self.sc.duration_s
        self._evaluate()
        try:
            self.setup()
        except Fatal as f:
            self.set_fatal(f)
            return
        for proc in (pipeline.sensor, pipeline.window, pipeline.infer, pipeline.sink, schedule.trainer):
            env.process(self._guard(proc(self)))
        env.process(self._guard(self.device.monitor(self.sc.battery["sample_s"])))
        env.process(self._evaluator(self.sc.eval["points"]))
        chunks = 100
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=chunks, desc=f"simulating {self.sc.name} ({dur / 3600:g} h)", unit="%", leave=False)
        for k in range(1, chunks + 1):
            if self.fatal:
                break
            env.run(until=env.timeout(dur * k / chunks - env.now) | self.stop)
            if bar:
                bar.update(1)
        if bar:
            bar.close()
        if not self.fatal:
            try:
                self.device.sample(env.now)
            except BatteryEmpty as b:
                self.set_fatal(Fatal("battery_empty", b.time_s, b.op, str(b)))
        self._evaluate()

    @property
    def end_s(self) -> float:
        return self.fatal.time_s if self.fatal else self.sc.duration_s


def probe_ops(job: Any, batch: int, copy_first: bool = True) -> tuple[list[Op], list[Op]]:
    """One training step's and one inference's ops, traced on a deep copy of ``job`` (or on ``job``
    itself, a spare twin, with ``copy_first=False``) so the simulated job's weights stay untouched."""
    import copy

    probe = copy.deepcopy(job) if copy_first else job
    stream = iter(probe.labelled_stream())
    xs, ys = zip(*itertools.islice(stream, batch), strict=False)
    infer_ops, _ = collect(probe.infer(xs[0]))
    train_ops, _ = collect(probe.train_step(np.stack(xs), np.array(ys)))
    return train_ops, infer_ops
