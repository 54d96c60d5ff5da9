"""Long horizons: repeated days charged as a whole (docs/architecture.md §3).

A run longer than a day is simulated day by day. At each day boundary the counters of every part
(pipeline, training, executor, device, battery) are snapshotted. Once every step and inference is charged
from records (``simulator.fidelity``) and whole days have run that way, the days left are charged as a
whole from the mean of the last template days: one day when the last two days did exactly the same (counts
equal, energy within ``SAME_REL``, same phase of the training rounds and the sensor at the day boundaries),
two when the last two pairs of days did, else the shortest window of up to ``MAX_TEMPLATE_DAYS`` that ends
in the phase it began (one period of the schedule), else the mean of ``MAX_TEMPLATE_DAYS`` days.
Charged: counts, MACs, energy by power state, harvest, flash bytes, busy seconds per hour of day, the
memory pattern and the battery's course through the day. The charge
stops exactly where the battery would run empty, found on the last simulated day's battery course (sampled
every ``battery.sample_s``, linear in between) shifted by the mean daily drain, and the run ends there.
"""
from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .run_end import RunEnded
from .timeline import StreamingMemTimeline

if TYPE_CHECKING:   # pragma: no cover
    from .simulation import Simulation

DAY_S = 86400.0
YEAR_S = 365.0 * DAY_S
TEMPLATE_DAYS = 4          # the ETA's bound: days simulated after replay starts, when a period shows by then
MAX_TEMPLATE_DAYS = 6      # at most: the mean of this many days when no window ends in the phase it began
SAME_REL = 1e-6
PHASE_TOL_S = 1.0          # phases equal up to preemption jitter (ms); a different alignment differs by far more
_PIPELINE = ("frames", "dropped_frames", "dropped_windows", "labels", "dropped_labels", "inferences",
             "deadline_misses")
_DEVICE = ("energy_active_j", "energy_idle_j", "energy_sleep_j", "time_active_s", "time_idle_s", "time_sleep_s",
           "harvested_j", "wasted_harvest_j", "flash_written_bytes")
_NOT_COUNTS = ("swap_region_bytes",)   # training stats that are maxima, not counts


