"""One grid point through the simulator, in whatever process runs it (a pool worker or a Dask worker):
the scenario's result, or an error row with the message, as plain JSON data."""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
import traceback
from pathlib import Path
from typing import Any

from .grid import Point

# what a worker process imports before its first scenario (1-2 s otherwise, per process): the pool's fork
# server preloads them, a Dask worker imports them in its WarmWorker plugin (dask_worker)
PRELOAD_MODULES = ("simulator.sweep", "simulator.run", "workloads", "sklearn.datasets")


def load_base(base: str | dict) -> dict:
    """The base scenario as a dict (a path or embedded name is read here, in the worker)."""
    from simulator.scenario import scenario_dict

    return scenario_dict(base)


def fingerprint(base: dict, point: Point) -> str:
    """SHA-256 of the point's resolved scenario (the base with its overrides): what resume is keyed by,
    so a grid or base scenario edited since a row was written makes that row stale."""
    from simulator.scenario import apply_overrides

    text = json.dumps(apply_overrides(base, dict(point.overrides)), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def run_point(point: Point, base: str | dict, keep_timelines: bool = False,
              inflight_dir: str | None = None) -> dict:
    """Run one grid point through the simulator; an exception becomes an error row with its message."""
    marker = Path(inflight_dir) / str(os.getpid()) if inflight_dir else None
    if marker is not None:
        marker.write_text(point.key)
    row: dict[str, Any] = {"key": point.key, "index": point.index, "device": point.device,
                           "schedule": point.schedule, "seed": point.seed, "overrides": point.overrides}
    t0 = time.perf_counter()
    try:
        from simulator.run import run_scenario
        from simulator.scenario import apply_overrides

        scenario = apply_overrides(load_base(base), dict(point.overrides))
        result = run_scenario(scenario, progress=False, compare=False)   # the grid is the comparison
        if not keep_timelines:
            result = {k: v for k, v in result.items() if k != "timelines"}
        row.update(status="ok", result=plain(result))
    except Exception as e:  # noqa: BLE001 - the row records it and the sweep goes on
        row.update(status="error", error=f"{type(e).__name__}: {e}",
                   trace=traceback.format_exc(limit=-3)[-2000:])
    row["elapsed_s"] = round(time.perf_counter() - t0, 4)
    if marker is not None:
        marker.unlink(missing_ok=True)
    return row


def lost_row(p: Point, why: str) -> dict:
    """The error row of a point whose worker never returned one (a dead process, a Dask give-up)."""
    return {"key": p.key, "index": p.index, "device": p.device, "schedule": p.schedule, "seed": p.seed,
            "overrides": p.overrides, "status": "error", "error": why, "elapsed_s": None}


def plain(o: Any) -> Any:
    """A result as plain JSON data: numpy scalars/arrays to Python, NaN to None, infinities to "inf"."""
    from simulator.files import jsonable

    def walk(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(json.loads(json.dumps(o, default=jsonable, allow_nan=True)))
