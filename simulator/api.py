"""The simulator's public entry points: ``run_scenario`` and ``predict_step``.

Both are top-level functions returning plain JSON-able dicts (see ``simulator/result.py``), so they
cross process pools and Dask unchanged. No wall-clock value goes into a result: the same scenario and
seed give byte-identical ``json.dumps(result, sort_keys=True)``.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np

from device_profiles.loader import DeviceProfile, load_profile
from workloads.techniques import Techniques
from workloads.trace import collect

from .cost import CostModel
from .engine import MAX_CPU_SEGMENTS, Simulation
from .memory import Heap, OutOfMemory, replay
from .planner import plan as plan_memory
from .result import RESULT_KEYS
from .scenario import Scenario, load_scenario, scenario_dict
from .verdict import constraint, first_violation

DAY_S = 86400.0
YEAR_S = 365.0 * DAY_S


def make_job(model: str, *, dataset: str | None = None, story: str = "new-class", optimizer: str = "sgd",
             lr: float = 0.05, momentum: float = 0.9, techniques: Techniques | None = None, seed: int = 0) -> Any:
    """A TrainingJob from the workloads package (imported here so the simulator core stays light)."""
    import workloads

    if not hasattr(workloads, "make_job"):
        raise RuntimeError("workloads.make_job is not available yet (the workloads package is incomplete)")
    return workloads.make_job(model, dataset=dataset, story=story, optimizer=optimizer, lr=lr, momentum=momentum,
                              techniques=techniques or Techniques(), seed=seed)


def job_for(sc: Scenario) -> Any:
    """The scenario's TrainingJob; a bad model or data set is an error naming the scenario and field."""
    w = sc.workload
    try:
        return _job_for(sc, w)
    except ValueError as e:
        raise ValueError(f"{sc.where}: workload (model {w['model']!r}, dataset {w['dataset']!r}): {e}") from None


def profile_for(sc: Scenario) -> DeviceProfile:
    """The scenario's device profile, with the runtime checked; errors name the scenario and field."""
    try:
        profile = load_profile(sc.device)
        profile.runtime_for(sc.runtime)
    except ValueError as e:
        raise ValueError(f"{sc.where}: device {sc.device!r} / runtime {sc.runtime!r}: {e}") from None
    return profile


def _job_for(sc: Scenario, w: dict) -> Any:
    return make_job(w["model"], dataset=None if w["dataset"] == "auto" else w["dataset"], story=w["story"], optimizer=w["optimizer"], lr=w["lr"],
                    momentum=w["momentum"], techniques=sc.techniques, seed=sc.seed)


def simulate(sc: Scenario, *, job: Any = None, profile: DeviceProfile | None = None,
             progress: bool = False) -> dict[str, Any]:
    """Run one validated scenario (optionally with a given job/profile, for tests) and build its result."""
    profile = profile or profile_for(sc)
    probe = None
    if job is None:
        # the twin traces a worst-case first step for the memory plan: instance filtering off, so the
        # static arena holds a full batch however many samples later steps skip
        job = job_for(sc)
        probe = job_for(dataclasses.replace(sc, techniques=dataclasses.replace(sc.techniques, instance_filter=None)))
    sim = Simulation(sc, profile, job, probe_job=probe)
    sim.run(progress=progress)
    return build_result(sim)


def run_scenario(scenario: dict | str | Path, *, progress: bool = False, workers: int = 1,
                 where: str | None = None, compare: bool = True) -> dict[str, Any]:
    """Simulate a scenario (dict, TOML path or embedded name) and return the result dict.

    With ``[compare] variants`` the same scenario also runs once per technique variant and the
    figures land in ``result["comparison"]``; ``workers > 1`` runs them in a process pool (the
    result does not depend on it). ``compare=False`` skips the variants (sweeps). ``where`` names a
    dict scenario's origin in error messages.
    """
    sc = load_scenario(scenario, where=where)
    if not sc.compare or not compare:
        return simulate(sc, progress=progress)
    raw = scenario_dict(scenario)
    raw.pop("compare", None)
    runs = [(raw, sc.where, "as scheduled")]
    for v in sc.compare:
        d = dict(raw)
        sched = dict(d.get("schedule", {}))
        sched["techniques"] = dict(v.get("techniques", {}))
        d["schedule"] = sched
        runs.append((d, f"{sc.where} [compare {v['label']!r}]", v["label"]))
    results: list[dict[str, Any] | None] = [None] * len(runs)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(runs), desc=f"{sc.name}: scenario + {len(sc.compare)} technique variants", unit="run",
                   leave=False)
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        job_for(sc)   # warm the workloads' pre-training cache once; forked workers inherit it
        with ProcessPoolExecutor(max_workers=min(workers, len(runs))) as pool:
            futs = {pool.submit(_simulate_dict, d, where): i for i, (d, where, _) in enumerate(runs)}
            for f in as_completed(futs):
                results[futs[f]] = f.result()
                if bar:
                    bar.update(1)
    else:
        for i, (d, where, _) in enumerate(runs):
            results[i] = _simulate_dict(d, where)
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    result = results[0]
    result["comparison"] = [_comparison_row(label, load_scenario(d, where=where).techniques, r)
                            for (d, where, label), r in zip(runs, results, strict=True)]
    return result


