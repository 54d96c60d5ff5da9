"""The run result: what ``simulator.run_scenario`` returns, ``plan --json`` prints, sweeps stream
and reports render. A plain JSON-able dict so it crosses process pools, Dask and JSONL unchanged.

Keys (units in the names; every key is always present, ``None`` where it does not apply):

    scenario, device, workload, runtime, seed, duration_s      identity of the run
    fits                      bool: every constraint ok and no fatal event
    constraints               [{name, budget, observed, unit, margin, ok}]; margin = budget - observed
                              (or observed - budget for lower bounds), in the same unit
    first_violation           None | {constraint, time_s, op, message}
    fatal                     None | {kind: "out_of_memory" | "fragmentation" | "battery_empty",
                                      time_s, op, message}
    peak_ram_bytes            peak RAM the run used (workload + runtime reserve)
    ram_budget_bytes          the device's RAM
    naive_ram_bytes, lower_bound_ram_bytes, planned_ram_bytes   memory planner figures for one step
    flash_bytes, flash_budget_bytes
    step_latency_s            worst training-step latency (device time, including preemption waits)
    deadline_miss_rate        inference deadline misses / inferences
    inferences, dropped_frames, training_steps
    energy_per_day_j, battery_life_days
    flash_writes_bytes, flash_wear_fraction_per_year
    macs_total                MACs the training charged (after techniques)
    accuracy_before, accuracy_after           user-data accuracy before/after personalisation
    retention_before, retention_after         old-class accuracy before/after
    techniques                list of active technique names
    timelines:
      memory:   {time_s: [...], by_kind: {kind: [bytes, ...]}}     sampled at alloc/free events
      cpu:      [{start_s, end_s, task: "inference" | "training", preempted: bool}]
      battery:  {time_s: [...], charge_j: [...], capacity_j: float}
      learning: {step: [...], loss: [...], eval: [{step, user_accuracy, retention_accuracy}]}

Added by the simulator (always present too):

    constraints[].bound       "max" (observed <= budget) | "min" (observed >= budget); optional note
    fatal.ram_needed_bytes    out of memory: RAM in use + the allocation that failed (else None)
    ram_reserved_bytes        what the runtime keeps before the workload starts
    memory_policy             "planned" | "heap";  arena_bytes {train, infer} (planned policy: static arenas)
    mean_step_latency_s, deadline_misses, worst_inference_latency_s
    frames, dropped_windows, labels, dropped_labels, preemptions, checkpoints
    swap_steps, swap_region_bytes   steps that swapped to flash; the flash region that takes (whole pages)
    idle_skips                trigger "idle": training rounds given up because no idle gap holds a step
    energy_j {active, idle, sleep, harvested}, time_in_state_s {active, idle, sleep}, battery_capacity_j
    online_accuracy           share of the stream's windows the device classified right as they came
    schedule, pipeline, budgets               the scenario's tables, defaults filled in
    compression               None | frozen layers compressed in flash: {spec, layers, checkpoint: "dense",
                              model_flash_bytes(_uncompressed), decode_ops_per_inference, decode_s_per_inference,
                              decode_energy_j_per_day, ...} (simulator.compressed)
    training_steps_real, training_steps_replayed   steps that ran the job's numpy / were charged from a
                              recorded step (simulator.fidelity); fidelity "auto" | "full"
    horizon                   None for runs of a day or less; else {days_simulated, days_charged, template_days,
                              replay_from_s, first_day: {energy_j, energy_per_day_j, battery_charge_j,
                              flash_writes_bytes, flash_wear_per_year, training_steps, inferences}}
                              (days_charged: repeated days charged as a whole, simulator.fastforward)
    comparison                None | [{label, techniques, macs_total, peak_ram_bytes, lower_bound_ram_bytes,
                                       accuracy_after, retention_after, energy_per_day_j, training_steps,
                                       step_latency_s, fits, fatal, ram_needed_bytes}]   (scenario + [compare] variants;
                              a variant that ran out of memory shows the RAM it needed as peak_ram_bytes)
    timelines.memory.by_kind  also "runtime" (the reserve) and "arena_unused" (planned arenas' free part)
    timelines.cpu_truncated   bool: inference segments beyond a cap were left out of timelines.cpu
    timelines.cpu_busy_by_hour [{hour, inference, training}] busy seconds per hour of the run
    timelines.learning.time_s sim time of each step; eval entries also carry time_s
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .compressed import compression_figures, energy_note, flash_note
from .config import table
from .rounding import rounded
from .timeline import cpu_timeline
from .training import TrainingStats, checkpoint_bytes
from .verdict import first_violation, verdict_rows

if TYPE_CHECKING:   # pragma: no cover
    from .device import Device
    from .pipeline import PipelineStats
    from .ram import Ram
    from .run_end import RunEnded
    from .scenario import Scenario

DAY_S = 86400.0
YEAR_S = 365.0 * DAY_S

RESULT_KEYS_ADDED = (
    "ram_reserved_bytes", "memory_policy", "arena_bytes", "mean_step_latency_s", "deadline_misses",
    "worst_inference_latency_s", "frames", "dropped_windows", "labels", "dropped_labels", "preemptions",
    "checkpoints", "swap_steps", "swap_region_bytes", "idle_skips", "energy_j", "time_in_state_s", "battery_capacity_j", "online_accuracy", "schedule",
    "pipeline", "budgets", "comparison", "training_steps_real", "training_steps_replayed", "fidelity", "horizon", "compression",
)

RESULT_KEYS = (
    "scenario", "device", "workload", "runtime", "seed", "duration_s", "fits", "constraints",
    "first_violation", "fatal", "peak_ram_bytes", "ram_budget_bytes", "naive_ram_bytes",
    "lower_bound_ram_bytes", "planned_ram_bytes", "flash_bytes", "flash_budget_bytes", "step_latency_s",
    "deadline_miss_rate", "inferences", "dropped_frames", "training_steps", "energy_per_day_j",
    "battery_life_days", "flash_writes_bytes", "flash_wear_fraction_per_year", "macs_total",
    "accuracy_before", "accuracy_after", "retention_before", "retention_after", "techniques", "timelines",
)


def assemble_result(sc: Scenario, prof: Any, job: Any, *, end_s: float, capacity_j: float, ended: RunEnded | None,
                    device: Device, ram: Ram | None, pipeline: PipelineStats, training: TrainingStats | None,
                    preemptions: int, evals: list[dict[str, Any]], horizon: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
    """The result dict of a finished run from the records its parts own: figures, verdict, timelines."""
    _r = rounded
    tr = training or TrainingStats()
    dev = device
    end = end_s
    fatal = ended.to_dict() if ended else None
    if fatal:
        fatal["time_s"] = _r(fatal["time_s"])
    elapsed = max(end, 1e-9)
    ran = end >= 1.0          # a run stopped in its first second says nothing about energy
    energy_per_day = dev.consumed_j / elapsed * DAY_S if ran else None
    net_w = (dev.consumed_j - dev.harvested_j) / elapsed
    stopped = fatal is not None and fatal["kind"] != "battery_empty"   # out of memory: the device stopped working
    if fatal and fatal["kind"] == "battery_empty":
        battery_days = fatal["time_s"] / DAY_S
    elif not ran or stopped:
        battery_days = None   # not observed: no battery life is extrapolated from a run that stopped early
    elif net_w > 0:
        battery_days = capacity_j / net_w / DAY_S
    else:
        battery_days = None   # energy-neutral: the harvester covers the load
    rt = prof.runtime_for(sc.runtime)
    page = prof.flash.erase_page_bytes
    swap_bytes = -(-tr.swap_region_bytes // page) * page
    flash_need = rt.flash_reserved_bytes + int(job.flash_bytes()) + checkpoint_bytes(job, sc.schedule) + swap_bytes
    # each write of a region erases each of its pages once (no wear levelling): the busier region counts
    wear = max(tr.checkpoints, tr.swap_steps) / elapsed * YEAR_S / prof.flash.endurance_cycles
    step_latency, mean_latency = tr.latency_figures()
    miss_rate = pipeline.miss_rate if pipeline.inferences else None     # no inference: not observed
    b = sc.budgets
    energy_budget = b.energy_per_day_j or capacity_j / b.battery_life_days
    mem = ram.figures() if ram else {"peak_ram_bytes": rt.ram_reserved_bytes, "naive_ram_bytes": None,
                                     "lower_bound_ram_bytes": None, "planned_ram_bytes": None, "arena_bytes": None}
    peak = mem["peak_ram_bytes"]
    no_energy = "the run stopped before it used energy"
    comp = compression_figures(sc, prof, job, inferences=pipeline.inferences, decode_ops_training=tr.decode_ops,
                               decode_calls_training=tr.decode_calls, elapsed_s=elapsed)
    rows = verdict_rows(
        budgets={"peak_ram": prof.memory.ram_bytes, "flash": prof.memory.flash_bytes,
                 "step_latency": b.step_latency_s, "deadline_miss_rate": b.deadline_miss_rate,
                 "energy_per_day": _r(energy_budget, 6), "battery_life": b.battery_life_days,
                 "flash_wear": b.flash_wear_per_year},
        observed={"peak_ram": peak, "flash": flash_need, "step_latency": _r(step_latency),
                  "deadline_miss_rate": _r(miss_rate), "energy_per_day": _r(energy_per_day, 6),
                  "battery_life": _r(battery_days, 6), "flash_wear": _r(wear) if ran else None},
        notes={"step_latency": "" if tr.step_latencies or tr.replayed else "no training step ran",
               "energy_per_day": energy_note(comp) if ran else no_energy, "flash": flash_note(comp),
               "deadline_miss_rate": "" if pipeline.inferences else "no inference ran",
               "flash_wear": "" if ran else "the run stopped in its first second",
               "battery_life": "" if battery_days is not None else
               f"not observed: the run stopped at t = {fatal['time_s']:g} s ({fatal['kind'].replace('_', ' ')})"
               if stopped else "energy-neutral: harvesting covers the load" if ran else no_energy})
    if fatal and fatal["kind"] != "battery_empty":
        need = fatal.get("ram_needed_bytes")
        rows[0]["observed"] = need
        rows[0]["margin"] = None if need is None else prof.memory.ram_bytes - need
        rows[0]["ok"] = False
        rows[0]["note"] = f"{fatal['kind'].replace('_', ' ')} at op {fatal['op']!r}: the run stopped (observed = RAM " \
                          "in use + the allocation that failed)"
    when = {"step_latency": tr.first_slow_step or (end, ""),
            "deadline_miss_rate": (pipeline.first_miss_s, "inference") if pipeline.first_miss_s is not None
            else (end, ""),
            "energy_per_day": (end, ""), "battery_life": (end, ""),
            "flash_wear": tr.first_flash_write or (end, ""),
            "flash": (0.0, "firmware + model"), "peak_ram": (0.0, "")}
    when = {k: (_r(t), op) for k, (t, op) in when.items()}
    fv = first_violation(rows, when, fatal)
    fits = fatal is None and all(r["ok"] for r in rows)
    first, last = (evals[0], evals[-1]) if evals else ({}, {})
    cpu = cpu_timeline(dev.cpu_log, dev.busy_by_hour, dev.cpu_log_full)
    result: dict[str, Any] = {
        "scenario": sc.name, "device": prof.name, "workload": sc.workload.model, "runtime": sc.runtime,
        "seed": sc.seed, "duration_s": sc.duration_s, "fits": fits, "constraints": rows,
        "first_violation": fv, "fatal": fatal,
        "ram_budget_bytes": prof.memory.ram_bytes, "ram_reserved_bytes": rt.ram_reserved_bytes,
        **mem,
        "memory_policy": sc.schedule.memory_policy,
        "flash_bytes": flash_need, "flash_budget_bytes": prof.memory.flash_bytes,
        "step_latency_s": _r(step_latency),
        "mean_step_latency_s": _r(mean_latency),
        "deadline_miss_rate": _r(miss_rate), "deadline_misses": pipeline.deadline_misses,
        "worst_inference_latency_s": _r(pipeline.worst_inference_latency_s),
        "inferences": pipeline.inferences, "dropped_frames": pipeline.dropped_frames,
        "dropped_windows": pipeline.dropped_windows, "frames": pipeline.frames, "labels": pipeline.labels,
        "dropped_labels": pipeline.dropped_labels,
        "training_steps": tr.steps, "training_steps_real": tr.steps - tr.replayed,
        "training_steps_replayed": tr.replayed, "fidelity": sc.fidelity.mode, "horizon": horizon,
        "preemptions": preemptions, "checkpoints": tr.checkpoints,
        "swap_steps": tr.swap_steps, "idle_skips": tr.idle_skips, "swap_region_bytes": swap_bytes,
        "energy_per_day_j": _r(energy_per_day, 6), "battery_life_days": _r(battery_days, 6),
        **dev.figures(_r),
        "battery_capacity_j": _r(capacity_j, 6),
        "flash_wear_fraction_per_year": _r(wear),
        "macs_total": int(tr.macs_total),
        "accuracy_before": first.get("user_accuracy"), "accuracy_after": last.get("user_accuracy"),
        "retention_before": first.get("retention_accuracy"), "retention_after": last.get("retention_accuracy"),
        "online_accuracy": _r(pipeline.online_correct / pipeline.sunk) if pipeline.sunk else None,
        "techniques": sc.techniques.active(),
        "schedule": table(sc.schedule),
        "pipeline": table(sc.pipeline),
        "budgets": table(sc.budgets),
        "comparison": None,
        "compression": comp,
        "timelines": {
            "memory": ram.timeline.series(end) if ram else {"time_s": [], "by_kind": {}},
            "cpu": cpu["segments"],
            "cpu_truncated": cpu["truncated"],
            "cpu_busy_by_hour": cpu["by_hour"],
            "battery": {"time_s": [_r(t, 6) for t, _ in dev.battery_log],
                        "charge_j": [_r(c, 6) for _, c in dev.battery_log], "capacity_j": _r(capacity_j, 6)},
            "learning": {"step": [s for s, _, _ in tr.losses], "time_s": [_r(t, 6) for _, t, _ in tr.losses],
                         "loss": [_r(v) for _, _, v in tr.losses], "eval": evals},
        },
    }
    missing = [k for k in RESULT_KEYS + RESULT_KEYS_ADDED if k not in result]
    assert not missing, f"result lacks {missing}"
    return result
