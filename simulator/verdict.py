"""The verdict: every constraint with budget, observed, unit, margin and ok; the first violation
(docs/architecture.md §3).

``CONSTRAINTS`` is the one table of constraints: the result's rows come from it in its order. Upper-bound
constraints have margin = budget - observed; lower-bound ones (battery life) have margin = observed -
budget. An observed value of None means "does not apply / unbounded" (for example an energy-neutral
battery) and counts as ok. ``RUN_END_CONSTRAINT`` names the constraint a run-ending event breaks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Constraint:
    name: str
    unit: str
    bound: str      # "max": observed must be <= budget; "min": observed must be >= budget


CONSTRAINTS = (
    Constraint("peak_ram", "B", "max"),
    Constraint("flash", "B", "max"),
    Constraint("step_latency", "s", "max"),
    Constraint("deadline_miss_rate", "1", "max"),
    Constraint("energy_per_day", "J/day", "max"),
    Constraint("battery_life", "days", "min"),
    Constraint("flash_wear", "endurance/year", "max"),
)
CONSTRAINT_NAMES = tuple(c.name for c in CONSTRAINTS)
_BY_NAME = {c.name: c for c in CONSTRAINTS}

# run-ending event kind (simulator.run_end.RUN_END_KINDS) -> the constraint it breaks
RUN_END_CONSTRAINT = {"out_of_memory": "peak_ram", "fragmentation": "peak_ram", "battery_empty": "battery_life"}


def constraint(name: str, budget: float | None, observed: float | None, note: str = "") -> dict[str, Any]:
    """One row of the verdict for the constraint ``name`` of ``CONSTRAINTS``."""
    c = _BY_NAME[name]
    if budget is None or observed is None:
        margin, ok = None, True
    else:
        margin = budget - observed if c.bound == "max" else observed - budget
        ok = margin >= 0
    row = {"name": name, "budget": budget, "observed": observed, "unit": c.unit, "margin": margin, "ok": ok,
           "bound": c.bound}
    if note:
        row["note"] = note
    return row


def verdict_rows(budgets: dict[str, Any], observed: dict[str, Any], notes: dict[str, str]) -> list[dict[str, Any]]:
    """All rows, in ``CONSTRAINTS`` order, from budgets, observed values and notes keyed by name."""
    return [constraint(c.name, budgets[c.name], observed[c.name], notes.get(c.name, "")) for c in CONSTRAINTS]


def first_violation(rows: list[dict[str, Any]], when: dict[str, tuple[float, str]],
                    fatal: dict[str, Any] | None) -> dict[str, Any] | None:
    """The earliest violated constraint (by sim time) or the fatal event, whichever came first."""
    cands = []
    fatal_name = RUN_END_CONSTRAINT[fatal["kind"]] if fatal else None
    for r in rows:
        if not r["ok"] and r["name"] != fatal_name:
            t, op = when.get(r["name"], (float("inf"), ""))
            cands.append((t, 1, r["name"], op,
                          f"{r['name']}: observed {_fmt(r['observed'])} {r['unit']} vs budget "
                          f"{_fmt(r['budget'])} {r['unit']}"))
    if fatal:
        cands.append((fatal["time_s"], 0, fatal_name, fatal["op"], fatal["message"]))
    if not cands:
        return None
    t, _, name, op, msg = min(cands, key=lambda c: (c[0], c[1]))   # a fatal event wins a tie
    return {"constraint": name, "time_s": None if t == float("inf") else t, "op": op, "message": msg}


def _span(seconds: float) -> str:
    """A duration in the unit people think in: s, min, h or days."""
    for unit, size in (("day(s)", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def summarise(result: dict[str, Any]) -> str:
    """What the run found, in plain words (for the demo and plan)."""
    lines = []
    dev, wl = result["device"], result["workload"]
    head = (f"Personalising {wl} on {dev} ({result['runtime']} runtime) over {_span(result['duration_s'])} "
            "of simulated time: ")
    if result["fits"]:
        head += "it FITS."
    else:
        head += "it does NOT fit."
    lines.append(head)
    fv = result["first_violation"]
    if result["fatal"]:
        f = result["fatal"]
        lines.append(f"The run stopped at t={f['time_s']:.1f} s: {f['message']}.")
    elif fv:
        at = f" at t={fv['time_s']:.1f} s" if fv["time_s"] is not None else ""
        lines.append(f"First violation{at}: {fv['message']}" + (f" (op {fv['op']})" if fv["op"] else "") + ".")
    ram = result["peak_ram_bytes"]
    need = (result["fatal"] or {}).get("ram_needed_bytes")
    if need is not None and need > ram:       # one peak figure, the verdict's: in use + what failed, said once
        line = (f"Peak RAM {need:,} B of {result['ram_budget_bytes']:,} B ({ram:,} B in use + the "
                f"{need - ram:,} B allocation that failed)")
    else:
        line = f"Peak RAM {ram:,} B of {result['ram_budget_bytes']:,} B"
    if result["lower_bound_ram_bytes"] is not None:
        line += (f" (workload alone: liveness lower bound for one step {result['lower_bound_ram_bytes']:,} B, "
                 f"naive {result['naive_ram_bytes']:,} B)")
    lines.append(line + ".")
    lines.append(f"{result['training_steps']} training steps ({result['macs_total']:,} MACs), worst step "
                 f"{_fmt(result['step_latency_s'])} s; {result['inferences']} inferences, deadline miss rate "
                 f"{'not observed' if result['deadline_miss_rate'] is None else format(result['deadline_miss_rate'], '.2%')}, "
                 f"{result['dropped_frames']} frames dropped, "
                 f"{result.get('preemptions', 0)} preemptions.")
    if result.get("training_steps_replayed"):
        h = result.get("horizon") or {}
        lines.append(f"Long horizon: {result['training_steps_real']:,} steps ran the real training, "
                     f"{result['training_steps_replayed']:,} were charged from recorded steps (accuracy comes from "
                     f"the real ones)" + (f"; {h['days_charged']:g} repeated days were charged as a whole after "
                                          f"{h['days_simulated']:g} simulated ones" if h.get("days_charged") else "")
                     + ".")
    ts = result.get("time_in_state_s") or {}
    if ts.get("active") is not None and result["duration_s"]:
        span = sum(v for v in ts.values() if v)
        if span > 0:
            lines.append("CPU " + ", ".join(f"{k} {v:,.1f} s ({v / span:.1%})" for k, v in ts.items()
                                            if v is not None) + ".")
    bl, e = result["battery_life_days"], result["energy_per_day_j"]
    if e is not None:
        stopped = result["fatal"] and result["fatal"]["kind"] != "battery_empty"
        lines.append(f"Energy {e:.1f} J/day; battery life "
                     + ((f"not observed (the run stopped at t={result['fatal']['time_s']:.1f} s; nothing is "
                         "extrapolated from it)") if stopped else "unbounded (harvesting covers the load)"
                        if bl is None else f"{bl:.1f} days") + ".")
    if result["accuracy_before"] is not None:
        lines.append(f"User accuracy {result['accuracy_before']:.1%} -> {result['accuracy_after']:.1%}; "
                     f"retention of the old classes {result['retention_before']:.1%} -> "
                     f"{result['retention_after']:.1%}.")
    for c in result.get("comparison") or []:
        if c["label"] == "as scheduled":
            continue
        if c.get("fatal"):
            need = c.get("ram_needed_bytes")
            kind, _, rest = c["fatal"].partition(" ")
            what = f"does NOT fit ({kind.replace('_', ' ')} {rest}" + (
                f": it needs {need:,} B of {result['ram_budget_bytes']:,} B RAM)" if need else ")")
        else:
            acc = "-" if c["accuracy_after"] is None else f"{c['accuracy_after']:.1%}"
            en = "-" if c["energy_per_day_j"] is None else f"{c['energy_per_day_j']:.1f}"
            what = (f"{'fits' if c['fits'] else 'does NOT fit'}: {c['macs_total']:,} MACs, peak RAM "
                    f"{c['peak_ram_bytes']:,} B, user accuracy {acc}, {en} J/day")
        lines.append(f"  variant {c['label']}: {what}.")
    return "\n".join(lines)
