"""The stream pipeline, NNStreamer-style: ``sensor -> window -> infer -> sink`` (+ labels to training).

Each stage is a SimPy process that receives ``env``, its config, the queues it reads and writes, and
the :class:`PipelineStats` record it counts into. Stages are joined by bounded ``simpy.Store``s; a
stage that finds the next queue full drops the item and counts it. Inference requests the CPU at
priority 0 and so preempts training (docs/architecture.md §3).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import simpy

from workloads.datasets import UNLABELLED

from .config import PipelineConfig
from .device import PRIO_INFERENCE, Device

MAX_DROP_LOG = 1000


@dataclass
class Queues:
    """The bounded stores between the stages."""

    frames: simpy.Store
    windows: simpy.Store
    results: simpy.Store
    labels: simpy.Store

    @classmethod
    def make(cls, env: simpy.Environment, capacity: int, label_capacity: int) -> Queues:
        return cls(simpy.Store(env, capacity=capacity), simpy.Store(env, capacity=capacity),
                   simpy.Store(env, capacity=capacity), simpy.Store(env, capacity=label_capacity))


class InferenceDone:
    """An event that fires after each inference (the idle trigger waits on it); renewed every time."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.event = env.event()

    def fire(self) -> None:
        self.event.succeed()
        self.event = self.env.event()


@dataclass
class PipelineStats:
    """What the pipeline counted: frames, windows, labels, inferences, deadline misses, drops."""

    frames: int = 0
    dropped_frames: int = 0
    dropped_windows: int = 0
    labels: int = 0
    dropped_labels: int = 0
    inferences: int = 0
    deadline_misses: int = 0
    first_miss_s: float | None = None
    worst_inference_latency_s: float = 0.0
    sunk: int = 0
    online_correct: int = 0
    drop_log: list[tuple[str, float]] = field(default_factory=list)   # (stage, sim time), the first drops
    last_frame_s: float = 0.0    # when the sensor last delivered

    def log_drop(self, stage: str, now: float) -> None:
        if len(self.drop_log) < MAX_DROP_LOG:
            self.drop_log.append((stage, now))

    @property
    def miss_rate(self) -> float:
        return self.deadline_misses / self.inferences if self.inferences else 0.0


def offer(store: simpy.Store, item: Any) -> bool:
    """Put ``item`` if the bounded store has room; False (a drop) if it is full."""
    if len(store.items) >= store.capacity:
        return False
    store.put(item)
    return True


def sensor(env: simpy.Environment, cfg: PipelineConfig, frames_out: simpy.Store, stats: PipelineStats):
    """Emits one DMA block of ``window`` frames every ``window / sensor_rate_hz`` seconds."""
    frames = cfg.window
    period = frames / cfg.sensor_rate_hz
    while True:
        yield env.timeout(period)
        stats.frames += frames
        stats.last_frame_s = env.now
        if not offer(frames_out, env.now):
            stats.dropped_frames += frames
            stats.log_drop("sensor", env.now)


def window(env: simpy.Environment, cfg: PipelineConfig, queues: Queues, stream, stats: PipelineStats,
           fidelity=None):
    """Turns frame blocks into inference inputs (the user's next sample); every k-th carries a label.
    Once the fidelity replays recorded steps, no sample is drawn (inputs are ``None``)."""
    frames, every = cfg.window, cfg.label_every
    n = 0
    while True:
        ready = yield queues.frames.get()
        x, y = (None, None) if fidelity is not None and fidelity.replaying else next(stream)
        n += 1
        labelled = n % every == 0
        if not offer(queues.windows, (ready, x, y)):
            stats.dropped_frames += frames
            stats.dropped_windows += 1
            stats.log_drop("window", env.now)
        if labelled:
            stats.labels += 1
            if not offer(queues.labels, (x, y)):
                stats.dropped_labels += 1
                stats.log_drop("label", env.now)


def infer(env: simpy.Environment, cfg: PipelineConfig, queues: Queues, device: Device, inference,
          done: InferenceDone, stats: PipelineStats):
    """Runs the model on each window at inference priority (``inference``: an ``executor.Inference``);
    counts deadline misses."""
    deadline = cfg.deadline_s
    while True:
        ready, x, y = yield queues.windows.get()
        with device.cpu.request(priority=PRIO_INFERENCE, preempt=True) as req:
            yield req
            pred, seconds = inference.start(x)
            yield env.timeout(seconds)
            inference.finish()
        latency = env.now - ready
        stats.inferences += 1
        if latency > deadline:
            stats.deadline_misses += 1
            if stats.first_miss_s is None:
                stats.first_miss_s = env.now
        stats.worst_inference_latency_s = max(stats.worst_inference_latency_s, latency)
        offer(queues.results, (pred, y))
        done.fire()


def sink(results: simpy.Store, stats: PipelineStats):
    """Consumes predictions; counts online accuracy on the user's stream (real inferences of samples that
    have a label: story unlabelled's ``UNLABELLED`` samples have no truth to compare with)."""
    while True:
        pred, y = yield results.get()
        if pred is None or y == UNLABELLED:
            continue
        stats.sunk += 1
        stats.online_correct += int(pred == y)
