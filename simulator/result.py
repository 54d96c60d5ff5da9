"""The run result: what ``simulator.api.run_scenario`` returns, ``plan --json`` prints, sweeps stream
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

RESULT_KEYS_ADDED = (
    "ram_reserved_bytes", "memory_policy", "arena_bytes", "mean_step_latency_s", "deadline_misses",
    "worst_inference_latency_s", "frames", "dropped_windows", "labels", "dropped_labels", "preemptions",
    "checkpoints", "swap_steps", "swap_region_bytes", "idle_skips", "energy_j", "time_in_state_s", "battery_capacity_j", "online_accuracy", "schedule",
    "pipeline", "budgets", "comparison",
)

RESULT_KEYS = (
    "scenario", "device", "workload", "runtime", "seed", "duration_s", "fits", "constraints",
    "first_violation", "fatal", "peak_ram_bytes", "ram_budget_bytes", "naive_ram_bytes",
    "lower_bound_ram_bytes", "planned_ram_bytes", "flash_bytes", "flash_budget_bytes", "step_latency_s",
    "deadline_miss_rate", "inferences", "dropped_frames", "training_steps", "energy_per_day_j",
    "battery_life_days", "flash_writes_bytes", "flash_wear_fraction_per_year", "macs_total",
    "accuracy_before", "accuracy_after", "retention_before", "retention_after", "techniques", "timelines",
)
