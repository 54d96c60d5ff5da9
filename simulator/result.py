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
"""
from __future__ import annotations

RESULT_KEYS = (
    "scenario", "device", "workload", "runtime", "seed", "duration_s", "fits", "constraints",
    "first_violation", "fatal", "peak_ram_bytes", "ram_budget_bytes", "naive_ram_bytes",
    "lower_bound_ram_bytes", "planned_ram_bytes", "flash_bytes", "flash_budget_bytes", "step_latency_s",
    "deadline_miss_rate", "inferences", "dropped_frames", "training_steps", "energy_per_day_j",
    "battery_life_days", "flash_writes_bytes", "flash_wear_fraction_per_year", "macs_total",
    "accuracy_before", "accuracy_after", "retention_before", "retention_after", "techniques", "timelines",
)
