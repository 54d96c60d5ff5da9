"""Simulator benchmark (issue #4): how much does the simulation add to the training it carries?

Printed side by side, in one run:

1. training alone vs in simulation: the same training steps (same job, same batches) run once by
   a plain loop (stack the batch's rows, drain ``job.train_step``) and once inside a SimPy scenario that is almost all training
   (a window every 10 minutes, periodic triggers of many steps). Target: in-sim / alone <= 1.5x.
2. events per second: the demo day's SimPy events over its wall time, beside a bare SimPy loop
   (one process yielding ``env.timeout``) processing the same number of events. The simulation's
   figure includes the numpy inference/training it carries, so it is lower by design; a second
   figure replays one recorded step/inference instead, isolating the simulator's own cost.
3. the demo day (embedded ``demo.toml``, technique variants left out): simulated seconds per wall
   second.
4. long horizons (issue #13): ``edgesim plan demo.toml`` (technique variants included, a 20 Ah battery
   that outlives the year) at 1, 30 and 365 days, each in a fresh process: wall time, peak RSS (of the
   process and its pool workers), their ratios to the 1-day run, steps real/charged from records, days
   charged as a whole, and the first day's energy, battery and flash wear beside the 1-day run's.
   Targets: a year in <= 60 s on 2 cores, RSS <= 1.3x and wall <= 20x the 1-day run's, first day within 1 %.

Run: ``.venv/bin/python benchmarks/simulator.py [--repeat 3] [--only horizons] [--set device=my.toml]``
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import simpy  # noqa: E402
from tqdm import tqdm  # noqa: E402

from device_profiles.loader import load_profile  # noqa: E402
from simulator.inputs import job_for  # noqa: E402
from simulator.scenario import SCENARIO_DIR, apply_overrides, load_scenario, scenario_dict  # noqa: E402
from simulator.simulation import Simulation  # noqa: E402
from workloads.trace import collect  # noqa: E402


def training_scenario(model: str, policy: str, runtime: str) -> dict:
    """A scenario that is almost all training: one window per 600 s, 60 steps every 600 s, 4 hours."""
    return {"name": f"bench-{model}-{policy}", "device": "stm32f405-pyboard", "runtime": runtime,
            "duration_s": 14400.0, "seed": 3, "workload": {"model": model, "lr": 0.005},
            "pipeline": {"sensor_rate_hz": 1 / 600, "window": 1, "label_every": 1},
            "schedule": {"trigger": "periodic", "period_s": 600.0, "batch": 8, "steps": 60, "replay": 64,
                         "memory_policy": policy},
            "eval": {"points": 1}}


def simulate_timed(sc, profile) -> tuple[float, Simulation]:
    job, probe = job_for(sc), job_for(sc)
    sim = Simulation(sc, profile, job, probe_job=probe)
    t = time.perf_counter()
    sim.run()
    return time.perf_counter() - t, sim


def alone_timed(sc, batches: list[tuple[list, list]], infers: list[np.ndarray]) -> float:
    """The same work without the simulator: the probe step, the batches (stacked from their rows, as
    any training loop does), the inferences, 2 evaluations."""
    job, probe = job_for(sc), job_for(sc)
    t = time.perf_counter()
    job.evaluate()
    stream = iter(probe.labelled_stream())
    xs, ys = zip(*itertools.islice(stream, sc.schedule.batch), strict=True)
    collect(probe.infer(xs[0]))
    collect(probe.train_step(np.stack(xs), np.array(ys)))
    for x in infers:
        collect(job.infer(x))
    for rows, labels in batches:     # the same training loop: stack the batch, run the step
        collect(job.train_step(np.stack(rows), np.array(labels)))
    job.evaluate()
    return time.perf_counter() - t


class Recorder:
    """Wraps a job to record the batches and inference inputs the simulation feeds it."""

    def __init__(self, job) -> None:
        self.job, self.batches, self.infers = job, [], []

    def __getattr__(self, name):
        return getattr(self.job, name)

    def train_step(self, xs, ys):
        self.batches.append((list(xs.copy()), ys.tolist()))
        return self.job.train_step(xs, ys)

    def infer(self, x):
        self.infers.append(np.array(x, copy=True))
        return self.job.infer(x)


def overhead(model: str, policy: str, runtime: str, repeat: int) -> tuple[float, float, int]:
    sc = load_scenario(training_scenario(model, policy, runtime))
    profile = load_profile(sc.device)
    rec = Recorder(job_for(sc))
    Simulation(sc, profile, rec, probe_job=job_for(sc)).run()
    sims, alones = [], []
    for _ in range(repeat):
        sims.append(simulate_timed(sc, profile)[0])
        alones.append(alone_timed(sc, rec.batches, rec.infers))
    return min(alones), min(sims), len(rec.batches)


class Canned:
    """A job whose steps and inferences replay one recorded trace: the simulator's own cost, isolated."""

    def __init__(self, job, batch: int) -> None:
        self.job = job
        xs, ys = zip(*itertools.islice(job.labelled_stream(), batch), strict=True)
        self.infer_ops, _ = collect(job.infer(xs[0]))
        self.train_ops, _ = collect(job.train_step(np.stack(xs), np.array(ys)))

    def __getattr__(self, name):
        return getattr(self.job, name)

    def infer(self, x):
        yield from self.infer_ops
        return 0

    def train_step(self, xs, ys):
        yield from self.train_ops
        return 0.0


