"""edgesim simulator: will on-device training of this model fit this device on this schedule?
(docs/architecture.md §3)

The public API, imported lazily so ``edgesim --help`` stays quick:

- ``run_scenario(scenario, *, progress=False, workers=1) -> dict``  a scenario's result (simulator/result.py)
- ``simulate(scenario) -> dict``  one validated ``Scenario`` without its technique variants
- ``predict_step(device, workload, *, batch, runtime, techniques, seed) -> dict``  one step's cost and memory
- ``load_scenario(path_or_dict, where=None) -> Scenario``, ``apply_overrides(d, {"schedule.batch": 16})``
- ``op_cycles(op, runtime) -> float``  the op cost model; ``CostModel`` for seconds and joules
- ``Heap``, ``OutOfMemory``, ``Fragmentation``, ``place_trace``  RAM with real offsets
- ``plan_arena`` / ``ArenaPlan``  the arena planner over a trace's tensor lifetimes
- ``Simulation``  one run (SimPy environment, device, pipeline, schedule), for tests and benchmarks
- ``RunEnded``, ``BatteryEmpty``  run-ending events; ``RUN_END_CONSTRAINT`` the constraint each breaks
- ``CONSTRAINTS``  the verdict's constraints; ``summarise(result)`` the verdict in words
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "run_scenario": "run", "simulate": "run", "predict_step": "predict",
    "job_for": "inputs", "profile_for": "inputs",
    "load_scenario": "scenario", "apply_overrides": "scenario", "scenario_dict": "scenario", "Scenario": "scenario",
    "DEFAULTS": "scenario", "SCENARIO_DIR": "scenario",
    "TRIGGERS": "config", "MEMORY_POLICIES": "config",
    "op_cycles": "cost", "CostModel": "cost",
    "Heap": "memory", "OutOfMemory": "memory", "Fragmentation": "memory", "place_trace": "memory",
    "plan_arena": "planner", "ArenaPlan": "planner",
    "Simulation": "simulation",
    "RunEnded": "run_end", "BatteryEmpty": "run_end",
    "Device": "device",
    "CONSTRAINTS": "verdict", "RUN_END_CONSTRAINT": "verdict", "summarise": "verdict",
    "RESULT_KEYS": "result",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'simulator' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
