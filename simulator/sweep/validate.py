"""A grid is checked whole before anything runs, by the same validation as a scenario (field names,
types, ranges, allowed values), plus the device profile, the runtime, the model spec and the data set
name of every point. A bad value exits 2 with one line naming the grid file, the table, the key and the
value, instead of turning into error rows (or a wrong "none fits") after the sweep has run."""
from __future__ import annotations

import re
from functools import cache
from typing import Any

from .grid import Grid, Point
from .worker import load_base


def check_grid(grid: Grid) -> None:
    """Raise ``ValueError`` at the first point whose scenario would not load or set up."""
    base = load_base(grid.base)
    if not base:
        raise ValueError(f"{grid.path}: base = {grid.base!r}: the scenario is empty")
    for p in grid.points():
        check_point(grid, base, p)


def check_point(grid: Grid, base: dict, p: Point) -> None:
    """Validate the scenario of point ``p``; an error is blamed on the grid table and key that set the field."""
    from simulator.scenario import apply_overrides, load_scenario

    tag = f"{grid.path} <{p.key}>"
    try:
        sc = load_scenario(apply_overrides(base, dict(p.overrides)), where=tag)
        _check_inputs(sc.device, sc.runtime, sc.workload.model, sc.workload.dataset)
    except ValueError as e:
        raise ValueError(_blame(grid, p, tag, str(e))) from None


@cache
def _profile(device: str) -> Any:
    from device_profiles import load_profile

    return load_profile(device)


def _check_inputs(device: str, runtime: str, model: str, dataset: str) -> None:
    """What a scenario sets up before it runs: the profile and its runtime, the model, the data set."""
    try:
        _profile(device).runtime_for(runtime)
    except ValueError as e:
        raise ValueError(f"device {device!r} / runtime {runtime!r}: {e}") from None
    _check_model(model)
    from workloads.datasets import ALIASES, DATASETS

    if dataset != "auto" and dataset not in DATASETS and dataset not in ALIASES:
        raise ValueError(f"workload.dataset {dataset!r} is not a data set (known: auto, {', '.join(DATASETS)})")


@cache
def _check_model(model: str) -> None:
    from workloads.model import resolve

    try:
        resolve(model)
    except ValueError as e:
        raise ValueError(f"workload.model {model!r}: {e}") from None


_FIELD = re.compile(r"^([A-Za-z_][\w.]*)")


def _blame(grid: Grid, p: Point, tag: str, msg: str) -> str:
    """``msg`` (from the scenario check of ``p``) as one line naming the grid table, key and value."""
    detail = msg.split(f"{tag}: ", 1)[-1] if tag in msg else msg
    m = _FIELD.match(detail)
    field = m.group(1) if m else ""
    if detail.startswith("device "):                # the profile or its runtime: blame whichever was set
        field = next((k for k in ("device", "runtime") if k in p.overrides), "device")
    for key in sorted(p.overrides, key=len, reverse=True):
        if field == key or field.startswith(key + ".") or key.startswith(field + "."):
            table = p.sources.get(key, "[set]")
            return f"{grid.path}: {table} {key} = {p.overrides[key]!r}: {detail}"
    return f"{grid.path}: base scenario {grid.base if isinstance(grid.base, str) else '[base]'}: {detail}"