class DayCharger:
    """Snapshots at day boundaries, and the charge of the remaining days from the last template days."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.snaps: dict[int, dict[str, float]] = {0: self._snapshot()}
        self.day_profiles: dict[int, list[tuple[float, float]]] = {}
        self.days_charged = 0.0
        self.template = 0
        self.first_day: dict[str, Any] | None = None

    # --- snapshots -----------------------------------------------------------------------------------

    def _training_counts(self) -> list[str]:
        tr = self.sim.training.stats
        return [f.name for f in dataclasses.fields(tr)
                if f.type in ("int", int) and f.name not in _NOT_COUNTS]

    def _snapshot(self) -> dict[str, float]:
        sim = self.sim
        dev, st = sim.device, sim.pipeline_stats
        snap = {f"p.{k}": float(getattr(st, k)) for k in _PIPELINE}
        snap.update({f"d.{k}": float(getattr(dev, k)) for k in _DEVICE})
        if sim.training is not None:
            tr = sim.training.stats
            snap.update({f"t.{k}": float(getattr(tr, k)) for k in self._training_counts()})
            snap["t.replayed_latency_sum"] = tr.replayed_latency[0]
            snap["x.preemptions"] = float(sim.executor.preemptions)
        pending = dev._debt[0] if dev._debt is not None else 0.0
        snap["level"] = dev.battery.level - pending
        now = sim.env.now   # phases: how long ago the last round ended and the sensor last delivered
        snap["phase.round"] = min(now - sim.fidelity.last_round_s, DAY_S + 1.0)   # no round for a day: stale
        snap["phase.sensor"] = now - st.last_frame_s
        return snap

    def day_boundary(self, day: int) -> None:
        """Day ``day`` has just been simulated: settle the device's books and snapshot."""
        sim = self.sim
        dev, now = sim.device, sim.env.now
        dev.settle(now)
        snap = self._snapshot()
        self.snaps[day] = snap
        self.day_profiles[day] = [*dev.today, (now, snap["level"])]
        self.day_profiles.pop(day - MAX_TEMPLATE_DAYS - 1, None)
        self.snaps.pop(day - MAX_TEMPLATE_DAYS - 1, None)
        dev.today = []
        if day == 1:
            self.first_day = self._first_day(snap)

    def _first_day(self, snap: dict[str, float]) -> dict[str, Any]:
        sim = self.sim
        consumed = snap["d.energy_active_j"] + snap["d.energy_idle_j"] + snap["d.energy_sleep_j"]
        writes = max(snap.get("t.checkpoints", 0.0), snap.get("t.swap_steps", 0.0))
        wear = writes / DAY_S * YEAR_S / sim.profile.flash.endurance_cycles
        return {"energy_j": round(consumed, 6), "energy_per_day_j": round(consumed, 6),
                "harvested_j": round(snap["d.harvested_j"], 6), "battery_charge_j": round(snap["level"], 6),
                "flash_writes_bytes": int(snap["d.flash_written_bytes"]), "flash_wear_per_year": round(wear, 9),
                "training_steps": int(snap.get("t.steps", 0)), "inferences": int(snap["p.inferences"])}

    # --- the charge ------------------------------------------------------------------------------------

    def ready(self, day: int) -> int:
        """How many template days before ``day`` the days after it can be charged from (0: not yet)."""
        sim = self.sim
        fid = sim.fidelity
        if not (fid.replaying and fid.replay_from_s is not None and sim.control.ended is None
                and sim.sc.duration_s - day * DAY_S >= DAY_S):
            return 0
        replay_days = day - math.ceil(fid.replay_from_s / DAY_S - 1e-9)   # whole days charged from records
        for m in (1, 2):   # the template days are charged from records (or cost the same: uniform steps);
            if (replay_days >= m or fid.uniform) and self._same(day - 2 * m, day - m, day):   # the days compared
                return m                                                                     # with them may be real
        for m in range(3, min(replay_days, MAX_TEMPLATE_DAYS) + 1):   # a window that ends in the phase it began
            if day - m in self.snaps and self._phase_equal(self.snaps[day - m], self.snaps[day]):
                return m
        return MAX_TEMPLATE_DAYS if replay_days >= MAX_TEMPLATE_DAYS and day - MAX_TEMPLATE_DAYS in self.snaps else 0

    @staticmethod
    def _phase_equal(a: dict[str, float], b: dict[str, float]) -> bool:
        return all(abs(a[k] - b[k]) <= PHASE_TOL_S for k in b if k.startswith("phase."))

    def _same(self, a: int, b: int, c: int) -> bool:
        """Whether days a..b did what days b..c did: equal counts, energy and drain within SAME_REL."""
        if not all(k in self.snaps for k in (a, b, c)):
            return False
        sa, sb, sc = self.snaps[a], self.snaps[b], self.snaps[c]
        for k in sc:
            if k.startswith("phase."):
                if abs(sc[k] - sb[k]) > PHASE_TOL_S or abs(sb[k] - sa[k]) > PHASE_TOL_S:
                    return False
                continue
            if k in ("t.replayed", "t.replayed_latency_sum"):   # how steps were computed, not what happened
                continue
            x, y = sb[k] - sa[k], sc[k] - sb[k]
            if k.startswith(("p.", "t.", "x.")):
                if x != y:
                    return False
            elif abs(x - y) > SAME_REL * max(abs(x), abs(y), 1e-12):
                return False
        return True

    def charge(self, day: int, template: int = TEMPLATE_DAYS) -> None:
        """Charge the days from ``day`` to the horizon (or to where the battery runs empty) from the
        ``template`` days before it."""
        sim = self.sim
        dev, horizon = sim.device, sim.sc.duration_s
        now = day * DAY_S
        self.template = template
        a, b = self.snaps[day - template], self.snaps[day]
        per_day = {k: (b[k] - a[k]) / template for k in b if not k.startswith("phase.")}
        stop_s, empty = horizon, None
        level0, cap = b["level"], dev.battery.capacity
        prof = self.day_profiles[day]
        start_level = self.snaps[day - 1]["level"]
        t_prof = np.array([t - (now - DAY_S) for t, _ in prof])
        rel = np.array([v - start_level for _, v in prof])
        drain = per_day["level"]
        if drain < 0 or level0 + rel.min() <= 0:
            j = max(0, math.ceil((-rel.min() - level0) / drain)) if drain < 0 else 0
            v = level0 + j * drain + rel
            i = int(np.argmax(v <= 0)) if (v <= 0).any() else -1
            if i >= 0:
                prev_t, prev_v = (t_prof[i - 1], v[i - 1]) if i > 0 else (0.0, level0 + j * drain)
                frac = prev_v / (prev_v - v[i]) if prev_v > v[i] else 1.0
                t_empty = now + j * DAY_S + prev_t + (t_prof[i] - prev_t) * frac
                if t_empty < horizon:
                    stop_s, empty = t_empty, t_empty
        stop_s = float(stop_s)
        days = (stop_s - now) / DAY_S
        self.days_charged = days
        self._apply(b, per_day, days)
        self._timelines(day, now, stop_s, days, level0, drain, rel, t_prof, cap)
        self._evaluations(now, stop_s, b, per_day)
        level = 0.0 if empty is not None else min(cap, max(0.0, level0 + drain * days))
        self._set_level(level)
        if empty is not None:
            sim.control.end(RunEnded("battery_empty", empty, "a repeated day",
                                     f"battery empty at t={empty:.1f} s during a repeated day (charged as a "
                                     f"whole from simulated days {day - template + 1}-{day})"), dev)

    def _apply(self, b: dict[str, float], per_day: dict[str, float], days: float) -> None:
        sim = self.sim

        def new(k: str) -> float:
            return b[k] + per_day[k] * days

        for k in _PIPELINE:
            setattr(sim.pipeline_stats, k, int(round(new(f"p.{k}"))))
        for k in _DEVICE:
            v = new(f"d.{k}")
            setattr(sim.device, k, int(round(v)) if k == "flash_written_bytes" else v)
        tr = sim.training.stats
        for k in self._training_counts():
            setattr(tr, k, int(round(new(f"t.{k}"))))
        tr.replayed_latency[0] = new("t.replayed_latency_sum")
        sim.executor.preemptions = int(round(new("x.preemptions")))
        every = sim.sc.schedule.checkpoint_every_steps
        if every:   # a checkpoint every N steps: counted from the steps, not from the template's mean
            ckpt = int(b["t.checkpoints"]) + tr.steps // every - int(b["t.steps"]) // every
            ckpt_bytes = int(sim.job.trainable_bytes())
            flash = (b["d.flash_written_bytes"] + (ckpt - b["t.checkpoints"]) * ckpt_bytes
                     + (new("d.flash_written_bytes") - b["d.flash_written_bytes"]
                        - per_day["t.checkpoints"] * days * ckpt_bytes))
            tr.checkpoints, sim.device.flash_written_bytes = ckpt, int(round(flash))

    def _set_level(self, level: float) -> None:
        dev = self.sim.device
        pending = dev._debt[0] if dev._debt is not None else 0.0
        cur = dev.battery.level - pending
        if level < cur:
            dev.battery.get(min(dev.battery.level, cur - level))
        elif level > cur:
            dev.battery.put(min(dev.battery.capacity - dev.battery.level, level - cur))

    def _timelines(self, day: int, now: float, stop_s: float, days: float, level0: float, drain: float,
                   rel: np.ndarray, t_prof: np.ndarray, cap: float) -> None:
        sim = self.sim
        dev = sim.device
        whole = math.ceil(days)
        # battery: the last simulated day's course, shifted by the mean daily drain
        log = dev.battery_log
        sparse = not log.exact and log.bucket_s >= DAY_S / 4
        for j in range(whole):
            t = now + j * DAY_S + t_prof
            v = np.clip(level0 + j * drain + rel, 0.0, cap)
            keep = t < stop_s
            t, v = t[keep], v[keep]
            if sparse and len(t) > 2:
                lo = int(np.argmin(v))
                idx = sorted({lo, len(t) - 1})
                t, v = t[idx], v[idx]
            for x, y in zip(t.tolist(), v.tolist(), strict=True):
                log.append((x, y))
        # CPU: busy seconds per hour of day from the template days; segments are listed only as simulated
        hours: dict[int, dict[str, float]] = {}
        template = self.template
        for h in range((day - template) * 24, day * 24):
            for task, s in dev.busy_by_hour.get(h, {}).items():
                d = hours.setdefault(h % 24, {})
                d[task] = d.get(task, 0.0) + s / template
        first_h, last_h = int(now // 3600), int(math.ceil(stop_s / 3600))
        for h in range(first_h, last_h):
            frac = min(1.0, (stop_s - h * 3600) / 3600)
            if hours.get(h % 24):
                dev.busy_by_hour[h] = {k: v * frac for k, v in hours[h % 24].items()}
        dev.cpu_log_full = True
        # memory: the last simulated day's samples (lowest, highest, last per bucket), day after day
        tl = sim.ram.timeline if sim.ram else None
        if isinstance(tl, StreamingMemTimeline):
            tl.fold(float("inf"))
            pts = sorted({t: v for bk in tl.buckets.values() for t, v in bk if now - DAY_S < t <= now}.items())
            if pts:
                ts = np.array([t for t, _ in pts]) - (now - DAY_S)
                vals = np.stack([np.pad(v, (0, len(tl.kinds) - len(v))) for _, v in pts])
                for j in range(whole):
                    t = now + j * DAY_S + ts
                    keep = t < stop_s
                    tl.add_samples(t[keep], vals[keep])

    def _evaluations(self, now: float, stop_s: float, b: dict[str, float], per_day: dict[str, float]) -> None:
        """The evaluator's points in the charged days: the weights no longer change, so one evaluation."""
        sim = self.sim
        points = sim.sc.eval.points
        every = sim.sc.duration_s / points
        done = len(sim.evals) - 1
        ev = None
        for m in range(done + 1, points):
            t = m * every
            if t >= stop_s:
                break
            if t <= now:
                continue
            ev = ev or sim.job.evaluate()
            steps = int(round(b.get("t.steps", 0.0) + per_day.get("t.steps", 0.0) * (t - now) / DAY_S))
            sim.evals.append({"step": steps, "time_s": round(t, 6), "user_accuracy": float(ev["user_accuracy"]),
                              "retention_accuracy": float(ev["retention_accuracy"])})
