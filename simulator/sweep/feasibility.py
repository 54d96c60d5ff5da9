"""The feasibility matrix of a sweep: device x schedule, where a "schedule" is everything but device and
seed (named schedule, the other axes, the workload); a cell fits only if every seed fits. Each cell names
its binding constraint and margin; the best feasible schedule per device follows ``OBJECTIVE``. The sweep
writes it once to ``matrix.json``; the report reads it from there."""
from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from simulator.verdict import RUN_END_CONSTRAINT as FATAL_CONSTRAINT  # the one run-end -> constraint map

MATRIX_FILE = "matrix.json"
TOO_BIG_ERROR = "ModelTooBig:"     # an error row from simulator.static_fit: the model is far too big
OBJECTIVE = ("best feasible schedule per device: highest mean accuracy gain (accuracy after - before "
             "personalisation, rounded to 0.1 percentage points), then lowest energy per day (J/day)")


def _rel_margin(c: dict) -> float:
    """Margin as a fraction of the budget (negative: violated); inf when the budget is 0 or missing."""
    b, m = c.get("budget"), c.get("margin")
    if not isinstance(m, (int, float)) or isinstance(m, bool):
        return math.inf
    if not isinstance(b, (int, float)) or b == 0 or not math.isfinite(b):
        return math.copysign(math.inf, m) if m else 0.0
    return m / abs(b)


def binding_constraint(result: dict) -> dict | None:
    """The constraint that decides the verdict: the fatal event or first violation if any, else the
    constraint with the smallest margin relative to its budget."""
    cons = [c for c in result.get("constraints") or [] if isinstance(c, dict)]
    fatal = result.get("fatal")
    if fatal:
        kind = fatal.get("kind", "fatal")
        name = FATAL_CONSTRAINT.get(kind)
        for c in cons:
            if c.get("name") == name:
                return {**c, "rel_margin": min(_rel_margin(c), -1e-9), "fatal": kind}
        return {"name": kind, "margin": None, "unit": "", "rel_margin": -math.inf, "ok": False,
                "fatal": kind, "message": fatal.get("message")}
    fv = result.get("first_violation")
    if fv:
        for c in cons:
            if c.get("name") == fv.get("constraint"):
                return {**c, "rel_margin": _rel_margin(c)}
    if not cons:
        return None
    c = min(cons, key=lambda c: (c.get("ok", True), _rel_margin(c)))
    return {**c, "rel_margin": _rel_margin(c)}


def peak_ram(result: dict) -> int:
    """The run's one peak-RAM figure, the verdict's: for a run out of memory, what was in use plus the
    allocation that failed (``fatal.ram_needed_bytes``), else the observed peak."""
    need = (result.get("fatal") or {}).get("ram_needed_bytes")
    return max(result.get("peak_ram_bytes") or 0, need or 0)


def _gain(result: dict) -> float | None:
    a, b = result.get("accuracy_after"), result.get("accuracy_before")
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) - float(b)
    return None


def feasibility(rows: Iterable[dict]) -> dict:
    """Device x schedule matrix (fits, binding constraint, margin) and the best schedule per device."""
    rows = sorted(rows, key=lambda r: r["index"])
    devices = list(dict.fromkeys(r["device"] for r in rows))
    schedules = list(dict.fromkeys(r["schedule"] for r in rows))
    cells: dict[str, dict[str, dict]] = {d: {} for d in devices}
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["device"], r["schedule"]), []).append(r)
    for (dev, sched), rs in groups.items():
        errs = [r for r in rs if r["status"] != "ok"]
        oks = [r["result"] for r in rs if r["status"] == "ok"]
        cell: dict[str, Any] = {"runs": len(rs), "errors": len(errs)}
        if errs and all(str(r.get("error", "")).startswith(TOO_BIG_ERROR) for r in errs):
            # refused by the static check (far too big for the RAM): a verdict, not a failure to run
            cell.update(fits=False, binding="peak_ram", fatal="too_big", margin=None, unit="B", rel_margin=None,
                        error=errs[0].get("error"))
        elif errs:
            cell.update(fits=None, binding="error", margin=None, unit="", rel_margin=None,
                        error=errs[0].get("error"))
        else:
            bind = [(binding_constraint(res) or {}) for res in oks]
            worst = min(bind, key=lambda b: b.get("rel_margin", math.inf)) if bind else {}
            gains = [g for g in (_gain(res) for res in oks) if g is not None]
            energies = [e for e in (res.get("energy_per_day_j") for res in oks) if isinstance(e, (int, float))]
            rel = worst.get("rel_margin")
            cell.update(
                fits=all(bool(res.get("fits")) for res in oks),
                binding=worst.get("name"), fatal=worst.get("fatal"), margin=worst.get("margin"), unit=worst.get("unit") or "",
                rel_margin=rel if rel is not None and math.isfinite(rel) else None,
                accuracy_gain=sum(gains) / len(gains) if gains else None,
                energy_per_day_j=sum(energies) / len(energies) if energies else None,
                peak_ram_bytes=max(peak_ram(res) for res in oks),
                ram_budget_bytes=oks[0].get("ram_budget_bytes"),
            )
        cells[dev][sched] = cell
    best = {}
    for dev in devices:
        feasible = [(s, c) for s, c in cells[dev].items() if c.get("fits")]
        if not feasible:
            best[dev] = None
            continue

        def score(sc: tuple[str, dict]) -> tuple:
            c = sc[1]
            g = c.get("accuracy_gain")
            e = c.get("energy_per_day_j")
            return (-(round(g * 1000) if g is not None else -10**9), e if e is not None else math.inf,
                    schedules.index(sc[0]))

        s, c = min(feasible, key=score)
        best[dev] = {"schedule": s, "accuracy_gain": c.get("accuracy_gain"),
                     "energy_per_day_j": c.get("energy_per_day_j"), "binding": c.get("binding"),
                     "rel_margin": c.get("rel_margin")}
    return {"devices": devices, "schedules": schedules, "cells": cells, "best": best, "objective": OBJECTIVE}


def write_matrix(out_dir: str | Path, rows: Iterable[dict]) -> dict:
    """Compute the matrix of ``rows`` and write it atomically to ``out_dir/matrix.json``; returns it."""
    fz = feasibility(rows)
    save_matrix(out_dir, fz)
    return fz


def save_matrix(out_dir: str | Path, fz: dict) -> Path:
    """Write matrix ``fz`` atomically to ``out_dir/matrix.json`` (readers see the old or the new one)."""
    from simulator.files import write_atomic

    return write_atomic(Path(out_dir) / MATRIX_FILE,
                        (json.dumps(fz, sort_keys=True, indent=2, default=str) + "\n").encode())


def read_matrix(out_dir: str | Path) -> dict:
    """The matrix a sweep wrote to ``out_dir/matrix.json``; a missing or unreadable one names the file."""
    path = Path(out_dir) / MATRIX_FILE
    try:
        fz = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no feasibility matrix (the sweep writes it before the report)") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a feasibility matrix ({e})") from None
    if not isinstance(fz, dict) or not {"devices", "schedules", "cells", "best"} <= set(fz):
        raise ValueError(f"{path}: not a feasibility matrix (needs devices, schedules, cells, best)")
    return fz