def _simulate_dict(d: dict, where: str) -> dict[str, Any]:
    """Top-level (picklable) worker: load and simulate one scenario dict."""
    return simulate(load_scenario(d, where=where))


def _comparison_row(label: str, tech: Techniques, r: dict[str, Any]) -> dict[str, Any]:
    need = (r["fatal"] or {}).get("ram_needed_bytes")
    return {"label": label, "techniques": tech.active(), "macs_total": r["macs_total"],
            "peak_ram_bytes": max(r["peak_ram_bytes"], need or 0),   # out of memory: what it would have needed
            "lower_bound_ram_bytes": r["lower_bound_ram_bytes"],
            "accuracy_after": r["accuracy_after"], "retention_after": r["retention_after"],
            "energy_per_day_j": r["energy_per_day_j"], "training_steps": r["training_steps"],
            "step_latency_s": r["step_latency_s"], "fits": r["fits"],
            "fatal": None if not r["fatal"] else f"{r['fatal']['kind']} at op {r['fatal']['op']!r}",
            "ram_needed_bytes": (r["fatal"] or {}).get("ram_needed_bytes")}


# --- the result ---------------------------------------------------------------------------------------

def _r(x: float | None, nd: int = 9) -> float | None:
    """Round for stable, readable JSON (results stay deterministic either way)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return round(float(x), nd)


def build_result(sim: Simulation) -> dict[str, Any]:
    """The result dict of a finished simulation: figures, verdict, timelines."""
    sc, prof, dev, job, ram = sim.sc, sim.profile, sim.device, sim.job, sim.ram
    end = sim.end_s
    fatal = sim.fatal.to_dict() if sim.fatal else None
    if fatal:
        fatal["time_s"] = _r(fatal["time_s"])
    elapsed = max(end, 1e-9)
    ran = end >= 1.0          # a run stopped in its first second says nothing about energy
    energy_per_day = dev.consumed_j / elapsed * DAY_S if ran else None
    net_w = (dev.consumed_j - dev.harvested_j) / elapsed
    if fatal and fatal["kind"] == "battery_empty":
        battery_days = fatal["time_s"] / DAY_S
    elif not ran:
        battery_days = None
    elif net_w > 0:
        battery_days = sim.capacity_j / net_w / DAY_S
    else:
        battery_days = None   # energy-neutral: the harvester covers the load
    rt = sim.rt
    ckpt_bytes = int(job.trainable_bytes()) if sc.schedule["checkpoint_every_steps"] else 0
    page = prof.flash.erase_page_bytes
    swap_bytes = -(-sim.swap_region_bytes // page) * page
    flash_need = rt.flash_reserved_bytes + int(job.flash_bytes()) + ckpt_bytes + swap_bytes
    # each write of a region erases each of its pages once (no wear levelling): the busier region counts
    wear = max(sim.checkpoints, sim.swap_steps) / elapsed * YEAR_S / prof.flash.endurance_cycles
    step_latency = max(sim.step_latencies) if sim.step_latencies else None
    miss_rate = sim.deadline_misses / sim.inferences if sim.inferences else 0.0
    b = sc.budgets
    energy_budget = b["energy_per_day_j"] or sim.capacity_j / b["battery_life_days"]
    peak = ram.peak_bytes if ram else rt.ram_reserved_bytes
    rows = [
        constraint("peak_ram", prof.memory.ram_bytes, peak, "B"),
        constraint("flash", prof.memory.flash_bytes, flash_need, "B"),
        constraint("step_latency", b["step_latency_s"], _r(step_latency), "s", "max",
                   "" if sim.step_latencies else "no training step ran"),
        constraint("deadline_miss_rate", b["deadline_miss_rate"], _r(miss_rate), "1"),
        constraint("energy_per_day", _r(energy_budget, 6), _r(energy_per_day, 6), "J/day", "max",
                   "" if ran else "the run stopped before it used energy"),
        constraint("battery_life", b["battery_life_days"], _r(battery_days, 6), "days", "min",
                   "" if battery_days is not None else "energy-neutral: harvesting covers the load" if ran
                   else "the run stopped before it used energy"),
        constraint("flash_wear", b["flash_wear_per_year"], _r(wear), "endurance/year"),
    ]
    if fatal and fatal["kind"] != "battery_empty":
        need = fatal.get("ram_needed_bytes")
        rows[0]["observed"] = need
        rows[0]["margin"] = None if need is None else prof.memory.ram_bytes - need
        rows[0]["ok"] = False
        rows[0]["note"] = f"{fatal['kind'].replace('_', ' ')} at op {fatal['op']!r}: the run stopped (observed = RAM " \
                          "in use + the allocation that failed)"
    when = {"step_latency": sim.first_slow_step or (end, ""),
            "deadline_miss_rate": (sim.first_miss_s, "inference") if sim.first_miss_s is not None else (end, ""),
            "energy_per_day": (end, ""), "battery_life": (end, ""),
            "flash_wear": sim.first_flash_write_s or (end, ""),
            "flash": (0.0, "firmware + model"), "peak_ram": (0.0, "")}
    when = {k: (_r(t), op) for k, (t, op) in when.items()}
    fv = first_violation(rows, when, fatal)
    fits = fatal is None and all(r["ok"] for r in rows)
    fp = ram.first_plan if ram else None
    evals = sim.evals
    first, last = (evals[0], evals[-1]) if evals else ({}, {})
    cpu = _cpu_timeline(dev.cpu_log, end)
    result: dict[str, Any] = {
        "scenario": sc.name, "device": prof.name, "workload": sc.workload["model"], "runtime": sc.runtime,
        "seed": sc.seed, "duration_s": sc.duration_s, "fits": fits, "constraints": rows,
        "first_violation": fv, "fatal": fatal,
        "peak_ram_bytes": int(peak), "ram_budget_bytes": prof.memory.ram_bytes,
        "ram_reserved_bytes": rt.ram_reserved_bytes,
        "naive_ram_bytes": fp.naive_bytes if fp else None,
        "lower_bound_ram_bytes": fp.lower_bound_bytes if fp else None,
        "planned_ram_bytes": fp.planned_bytes if fp else None,
        "memory_policy": sc.schedule["memory_policy"],
        "arena_bytes": dict(ram.arena) if ram else None,
        "flash_bytes": flash_need, "flash_budget_bytes": prof.memory.flash_bytes,
        "step_latency_s": _r(step_latency), "mean_step_latency_s": _r(float(np.mean(sim.step_latencies)))
        if sim.step_latencies else None,
        "deadline_miss_rate": _r(miss_rate), "deadline_misses": sim.deadline_misses,
        "worst_inference_latency_s": _r(sim.worst_inference_latency_s),
        "inferences": sim.inferences, "dropped_frames": sim.dropped_frames, "dropped_windows": sim.dropped_windows,
        "frames": sim.frames, "labels": sim.labels, "dropped_labels": sim.dropped_labels,
        "training_steps": sim.training_steps, "preemptions": sim.preemptions, "checkpoints": sim.checkpoints,
        "swap_steps": sim.swap_steps, "idle_skips": sim.idle_skips, "swap_region_bytes": swap_bytes,
        "energy_per_day_j": _r(energy_per_day, 6), "battery_life_days": _r(battery_days, 6),
        "energy_j": {"active": _r(dev.energy_active_j), "idle": _r(dev.energy_idle_j),
                     "sleep": _r(dev.energy_sleep_j), "harvested": _r(dev.harvested_j)},
        "time_in_state_s": {"active": _r(dev.time_active_s), "idle": _r(dev.time_idle_s),
                            "sleep": _r(dev.time_sleep_s)},
        "battery_capacity_j": _r(sim.capacity_j, 6),
        "flash_writes_bytes": dev.flash_written_bytes, "flash_wear_fraction_per_year": _r(wear),
        "macs_total": int(sim.macs_total),
        "accuracy_before": first.get("user_accuracy"), "accuracy_after": last.get("user_accuracy"),
        "retention_before": first.get("retention_accuracy"), "retention_after": last.get("retention_accuracy"),
        "online_accuracy": _r(sim.online_correct / sim.sunk) if sim.sunk else None,
        "techniques": sc.techniques.active(),
        "schedule": {k: v for k, v in sc.schedule.items() if k != "techniques"},
        "pipeline": dict(sc.pipeline),
        "budgets": dict(sc.budgets),
        "comparison": None,
        "timelines": {
            "memory": ram.timeline.series(end) if ram else {"time_s": [], "by_kind": {}},
            "cpu": cpu["segments"],
            "cpu_truncated": cpu["truncated"],
            "cpu_busy_by_hour": cpu["by_hour"],
            "battery": {"time_s": [_r(t, 6) for t, _ in dev.battery_log],
                        "charge_j": [_r(c, 6) for _, c in dev.battery_log], "capacity_j": _r(sim.capacity_j, 6)},
            "learning": {"step": [s for s, _, _ in sim.losses], "time_s": [_r(t, 6) for _, t, _ in sim.losses],
                         "loss": [_r(v) for _, _, v in sim.losses], "eval": evals},
        },
    }
    missing = [k for k in RESULT_KEYS if k not in result]
    assert not missing, f"result lacks {missing}"
    return result


def _cpu_timeline(log: list[tuple[float, float, str, bool]], end: float) -> dict[str, Any]:
    """CPU segments for the report: every training segment and its preemptors, then the rest up to a
    cap; plus busy seconds per task for each hour of the run."""
    by_hour: dict[int, dict[str, float]] = {}
    for s, e, task, _ in log:
        h = int(s // 3600)
        d = by_hour.setdefault(h, {})
        d[task] = d.get(task, 0.0) + (e - s)
    keep = []
    prev_preempted = False
    for s, e, task, pre in log:
        if task != "inference" or prev_preempted:
            keep.append((s, e, task, pre))
        prev_preempted = pre
    rest = [x for x in log if x[2] == "inference"]
    truncated = False
    if len(keep) < MAX_CPU_SEGMENTS:
        extra = rest[:MAX_CPU_SEGMENTS - len(keep)]
        truncated = len(extra) < len(rest)
        keep = sorted(set(keep) | set(extra))
    else:
        keep, truncated = keep[:MAX_CPU_SEGMENTS], True
    segs = [{"start_s": _r(s), "end_s": _r(e), "task": task, "preempted": pre} for s, e, task, pre in keep]
    hours = [{"hour": h, **{k: _r(v, 6) for k, v in sorted(d.items())}} for h, d in sorted(by_hour.items())]
    return {"segments": segs, "truncated": truncated, "by_hour": hours}


# --- one step, for the emulator comparison ------------------------------------------------------------

def predict_step(device: str | Path | DeviceProfile, workload: str, *, batch: int = 1, runtime: str = "native",
                 techniques: Techniques | dict | None = None, seed: int = 0, dataset: str | None = None,
                 story: str = "new-class", optimizer: str = "sgd", lr: float = 0.05, momentum: float = 0.9,
                 job: Any = None) -> dict:
    """The simulator's prediction for one training step of ``workload`` on ``device``.

    cycles/seconds/energy from the cost model; instructions = cycles / CPI; heap_peak_bytes from
    placing the persistent tensors and the step's trace in a ``memory.Heap`` with the runtime's block
    size and per-object overhead (runtime reserve excluded); lower_bound_bytes from the planner.
    """
    profile = device if isinstance(device, DeviceProfile) else load_profile(device)
    if isinstance(techniques, dict):
        techniques = Techniques.from_dict(techniques)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"predict_step: batch must be an integer >= 1 (got {batch!r})")
    rt = profile.runtime_for(runtime)
    if job is None:
        job = make_job(workload, dataset=dataset, story=story, optimizer=optimizer, lr=lr, momentum=momentum,
                       techniques=techniques, seed=seed)
    xs, ys = zip(*itertools.islice(iter(job.labelled_stream()), batch), strict=False)
    ops, loss = collect(job.train_step(np.stack(xs), np.array(ys)))
    cm = CostModel(profile, runtime)
    cycles = seconds = energy = 0.0
    for op in ops:
        c, s, e = cm.cost(op)
        cycles += c
        seconds += s
        energy += e
    persistent = tuple(job.persistent_tensors())
    heap = replay(Heap.for_runtime(1 << 40, rt), ops, persistent)
    p = plan_memory(ops, persistent)
    avail = profile.memory.ram_bytes - rt.ram_reserved_bytes
    fits_heap = True
    try:
        replay(Heap.for_runtime(avail, rt), ops, persistent)
    except OutOfMemory:
        fits_heap = False
    return {"device": profile.name, "workload": workload, "runtime": runtime, "batch": batch,
            "techniques": (techniques or Techniques()).active(), "ops": len(ops),
            "cycles": cycles, "instructions": cycles / profile.core.cycles_per_instruction,
            "seconds": seconds, "energy_j": energy, "macs": int(sum(op.macs for op in ops)),
            "heap_peak_bytes": int(heap.peak_bytes), "lower_bound_bytes": int(p.lower_bound_bytes),
            "planned_bytes": int(p.planned_bytes), "naive_bytes": int(p.naive_bytes),
            "heap_available_bytes": int(avail), "fits_heap": fits_heap, "loss": float(loss)}
