"""edgesim simulator: will on-device training of this model fit this device on this schedule?

The public API, imported lazily so ``edgesim --help`` stays quick:

- ``run_scenario(scenario, *, progress=False, workers=1) -> dict``  a scenario's result (simulator/result.py)
- ``predict_step(device, workload, *, batch, runtime, techniques, seed) -> dict``  one step's cost and memory
- ``load_scenario(path_or_dict, where=None) -> Scenario``, ``apply_overrides(d, {"schedule.batch": 16})``
- ``op_cycles(op, runtime) -> float``  the op cost model; ``CostModel`` for seconds and joules
- ``Heap``, ``OutOfMemory``, ``Fragmentation``  RAM with real offsets; ``plan`` / ``MemoryPlan`` the planner
- ``Simulation``  one run (SimPy environment, device, pipeline, schedule), for tests and benchmarks
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "run_scenario": "api", "predict_step": "api", "simulate": "api",
    "load_scenario": "scenario", "apply_overrides": "scenario", "Scenario": "scenario", "DEFAULTS": "scenario",
    "op_cycles": "cost", "CostModel": "cost",
    "Heap": "memory", "OutOfMemory": "memory", "Fragmentation": "memory",
    "plan": "planner", "MemoryPlan": "planner",
    "Simulation": "engine", "Fatal": "engine",
    "Device": "device", "BatteryEmpty": "device",
    "summarise": "verdict",
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