def bare_simpy(n_events: int) -> float:
    env = simpy.Environment()

    def proc():
        for _ in range(n_events):
            yield env.timeout(1)

    env.process(proc())
    t = time.perf_counter()
    env.run()
    return time.perf_counter() - t


def count_events(sim: Simulation) -> list[int]:
    n = [0]
    step = sim.env.step

    def counted():
        n[0] += 1
        step()

    sim.env.step = counted
    return n


def plan_in_child(days: float, extra: list[str], out: Path) -> tuple[float, float, dict]:
    """``edgesim plan demo.toml`` for ``days`` in a fresh process: (wall s, peak RSS MB, result)."""
    cmd = [sys.executable, "-m", "simulator.cli", "plan", str(SCENARIO_DIR / "demo.toml"),
           "--set", f"duration_s={days * 86400:g}", "--set", "battery.capacity_mah=20000", "--out", str(out)]
    for kv in extra:
        cmd += ["--set", kv]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=Path(__file__).resolve().parent.parent)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) not in (0, 3):
        raise SystemExit(f"benchmark: {' '.join(cmd)} exited {os.waitstatus_to_exitcode(status)}")
    return wall, usage.ru_maxrss / 1024, json.loads((out / "result.json").read_text())


def horizons(days_list: list[float], extra: list[str]) -> None:
    print("4. long horizons: edgesim plan demo.toml --set duration_s=D*86400 --set battery.capacity_mah=20000"
          + "".join(f" --set {kv}" for kv in extra) + f"  ({os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f} at the start)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for days in tqdm(days_list, desc="horizons", unit="run", leave=False):
            rows.append((days, *plan_in_child(days, extra, Path(tmp) / f"d{days:g}")))
    base_wall, base_rss, base = rows[0][1], rows[0][2], rows[0][3]
    print(f"   {'days':>5} {'wall (s)':>9} {'x 1 day':>8} {'peak RSS (MB)':>14} {'x 1 day':>8} {'steps real':>11} "
          f"{'charged':>9} {'days charged':>13} {'fits':>5}")
    for days, wall, rss, r in rows:
        h = r.get("horizon") or {}
        print(f"   {days:>5g} {wall:>9.1f} {wall / base_wall:>7.2f}x {rss:>14.0f} {rss / base_rss:>7.2f}x "
              f"{r['training_steps_real']:>11,} {r['training_steps_replayed']:>9,} {h.get('days_charged', 0):>13g} "
              f"{str(r['fits']):>5}")
    for days, _, _, r in rows:
        if r.get("fatal"):        # e.g. the battery ran empty before the horizon: say when, so a short run shows
            f = r["fatal"]
            print(f"   {days:g} days: the run ended at day {f.get('time_s', 0) / 86400:.1f}: {f.get('kind')} "
                  f"({f.get('message', '')[:100]})")
    print("   targets: 365 days <= 60 s, RSS <= 1.3x and wall <= 20x the 1-day run")
    bat0 = base["timelines"]["battery"]["charge_j"][-1]
    for days, _, _, r in rows[1:]:
        fd = (r.get("horizon") or {}).get("first_day")
        if not fd:
            continue
        pairs = (("energy J/day", base["energy_per_day_j"], fd["energy_per_day_j"]),
                 ("battery charge after day 1 (J)", bat0, fd["battery_charge_j"]),
                 ("flash wear / year", base["flash_wear_fraction_per_year"], fd["flash_wear_per_year"]))
        diffs = ", ".join(f"{name} {a:.6g} vs {b:.6g} ({(b / a - 1) if a else 0.0:+.3%})" for name, a, b in pairs
                          if a is not None and b is not None)
        print(f"   first day of the {days:g}-day run vs the 1-day run: {diffs}   (target: within 1 %)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="timings per case; the best is kept")
    ap.add_argument("--only", choices=("horizons",), help="run only part 4")
    ap.add_argument("--days", default="1,30,365", help="horizons of part 4 in days, the first is the base")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra scenario overrides for part 4 (e.g. device=path/to/profile.toml)")
    args = ap.parse_args()
    if args.only == "horizons":
        horizons([float(x) for x in args.days.split(",")], args.set)
        return

    print("1. training alone vs the same training inside the simulation (best of", args.repeat, "runs)")
    rows = []
    cases = [("mlp-digits", "planned", "native"), ("mlp-digits", "heap", "native"),
             ("lenet-digits", "planned", "native"), ("lenet-digits", "heap", "native")]
    for model, policy, runtime in tqdm(cases, desc="overhead", unit="case", leave=False):
        alone, sim, steps = overhead(model, policy, runtime, args.repeat)
        rows.append((model, policy, steps, alone, sim))
    print(f"   {'workload':<14} {'memory':<8} {'steps':>6} {'alone (s)':>10} {'in sim (s)':>11} {'ratio':>7}  target")
    for model, policy, steps, alone, sim in rows:
        print(f"   {model:<14} {policy:<8} {steps:>6} {alone:>10.3f} {sim:>11.3f} {sim / alone:>6.2f}x  <= 1.5x")

    print("\n2./3. the demo day (embedded demo.toml without technique variants)")
    d = scenario_dict(SCENARIO_DIR / "demo.toml")
    d.pop("compare", None)
    sc = load_scenario(apply_overrides(d, {}))
    profile = load_profile(sc.device)
    counting = Simulation(sc, profile, job_for(sc), probe_job=job_for(sc))
    n = count_events(counting)
    counting.run()
    events = n[0]
    walls = [simulate_timed(sc, profile) for _ in range(args.repeat)]
    wall, sim = min(walls, key=lambda w: w[0])
    bare = min(bare_simpy(events) for _ in range(args.repeat))
    print(f"   simulated {sc.duration_s:,.0f} s: {sim.pipeline_stats.inferences:,} inferences, {sim.training.stats.steps:,} training "
          f"steps, {sim.executor.preemptions} preemptions, {events:,} SimPy events")
    print(f"   wall time {wall:.2f} s -> sim-time / wall-time = {sc.duration_s / wall:,.0f}x")
    print(f"   events/s: simulation {events / wall:,.0f} (numpy training + inference included)   "
          f"bare SimPy loop, same {events:,} events: {events / bare:,.0f}   ratio {bare / wall:.3f}")
    canned = Simulation(sc, profile, Canned(job_for(sc), sc.schedule.batch), probe_job=job_for(sc))
    n2 = count_events(canned)
    t = time.perf_counter()
    canned.run()
    wall2 = time.perf_counter() - t
    print(f"   engine alone (the job's numpy work replaced by replaying one recorded step/inference): "
          f"{n2[0]:,} events in {wall2:.2f} s = {n2[0] / wall2:,.0f} events/s, {bare / wall2 * n2[0] / events:.3f}x "
          f"the bare loop's rate")
    print(f"   (python {sys.version.split()[0]}, simpy {simpy.__version__}, numpy {np.__version__})")
    print()
    horizons([float(x) for x in args.days.split(",")], args.set)


if __name__ == "__main__":
    main()
