"""Training schedules: when to train and how much (docs/architecture.md §3).

Triggers (``config.TRIGGERS``):
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

import numpy as np
import simpy

from .config import ScheduleConfig
from .device import Device
from .pipeline import InferenceDone, Queues
from .training import Training


def _collect(labels: simpy.Store, recent: deque, n: int):
    """Wait for ``n`` labelled samples from the label queue."""
    for _ in range(n):
        recent.append((yield labels.get()))


def _drain(labels: simpy.Store, recent: deque):
    """Take whatever labelled samples are queued now, without waiting."""
    for _ in range(len(labels.items)):
        recent.append((yield labels.get()))


def _until_charging(env: simpy.Environment, device: Device):
    """Wait until the harvester delivers power (the profile changes on the hour)."""
    for _ in range(25):
        if device.harvest_w(env.now) > 0:
            return
        yield env.timeout((math.floor(env.now / 3600) + 1) * 3600.0 - env.now)


def _until_idle_gap(env: simpy.Environment, device: Device, windows: simpy.Store, period: float, step_s: float,
                    done: InferenceDone):
    """Wait for an idle gap long enough for one step of ``step_s``; False if no gap can ever hold it."""
    if step_s > period:
        return False
    while True:
        if not device.cpu.count and not windows.items:
            nxt = (math.floor(env.now / period + 1e-9) + 1) * period
            if step_s <= nxt - env.now:
                return True
        yield done.event


def trainer(env: simpy.Environment, s: ScheduleConfig, seed: int, queues: Queues, device: Device,
            training: Training, window_period_s: float, done: InferenceDone):
    """The training process: wait for the trigger, then run ``steps`` steps (preemptible)."""
    trigger, batch, steps = s.trigger, s.batch, s.steps
    recent: deque = deque(maxlen=max(s.replay, batch))
    rng = random.Random(seed + 7919)   # batch draws: seeded, cheap
    ckpt_every, max_steps = s.checkpoint_every_steps, s.max_steps
    stats, control, executor, fidelity = training.stats, training.control, training.executor, training.fidelity
    while True:
        if trigger == "periodic":   # on the period's multiples, however long the last round took
            period = s.period_s
            yield env.timeout((math.floor(env.now / period + 1e-9) + 1) * period - env.now)
            yield from _drain(queues.labels, recent)
        else:
            yield from _collect(queues.labels, recent, s.every_n)
            if trigger == "charging":
                yield from _until_charging(env, device)
        if not recent:
            continue
        for _ in range(steps):
            if max_steps and stats.steps >= max_steps:
                return
            if trigger == "charging" and device.harvest_w(env.now) <= 0:
                break
            if trigger == "idle":
                fits = yield from _until_idle_gap(env, device, queues.windows, window_period_s,
                                                  executor.last_step_s, done)
                if not fits:
                    stats.idle_skips += 1
                    break
            n = len(recent)
            idx = rng.sample(range(n), batch) if n >= batch else [rng.randrange(n) for _ in range(batch)]
            if fidelity is not None and fidelity.replaying:
                xs = ys = None   # charged from a recorded step: no sample is needed
            else:
                xs = np.stack([recent[i][0] for i in idx])
                ys = np.array([recent[i][1] for i in idx])
            yield from training.step(xs, ys)
            if control.ended:
                return
            if ckpt_every and stats.steps % ckpt_every == 0:
                yield from training.checkpoint()
                if control.ended:
                    return
        if fidelity is not None:
            fidelity.end_round(env.now)
