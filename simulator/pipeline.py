"""The stream pipeline, NNStreamer-style: ``sensor -> window -> infer -> sink`` (+ labels to ``train``).

Each stage is a SimPy process; stages are joined by bounded ``simpy.Store``s. A stage that finds the
next queue full drops the item and counts it (``Simulation.dropped_frames``). Inference requests the
CPU at priority 0 and so preempts training.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .device import PRIO_INFERENCE

if TYPE_CHECKING:   # pragma: no cover
    from .engine import Simulation


def offer(store, item) -> bool:
    """Put ``item`` if the bounded store has room; False (a drop) if it is full."""
    if len(store.items) >= store.capacity:
        return False
    store.put(item)
    return True


def sensor(sim: Simulation):
    """Emits one DMA block of ``window`` frames every ``window / sensor_rate_hz`` seconds."""
    env, p = sim.env, sim.sc.pipeline
    frames = p["window"]
    period = frames / p["sensor_rate_hz"]
    while True:
        yield env.timeout(period)
        sim.frames += frames
        if not offer(sim.q_frames, env.now):
            sim.dropped_frames += frames
            sim.log_drop("sensor")


def window(sim: Simulation):
    """Turns frame blocks into inference inputs (the user's next sample); every k-th carries a label."""
    p = sim.sc.pipeline
    frames, every = p["window"], p["label_every"]
    stream = sim.stream
    n = 0
    while True:
        ready = yield sim.q_frames.get()
        x, y = next(stream)
        n += 1
        labelled = n % every == 0
        if not offer(sim.q_windows, (ready, x, y)):
            sim.dropped_frames += frames
            sim.dropped_windows += 1
            sim.log_drop("window")
        if labelled:
            sim.labels += 1
            if not offer(sim.q_labels, (x, y)):
                sim.dropped_labels += 1
                sim.log_drop("label")


def infer(sim: Simulation):
    """Runs the model on each window at inference priority; counts deadline misses."""
    env, deadline = sim.env, sim.sc.pipeline["deadline_s"]
    while True:
        ready, x, y = yield sim.q_windows.get()
        with sim.device.cpu.request(priority=PRIO_INFERENCE, preempt=True) as req:
            yield req
            pred, seconds = sim.run_inference(x)
            yield env.timeout(seconds)
            sim.end_inference()
        latency = env.now - ready
        sim.inferences += 1
        if latency > deadline:
            sim.deadline_misses += 1
            if sim.first_miss_s is None:
                sim.first_miss_s = env.now
        sim.worst_inference_latency_s = max(sim.worst_inference_latency_s, latency)
        offer(sim.q_results, (pred, y))
        sim.infer_done.succeed()
        sim.infer_done = env.event()


def sink(sim: Simulation):
    """Consumes predictions; counts online accuracy on the user's stream."""
    while True:
        pred, y = yield sim.q_results.get()
        sim.sunk += 1
        sim.online_correct += int(pred == y)
