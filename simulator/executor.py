"""Running op traces on the device's CPU: the preemptible training executor and inference
(docs/architecture.md §3).

Speed: a training step is not one SimPy event per op. Its ops are costed up front and the step runs
as one ``env.timeout`` for its remaining time; when inference preempts it, the step is interrupted,
the ops finished so far are charged (energy, RAM at op granularity, CPU timeline), and it resumes
with what is left. Memory is sampled at every op without creating events.
"""
from __future__ import annotations

import bisect

import simpy

from workloads.trace import Op, collect

from .cost import CostModel
from .device import PRIO_TRAINING, Device
from .ram import Ram
from .run_end import BatteryEmpty, RunEnded


class Executor:
    """Runs traces at training priority, preemptible by inference; counts its preemptions."""

    def __init__(self, env: simpy.Environment, device: Device, ram: Ram, cost: CostModel) -> None:
        self.env, self.device, self.ram, self.cost = env, device, ram, cost
        self.preemptions = 0
        self.last_step_s = 0.0   # device time of the last training step without waits
        self.busy_since: float | None = None   # start of the trace running now (its RAM records are not final)

    def run(self, ops: list[Op], task: str, step: bool = False):
        """SimPy sub-process: run ``ops`` in as few timeouts as preemption allows. ``step``: a training
        step (its arena is checked and, for the heap policy, its placement memoised)."""
        env, dev, ram = self.env, self.device, self.ram
        n = len(ops)
        cum_t, cum_e = cumulative(self.cost, ops)
        total = cum_t[-1]
        if step:
            self.last_step_s = total
        if step and ram.policy == "planned":
            ram.check_arena("train", ops, env.now, cum_t)
        heap = ram.policy == "heap"
        memo = ram.memo if heap and step else None
        if not n:
            return
        self.busy_since = env.now
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
                # places its tensors exactly as last time: apply the memo's recording.
                whole = memo is not None and next_op == 0 and new >= total
                if whole and memo.apply(ops, base, cum_t):
                    next_op = n
                recording = memo is not None and next_op == 0 and new >= total and memo.start(ops)
                while heap and next_op < n:
                    op = ops[next_op]
                    if not alloc_done:
                        if not (cum_t[next_op] < new or new >= total):
                            break
                        for tensor in op.alloc:
                            try:
                                ram.alloc(base + cum_t[next_op], tensor, op.name)
                            except RunEnded:
                                dev.end(start, env.now, task, 0.0, op.name, preempted)
                                raise
                            if recording:
                                memo.rec_idx.append(next_op)
                        alloc_done = True
                    if cum_t[next_op + 1] > new:
                        break
                    for tid in op.free:
                        ram.free(base + cum_t[next_op + 1], tid)
                        if recording:
                            memo.rec_idx.append(next_op + 1)
                    next_op += 1
                    alloc_done = False
                if recording:
                    memo.stop()
                energy = energy_between(cum_t, cum_e, progress, new)
                i = min(max(bisect.bisect_right(cum_t, new) - 1, 0), n - 1)
                try:
                    dev.end(start, env.now, task, energy, ops[i].name, preempted)
                except BatteryEmpty as b:   # name the op that was running when the charge ran out
                    j = min(max(bisect.bisect_right(cum_t, progress + (b.time_s - start)) - 1, 0), n - 1)
                    raise BatteryEmpty(b.time_s, ops[j].name) from None
                progress = new
            if progress >= total:
                break
        self.busy_since = None
        if not heap and step:
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


class Inference:
    """One inference on the CPU (the caller holds it at inference priority): place its tensors, then
    charge its energy when it ends."""

    def __init__(self, env: simpy.Environment, device: Device, ram: Ram, cost: CostModel, job,
                 fidelity=None) -> None:
        self.env, self.device, self.ram, self.cost, self.job = env, device, ram, cost, job
        self.fidelity = fidelity    # simulator.fidelity.Fidelity: real or recorded inference (None: always real)
        self._pending: tuple[float, float, str] | None = None

    def start(self, x) -> tuple[int | None, float]:
        """Run the model on ``x`` now (numpy), place its tensors, and return (prediction, seconds);
        charged from the recorded inference (prediction None) once the fidelity replays."""
        fid = self.fidelity
        if fid is not None and fid.replaying:
            ops, pred = fid.inference_trace(), None
        else:
            ops, pred = collect(self.job.infer(x))
            if fid is not None:
                fid.record_inference(ops)
        now = self.env.now
        cum_t, cum_e = cumulative(self.cost, ops)
        t, energy = cum_t[-1], cum_e[-1]
        self.device.begin(now)
        ram = self.ram
        if ram.policy == "heap":
            ram.place_step(ops, now, cum_t)
        else:
            ram.check_arena("infer", ops, now, cum_t[:-1])
            ram.draw_planned("infer", ops, [now + s for s in cum_t[:-1]], now + t)
        self._pending = (now, energy, ops[-1].name if ops else "inference")
        return (None if pred is None else int(pred)), t

    def finish(self) -> None:
        start, energy, op = self._pending
        self.device.end(start, self.env.now, "inference", energy, op)


_CUMULATIVE: dict[int, tuple[CostModel, list[Op], tuple[list[float], list[float]]]] = {}


def cumulative(cost: CostModel, ops: list[Op]) -> tuple[list[float], list[float]]:
    """``cost.cumulative(ops)``, remembered for the trace objects charged again and again (recorded steps)."""
    hit = _CUMULATIVE.get(id(ops))
    if hit is not None and hit[0] is cost and hit[1] is ops:
        return hit[2]
    out = cost.cumulative(ops)
    if len(_CUMULATIVE) > 256:
        _CUMULATIVE.clear()
    _CUMULATIVE[id(ops)] = (cost, ops, out)
    return out


def energy_between(cum_t: list[float], cum_e: list[float], a: float, b: float) -> float:
    """Energy of the work between progress ``a`` and ``b`` seconds into a trace (linear within an op)."""
    def at(p: float) -> float:
        i = bisect.bisect_right(cum_t, p) - 1
        if i >= len(cum_t) - 1:
            return cum_e[-1]
        i = max(i, 0)
        dt = cum_t[i + 1] - cum_t[i]
        return cum_e[i] + (cum_e[i + 1] - cum_e[i]) * ((p - cum_t[i]) / dt if dt > 0 else 1.0)
    return max(0.0, at(b) - at(a))
