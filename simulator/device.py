"""The device in the simulation: CPU, power states, battery, harvesting and flash (docs/architecture.md §3).

- CPU: a ``simpy.PreemptiveResource`` of capacity 1. Inference requests with priority 0 and preempts
  training (priority 1). Every stretch of CPU work is a *segment* on the CPU timeline.
- Power states: ``active`` while a segment runs; after it the CPU idles ``idle_timeout_s`` and then
  sleeps until the next segment. Idle/sleep energy is charged from the gaps between segments.
- Battery: a ``simpy.Container`` in joules, drained by each segment's op energy and by idle/sleep time,
  refilled by a harvesting profile (watts per hour of day). Draining more than is left is fatal.
- Flash: bytes written by checkpoints and swaps (the result turns them into wear against endurance).
"""
from __future__ import annotations

import math
from typing import Any

import simpy

from .run_end import BatteryEmpty
from .timeline import SampleLog

PRIO_INFERENCE, PRIO_TRAINING = 0, 1
CPU_LOG_CAP = 200_000    # CPU segments kept for the timeline (a simulated day holds a few thousand)


class Device:
    """CPU + power + battery + flash of one board inside one ``simpy.Environment``."""

    def __init__(self, env: simpy.Environment, profile: Any, *, capacity_j: float, initial_fraction: float = 1.0,
                 idle_timeout_s: float = 0.0, harvest_w_by_hour: list[float] | None = None,
                 horizon_s: float = 86400.0, sample_s: float = 300.0) -> None:
        if capacity_j <= 0:
            raise ValueError(f"battery capacity_j must be > 0 (got {capacity_j})")
        self.env = env
        self.profile = profile
        p = profile.power
        self.active_w = p.active_current_a * p.supply_voltage_v
        self.idle_w = p.idle_current_a * p.supply_voltage_v
        self.sleep_w = p.sleep_current_a * p.supply_voltage_v
        self.idle_timeout_s = idle_timeout_s
        self.harvest = list(harvest_w_by_hour or [])
        self.cpu = simpy.PreemptiveResource(env, capacity=1)
        self.battery = simpy.Container(env, capacity=capacity_j, init=capacity_j * initial_fraction)
        # bookkeeping (all in simulated seconds / joules)
        self._gap_start = 0.0          # when the CPU last became free
        self._charged_until = 0.0      # gap energy charged up to here
        self._harvested_until = 0.0
        self._busy = False
        self._debt: tuple[float, float, float, str] | None = None   # gap energy booked, not yet drawn
        self.time_active_s = self.time_idle_s = self.time_sleep_s = 0.0
        self.energy_active_j = self.energy_idle_j = self.energy_sleep_j = 0.0
        self.harvested_j = 0.0
        self.wasted_harvest_j = 0.0
        self.flash_written_bytes = 0
        self.cpu_log: list[tuple[float, float, str, bool]] = []   # (start, end, task, preempted), the first ones
        self.cpu_log_cap = CPU_LOG_CAP if horizon_s > 86400.0 else float("inf")   # a day or less: every segment
        self.cpu_log_full = False      # segments beyond the cap were left out of cpu_log
        self.busy_by_hour: dict[int, dict[str, float]] = {}        # hour of the run -> task -> busy seconds
        self.battery_log = SampleLog(horizon_s, sample_s)
        self.battery_log.append((0.0, self.battery.level))
        self.today: list[tuple[float, float]] = []                # battery samples since the last day boundary

    # --- energy in and out -------------------------------------------------------------------------

    @property
    def consumed_j(self) -> float:
        return self.energy_active_j + self.energy_idle_j + self.energy_sleep_j

    def harvest_w(self, t: float) -> float:
        """Harvested power at sim time ``t`` (the profile repeats daily)."""
        return self.harvest[int(t // 3600) % 24] if self.harvest else 0.0

    def _harvest_energy(self, a: float, b: float) -> float:
        if not self.harvest or b <= a:
            return 0.0
        e, t = 0.0, a
        while t < b:
            nxt = min(b, (math.floor(t / 3600) + 1) * 3600.0)
            e += self.harvest_w(t) * (nxt - t)
            t = nxt
        return e

    def _flow(self, drain_j: float, at_op: str, t0: float, t1: float) -> None:
        """Harvest up to ``t1`` and take ``drain_j`` for work between t0 and t1, as one net flow.

        Net loss beyond the charge left raises BatteryEmpty at the (linearly interpolated) time
        it ran out; a surplus beyond capacity is counted as wasted harvest.
        """
        h = self._harvest_energy(self._harvested_until, t1)
        self._harvested_until = max(self._harvested_until, t1)
        level, cap = self.battery.level, self.battery.capacity
        net = h - drain_j
        if net < 0 and -net > level:
            frac = level / -net
            if level > 0:
                self.battery.get(level)
            self.harvested_j += h * frac
            raise BatteryEmpty(t0 + (t1 - t0) * frac, at_op)
        if net > 0:
            put = min(net, cap - level)
            self.wasted_harvest_j += net - put
            self.harvested_j += h - (net - put)
            if put > 0:
                self.battery.put(put)
        else:
            self.harvested_j += h
            if net < 0:
                self.battery.get(-net)

    def settle(self, now: float) -> None:
        """Bring harvesting and idle/sleep drain up to ``now`` (no-op for time already charged)."""
        if self._busy or now <= self._charged_until:
            self._flow(0.0, "harvest", self._harvested_until, now)
            return
        a, b = self._charged_until, now
        idle_end = self._gap_start + self.idle_timeout_s
        idle_s = max(0.0, min(b, idle_end) - a)
        sleep_s = (b - a) - idle_s
        self.time_idle_s += idle_s
        self.time_sleep_s += sleep_s
        e_idle, e_sleep = idle_s * self.idle_w, sleep_s * self.sleep_w
        self.energy_idle_j += e_idle
        self.energy_sleep_j += e_sleep
        self._charged_until = now
        self._flow(e_idle + e_sleep, "sleep" if sleep_s else "idle", a, b)

    # --- CPU segments -----------------------------------------------------------------------------

    def begin(self, now: float) -> None:
        """The CPU leaves idle/sleep for work at ``now``.

        Without harvesting, the idle/sleep energy of the gap before is booked now and drawn from
        the battery together with the segment's own energy at ``end`` (one Container event, not two).
        """
        if self.harvest or self._debt is not None:
            self.settle(now)
        elif now > self._charged_until:
            a = self._charged_until
            idle_s = max(0.0, min(now, self._gap_start + self.idle_timeout_s) - a)
            sleep_s = (now - a) - idle_s
            self.time_idle_s += idle_s
            self.time_sleep_s += sleep_s
            e = idle_s * self.idle_w + sleep_s * self.sleep_w
            self.energy_idle_j += idle_s * self.idle_w
            self.energy_sleep_j += sleep_s * self.sleep_w
            self._charged_until = now
            self._debt = (e, a, now, "sleep" if sleep_s else "idle")
        self._busy = True

    def end(self, start: float, now: float, task: str, energy_j: float, op: str = "",
            preempted: bool = False) -> None:
        """A segment of ``task`` ran from ``start`` to ``now`` using ``energy_j``; charge it."""
        self._busy = False
        self._gap_start = self._charged_until = now
        dt = now - start
        self.time_active_s += dt
        self.energy_active_j += energy_j
        if len(self.cpu_log) < self.cpu_log_cap:
            self.cpu_log.append((start, now, task, preempted))
        else:
            self.cpu_log_full = True
        hour = self.busy_by_hour.setdefault(int(start // 3600), {})
        hour[task] = hour.get(task, 0.0) + dt
        debt = self._debt
        if debt is not None:
            self._debt = None
            e_gap, a, b, label = debt
            level = self.battery.level
            if level >= e_gap + energy_j:      # the common case: one draw for the gap and the work
                if e_gap + energy_j > 0:
                    self.battery.get(e_gap + energy_j)
                return
            self._flow(e_gap, label, a, b)     # exact attribution near empty: the gap first, then the work
        self._flow(energy_j, op or task, start, now)

    def sample(self, now: float) -> None:
        """Settle and record the battery level (for the battery timeline)."""
        self.settle(now)
        pending = self._debt[0] if self._debt is not None else 0.0
        self.battery_log.append((now, self.battery.level - pending))
        self.today.append((now, self.battery.level - pending))

    def monitor(self, period_s: float):
        """SimPy process: settle the books and sample the battery every ``period_s``."""
        while True:
            yield self.env.timeout(period_s)
            self.sample(self.env.now)

    def figures(self, round_: Any) -> dict[str, Any]:
        """The device's part of the result: energy and time by power state, flash bytes written."""
        return {"energy_j": {"active": round_(self.energy_active_j), "idle": round_(self.energy_idle_j),
                             "sleep": round_(self.energy_sleep_j), "harvested": round_(self.harvested_j)},
                "time_in_state_s": {"active": round_(self.time_active_s), "idle": round_(self.time_idle_s),
                                    "sleep": round_(self.time_sleep_s)},
                "flash_writes_bytes": self.flash_written_bytes}

    # --- flash -------------------------------------------------------------------------------------

    def flash_write(self, nbytes: int) -> None:
        """Count ``nbytes`` written to flash (a checkpoint or a swap)."""
        self.flash_written_bytes += nbytes
