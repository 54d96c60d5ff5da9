"""Training schedules: when to train and how much (DESIGN.md §3).

Triggers:
- ``every-n``   after every N new labelled samples;
- ``periodic``  every ``period_s`` seconds, on what has arrived since;
- ``idle``      after N new labelled samples, each step only in an idle gap: no inference queued or
                running and the step (as long as the last one) done before the next window arrives,
                so training is never preempted; a step longer than the window period never runs;
- ``charging``  after N new labelled samples, and only while the harvester delivers power.
Each trigger runs ``steps`` training steps of ``batch`` samples drawn (seeded) from the most recent
``replay`` labelled samples; every ``checkpoint_every_steps`` steps the trainable weights go to flash.
"""
from __future__ import annotations

import math
import random
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:   # pragma: no cover
    from .engine import Simulation


def _collect(sim: Simulation, recent: deque, n: int):
    """Wait for ``n`` labelled samples from the label queue."""
    for _ in range(n):
        recent.append((yield sim.q_labels.get()))


def _drain(sim: Simulation, recent: deque):
    """Take whatever labelled samples are queued now, without waiting."""
    for _ in range(len(sim.q_labels.items)):
        recent.append((yield sim.q_labels.get()))


def _until_charging(sim: Simulation):
    """Wait until the harvester delivers power (the profile changes on the hour)."""
    dev, env = sim.device, sim.env
    for _ in range(25):
        if dev.harvest_w(env.now) > 0:
            return
        yield env.timeout((math.floor(env.now / 3600) + 1) * 3600.0 - env.now)


def _until_idle_gap(sim: Simulation):
    """Wait for an idle gap long enough for one step; False if no gap can ever hold it."""
    env, p = sim.env, sim.sc.pipeline
    period = p["window"] / p["sensor_rate_hz"]
    if sim.last_step_s > period:
        return False
    while True:
        if not sim.device.cpu.count and not sim.q_windows.items:
            nxt = (math.floor(env.now / period + 1e-9) + 1) * period
            if sim.last_step_s <= nxt - env.now:
                return True
        yield sim.infer_done


def trainer(sim: Simulation):
    """The training process: wait for the trigger, then run ``steps`` steps (preemptible)."""
    env, s = sim.env, sim.sc.schedule
    trigger, batch, steps = s["trigger"], s["batch"], s["steps"]
    recent: deque = deque(maxlen=max(s["replay"], batch))
    rng = random.Random(sim.sc.seed + 7919)   # batch draws: seeded, cheap
    ckpt_every, max_steps = s["checkpoint_every_steps"], s["max_steps"]
    while True:
        if trigger == "periodic":   # on the period's multiples, however long the last round took
            period = s["period_s"]
            yield env.timeout((math.floor(env.now / period + 1e-9) + 1) * period - env.now)
            yield from _drain(sim, recent)
        else:
            yield from _collect(sim, recent, s["every_n"])
            if trigger == "charging":
                yield from _until_charging(sim)
        if not recent:
            continue
        for _ in range(steps):
            if max_steps and sim.training_steps >= max_steps:
                return
            if trigger == "charging" and sim.device.harvest_w(env.now) <= 0:
                break
            if trigger == "idle":
                fits = yield from _until_idle_gap(sim)
                if not fits:
                    sim.idle_skips += 1
                    break
            n = len(recent)
            idx = rng.sample(range(n), batch) if n >= batch else [rng.randrange(n) for _ in range(batch)]
            xs = np.stack([recent[i][0] for i in idx])
            ys = np.array([recent[i][1] for i in idx])
            yield from sim.train_step(xs, ys)
            if sim.fatal:
                return
            if ckpt_every and sim.training_steps % ckpt_every == 0:
                yield from sim.checkpoint()
                if sim.fatal:
                    return
