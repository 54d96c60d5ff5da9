"""Training on the device: one step or one checkpoint as a SimPy sub-process, and the record of what
training did (docs/architecture.md §3).

A step runs the job's real numpy training (``job.train_step``), and its op trace runs on the CPU
through the preemptible :class:`executor.Executor`. Swap-to-flash ops and checkpoints wear the flash.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workloads.trace import Op, collect

from .config import ScheduleConfig
from .device import Device
from .executor import Executor


@dataclass
class TrainingStats:
    """What training did: steps, MACs, latencies, losses, checkpoints, swaps, the first slow step."""

    steps: int = 0
    replayed: int = 0            # steps charged from a recorded trace (simulator.fidelity); the rest ran real numpy
    macs_total: int = 0
    decode_ops: int = 0          # decode operations of compressed weights (not MACs)
    decode_calls: int = 0
    checkpoints: int = 0
    swap_steps: int = 0
    swap_region_bytes: int = 0
    idle_skips: int = 0          # idle trigger: rounds given up because no idle gap holds a step
    step_latencies: list[float] = field(default_factory=list)          # real steps
    replayed_latency: list[float] = field(default_factory=lambda: [0.0, 0.0])   # replayed steps: [sum, max]
    losses: list[tuple[int, float, float]] = field(default_factory=list)   # (step, sim time, loss)
    first_slow_step: tuple[float, str] | None = None
    first_flash_write: tuple[float, str] | None = None   # (sim time, op) of the first flash write


    def latency_figures(self) -> tuple[float | None, float | None]:
        """(worst, mean) step latency in seconds over every step, real and replayed (None: no step)."""
        if not self.step_latencies and not self.replayed:
            return None, None
        real_n = len(self.step_latencies)
        worst = max(self.step_latencies) if real_n else 0.0
        if not self.replayed:
            return worst, float(np.mean(self.step_latencies))
        total = float(np.sum(self.step_latencies)) + self.replayed_latency[0]
        return max(worst, self.replayed_latency[1]), total / (real_n + self.replayed)


class Training:
    """The job's training steps and checkpoints on the device, counted into ``stats``."""

    def __init__(self, job: Any, executor: Executor, device: Device, step_latency_budget_s: float,
                 control: Any, fidelity: Any = None) -> None:
        self.job, self.executor, self.device = job, executor, device
        self.fidelity = fidelity    # simulator.fidelity.Fidelity: real or recorded steps (None: always real)
        self.step_latency_budget_s = step_latency_budget_s
        self.control = control      # the run's RunControl: a step stops short once the run has ended
        self.stats = TrainingStats()

    def step(self, xs, ys):
        """SimPy sub-process: one training step, preemptible by inference."""
        env, st, fid = self.executor.env, self.stats, self.fidelity
        if fid is not None and fid.replaying:
            ops, loss = fid.step_trace(), None
            st.replayed += 1
        else:
            ops, loss = collect(self.job.train_step(xs, ys))
            if fid is not None:
                fid.record_step(ops, float(loss))
        st.steps += 1
        decode = [op.macs for op in ops if op.kind == "decode"]
        st.macs_total += sum(op.macs for op in ops) - sum(decode)
        st.decode_ops += sum(decode)
        st.decode_calls += len(decode)
        swapped = sum(op.bytes_written for op in ops if op.kind == "flash_write")
        if swapped:   # swap to flash: a scratch region rewritten every step wears the flash
            st.swap_steps += 1
            st.swap_region_bytes = max(st.swap_region_bytes, swapped)
            self.device.flash_write(swapped)
            if st.first_flash_write is None:
                st.first_flash_write = (env.now, next(op.name for op in ops if op.kind == "flash_write"))
        t_req = env.now
        yield from self.executor.run(ops, "training", step=True)
        if self.control.ended:
            return
        latency = env.now - t_req
        if loss is None:
            st.replayed_latency[0] += latency
            st.replayed_latency[1] = max(st.replayed_latency[1], latency)
        else:
            st.step_latencies.append(latency)
            st.losses.append((st.steps, env.now, float(loss)))
        if latency > self.step_latency_budget_s and st.first_slow_step is None:
            st.first_slow_step = (env.now, f"train_step #{st.steps} ({ops[-1].name if ops else ''})")

    def checkpoint(self):
        """SimPy sub-process: write the trainable weights to flash (preemptible)."""
        env, st = self.executor.env, self.stats
        nbytes = int(self.job.trainable_bytes())
        op = Op("checkpoint.flash_write", "flash_write", 0, nbytes, nbytes)
        st.checkpoints += 1
        self.device.flash_write(nbytes)
        if st.first_flash_write is None:
            st.first_flash_write = (env.now, op.name)
        yield from self.executor.run([op], "training")   # the CPU timeline shows it as training work


def checkpoint_bytes(job: Any, schedule: ScheduleConfig) -> int:
    """Flash the schedule's checkpoints take: the trainable weights, if it checkpoints at all."""
    return int(job.trainable_bytes()) if schedule.checkpoint_every_steps else 0
