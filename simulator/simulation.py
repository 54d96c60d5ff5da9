"""One simulation run: the environment, the device, the job, RAM, and the processes wired together
(docs/architecture.md §3).

Each part owns its state and its part of the result: the device its energy and CPU log, ``Ram`` its
memory figures and timeline, the pipeline and training their stats records. ``Simulation.result()``
assembles them (``simulator.result``).
"""
from __future__ import annotations

import copy
import itertools
import math
from typing import Any

import numpy as np
import simpy

from workloads.trace import Op, collect

from . import pipeline, schedule
from .cost import CostModel
from .device import Device
from .executor import Executor, Inference
from .fastforward import DAY_S, TEMPLATE_DAYS, DayCharger
from .fidelity import Fidelity
from .pipeline import InferenceDone, PipelineStats, Queues
from .ram import Ram
from .result import assemble_result
from .run_end import BatteryEmpty, RunEnded
from .scenario import Scenario
from .timeline import EXACT_HORIZON_S, StreamingMemTimeline
from .training import Training


class RunControl:
    """Whether and how the run ended early: the first run-ending event, and the event that stops it."""

    def __init__(self, env: simpy.Environment) -> None:
        self.ended: RunEnded | None = None
        self.stop = env.event()

    def end(self, e: RunEnded, device: Device) -> None:
        if self.ended is None:
            self.ended = e
            log = device.battery_log
            if e.kind == "battery_empty" and (not log or log[-1][0] <= e.time_s):
                log.append((e.time_s, 0.0))   # the battery timeline ends where the charge did
            if not self.stop.triggered:
                self.stop.succeed()


