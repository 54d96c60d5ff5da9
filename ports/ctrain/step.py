"""The host side of a port: the job, its data order, one traced step and the planner's arena for it."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np


def plan_arena(ops, persistent):
    """The simulator's arena plan for a trace (its public planner function)."""
    from simulator import plan_arena as plan

    return plan(ops, persistent)


@dataclass
class HostRun:
    """A job's first ``steps`` batches, the initial weights, the traced first step and the host losses."""

    job: Any
    initial_state: list[np.ndarray]
    batches: list[tuple[np.ndarray, np.ndarray]]
    ops: list
    persistent: tuple
    plan: Any
    losses: list[float]


def batches_of(job, steps: int, batch: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The job's labelled stream cut into ``steps`` batches of ``batch`` (the order the host trains in)."""
    it = iter(job.labelled_stream())
    out = []
    for _ in range(steps):
        xs, ys = zip(*itertools.islice(it, batch), strict=True)
        out.append((np.stack(xs).astype(np.float32), np.asarray(ys, np.int64)))
    return out


def host_run(job, steps: int, batch: int) -> HostRun:
    """Train the host job ``steps`` steps (it changes), keeping the first step's trace and its arena plan."""
    from workloads import collect

    initial = job.model.state()
    data = batches_of(job, max(steps, 1), batch)
    persistent = tuple(job.persistent_tensors())
    losses, first_ops = [], None
    for xs, ys in data[:max(steps, 1)]:
        ops, loss = collect(job.train_step(xs, ys))
        if first_ops is None:
            first_ops = ops
        losses.append(float(loss))
    plan = plan_arena(first_ops, persistent)
    return HostRun(job, initial, data, first_ops, persistent, plan, losses[:steps])