class Simulation:
    """A scenario run on one device with one training job."""

    def __init__(self, sc: Scenario, profile: Any, job: Any, probe_job: Any = None, memo: bool = True) -> None:
        self.sc, self.profile, self.job = sc, profile, job
        self.memo = memo              # heap policy: apply recorded repeated steps (results identical either way)
        self.probe_job = probe_job    # an identical job to trace one step on (default: a deep copy)
        self.rt = profile.runtime_for(sc.runtime)
        self.env = env = simpy.Environment()
        b = sc.battery
        cap_mah = b.capacity_mah or profile.battery.capacity_mah
        volt = b.voltage_v or profile.battery.voltage_v
        self.capacity_j = cap_mah * 3.6 * volt
        self.device = Device(env, profile, capacity_j=self.capacity_j, initial_fraction=b.initial_fraction,
                             idle_timeout_s=sc.power.idle_timeout_s, harvest_w_by_hour=list(b.harvest_w_by_hour),
                             horizon_s=sc.duration_s, sample_s=b.sample_s)
        self.cost = CostModel(profile, sc.runtime)
        q = sc.pipeline.queue_capacity
        self.queues = Queues.make(env, q, sc.schedule.every_n + q)
        self.infer_done = InferenceDone(env)
        self.control = RunControl(env)
        self.pipeline_stats = PipelineStats()
        self.stream = iter(job.labelled_stream())
        self.evals: list[dict[str, Any]] = []
        self.fidelity = Fidelity(sc.fidelity, sc.seed)
        self.ram: Ram | None = None
        self.executor: Executor | None = None
        self.training: Training | None = None
        self.charger: DayCharger | None = None

    @property
    def ended(self) -> RunEnded | None:
        return self.control.ended

    def _guard(self, gen):
        """Wrap a process: battery-empty and out-of-memory end the run, recorded as its end."""
        try:
            yield from gen
        except BatteryEmpty as b:
            self.control.end(b.run_ended(), self.device)
        except RunEnded as f:
            self.control.end(f, self.device)

    def _evaluator(self, points: int):
        every = self.sc.duration_s / points
        for _k in range(1, points):
            yield self.env.timeout(every)
            self._evaluate()

    def _evaluate(self, at: float | None = None) -> None:
        ev = self.job.evaluate()
        steps = self.training.stats.steps if self.training else 0
        self.evals.append({"step": steps, "time_s": round(self.env.now if at is None else at, 6),
                           "user_accuracy": float(ev["user_accuracy"]),
                           "retention_accuracy": float(ev["retention_accuracy"])})

    def setup(self) -> tuple[list[Op], list[Op]]:
        """Trace one training step (on a copy of the job) and one inference, and lay out RAM."""
        sc = self.sc
        train_ops, infer_ops = probe_ops(self.probe_job or self.job, sc.schedule.batch,
                                         copy_first=self.probe_job is None)
        self.ram = Ram(self.rt, self.profile.memory.ram_bytes, sc.schedule.memory_policy, sc.schedule.heap_policy,
                       tuple(self.job.persistent_tensors()), memo=self.memo, horizon_s=sc.duration_s)
        heap = self.ram.heap
        self.cost.collect_garbage(heap.capacity_bytes, sum(heap.size_for(t.nbytes) for t in self.ram.persistent),
                                  heap.size_for)
        self.executor = Executor(self.env, self.device, self.ram, self.cost)
        self.executor.last_step_s = self.cost.cumulative(train_ops)[0][-1]
        self.training = Training(self.job, self.executor, self.device, sc.budgets.step_latency_s, self.control,
                                 self.fidelity)
        self.ram.setup(train_ops, infer_ops)
        return train_ops, infer_ops

    def _processes(self):
        env, sc, q, dev, st = self.env, self.sc, self.queues, self.device, self.pipeline_stats
        inference = Inference(env, dev, self.ram, self.cost, self.job, self.fidelity)
        yield pipeline.sensor(env, sc.pipeline, q.frames, st)
        yield pipeline.window(env, sc.pipeline, q, self.stream, st, self.fidelity)
        yield pipeline.infer(env, sc.pipeline, q, dev, inference, self.infer_done, st)
        yield pipeline.sink(q.results, st)
        yield schedule.trainer(env, sc.schedule, sc.seed, q, dev, self.training, sc.pipeline.window_period_s,
                               self.infer_done)

    def run(self, progress: bool = False) -> None:
        """Simulate ``duration_s`` (or until a run-ending event)."""
        env, dur = self.env, self.sc.duration_s
        self._evaluate()
        try:
            self.setup()
        except RunEnded as f:
            self.control.end(f, self.device)
            return
        for proc in self._processes():
            env.process(self._guard(proc))
        env.process(self._guard(self.device.monitor(self.sc.battery.sample_s)))
        env.process(self._evaluator(self.sc.eval.points))
        if dur <= EXACT_HORIZON_S:
            self._run_chunks(progress)
        else:
            self._run_days(progress)
        charged = self.charger is not None and self.charger.days_charged > 0
        if not self.control.ended and not charged:
            try:
                self.device.sample(env.now)
            except BatteryEmpty as b:
                self.control.end(b.run_ended(), self.device)
        self._evaluate(self.end_s if charged else None)

    def _run_chunks(self, progress: bool) -> None:
        """Up to a day: the horizon in 100 chunks (progress), every event simulated."""
        env, dur = self.env, self.sc.duration_s
        chunks = 100
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=chunks, desc=f"simulating {self.sc.name} ({dur / 3600:g} h)", unit="%", leave=False)
        for k in range(1, chunks + 1):
            if self.control.ended:
                break
            env.run(until=env.timeout(dur * k / chunks - env.now) | self.control.stop)
            if bar:
                bar.update(1)
        if bar:
            bar.close()

    def _run_days(self, progress: bool) -> None:
        """Beyond a day: day by day, timelines folded as they go, repeated days charged as a whole
        (``simulator.fastforward``) once steps and inferences are charged from records."""
        env, dur = self.env, self.sc.duration_s
        days = math.ceil(dur / DAY_S)
        self.charger = charger = DayCharger(self)
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=days, desc=f"simulating {self.sc.name} ({dur / DAY_S:g} days)", unit="day", leave=False)
        tl = self.ram.timeline
        for k in range(1, days + 1):
            if self.control.ended:
                break
            env.run(until=env.timeout(min(k * DAY_S, dur) - env.now) | self.control.stop)
            busy = self.executor.busy_since
            if isinstance(tl, StreamingMemTimeline):
                tl.fold(env.now if busy is None else min(busy, env.now))
            if self.control.ended or k * DAY_S >= dur:
                break
            charger.day_boundary(k)
            template = charger.ready(k) if self.sc.fidelity.mode == "auto" else 0
            if template:
                charger.charge(k, template)
                if bar:
                    bar.update(bar.total - bar.n)
                break
            if bar:
                fid = self.fidelity
                if fid.mode == "auto" and fid.replaying:   # the ETA: at most TEMPLATE_DAYS more days simulated
                    last = min(days, math.ceil(fid.replay_from_s / DAY_S) + TEMPLATE_DAYS)
                    if last < bar.total:
                        bar.total = last
                        bar.set_description(f"simulating {self.sc.name} ({dur / DAY_S:g} days; after day {last} "
                                            f"repeated days are charged as a whole)")
                bar.update(1)
        if bar:
            bar.close()

    @property
    def end_s(self) -> float:
        return self.control.ended.time_s if self.control.ended else self.sc.duration_s

    def horizon_figures(self) -> dict[str, Any] | None:
        """Runs beyond a day: days simulated event by event and days charged as a whole, the first day."""
        c = self.charger
        if c is None:
            return None
        charged = round(c.days_charged, 6)
        return {"days_simulated": round(self.end_s / DAY_S - charged, 6), "days_charged": charged,
                "template_days": c.template,
                "replay_from_s": None if self.fidelity.replay_from_s is None else round(self.fidelity.replay_from_s, 6),
                "first_day": c.first_day}

    def result(self) -> dict[str, Any]:
        """The result dict of the finished run: figures, verdict, timelines (``simulator/result.py``)."""
        return assemble_result(self.sc, self.profile, self.job, end_s=self.end_s, capacity_j=self.capacity_j,
                               ended=self.control.ended, device=self.device, ram=self.ram,
                               pipeline=self.pipeline_stats,
                               training=self.training.stats if self.training else None,
                               preemptions=self.executor.preemptions if self.executor else 0, evals=self.evals,
                               horizon=self.horizon_figures())


def probe_ops(job: Any, batch: int, copy_first: bool = True) -> tuple[list[Op], list[Op]]:
    """One training step's and one inference's ops, traced on a deep copy of ``job`` (or on ``job``
    itself, a spare twin, with ``copy_first=False``) so the simulated job's weights stay untouched."""
    probe = copy.deepcopy(job) if copy_first else job
    stream = iter(probe.labelled_stream())
    xs, ys = zip(*itertools.islice(stream, batch), strict=False)
    infer_ops, _ = collect(probe.infer(xs[0]))
    train_ops, _ = collect(probe.train_step(np.stack(xs), np.array(ys)))
    return train_ops, infer_ops
