"""The report of one simulated run (``edgesim plan`` / ``edgesim demo``): verdict first, then memory,
CPU, battery, learning, technique comparison and, when an emulation exists, sim vs emulator."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from . import fmt, plots
from .document import Document, Image, Section, Table, write_report
from .emulation import emulation_section, verification_section


def _runtime_reserved(result: dict) -> int | None:
    """RAM the runtime takes before the workload (from the result, else the device profile)."""
    if fmt.finite(result.get("ram_reserved_bytes")):
        return result["ram_reserved_bytes"]
    try:
        from device_profiles import load_profile

        return load_profile(result["device"]).runtime_for(result["runtime"]).ram_reserved_bytes
    except Exception:  # noqa: BLE001 - a user profile that moved: the plot just omits the layer
        return None


def _ended(r: dict) -> tuple[float, str] | None:
    """(time, reason) of a run that stopped early (out of memory, battery empty), else None."""
    f = r.get("fatal")
    if not f or not fmt.finite(f.get("time_s")):
        return None
    return float(f["time_s"]), f"run stopped: {str(f.get('kind', 'fatal')).replace('_', ' ')} at t = {fmt.seconds(f['time_s'])}"


def _span(r: dict) -> float:
    """The simulated time the run covered: where it stopped, if it stopped early."""
    end = _ended(r)
    return end[0] if end else float(r.get("duration_s") or 0.0)


def peak_ram(r: dict) -> tuple[Any, str]:
    """The run's one peak-RAM figure and its wording: for an out-of-memory run, what was in use plus the
    allocation that failed (the figure the verdict checks), said once."""
    peak, need = r.get("peak_ram_bytes"), (r.get("fatal") or {}).get("ram_needed_bytes")
    if fmt.finite(need) and (not fmt.finite(peak) or need > peak):
        return need, (f"{fmt.nbytes(need)} (in use {fmt.nbytes(peak)} + the allocation that failed, "
                      f"{fmt.nbytes(need - peak) if fmt.finite(peak) else 'n/a'})")
    return peak, fmt.nbytes(peak)


def _status(c: dict) -> str:
    if c.get("observed") is None and c.get("ok"):
        return "not observed"
    return "ok" if c.get("ok") else "VIOLATED"


def verdict_section(r: dict) -> Section:
    fits = bool(r.get("fits"))
    s = Section("Verdict")
    s.blocks.append(f"**{'FITS' if fits else 'DOES NOT FIT'}**: {r.get('workload')} on {r.get('device')} "
                    f"({r.get('runtime')} runtime), scenario {r.get('scenario')}, seed {r.get('seed')}, "
                    f"{fmt.seconds(r.get('duration_s'))} simulated.")
    rows = []
    for c in r.get("constraints") or []:
        b, m = c.get("budget"), c.get("margin")
        rel = (m / abs(b)) if fmt.finite(b) and fmt.finite(m) and b else None
        rows.append([c.get("name", "?"), fmt.quantity(b, c.get("unit")), fmt.quantity(c.get("observed"), c.get("unit")),
                     fmt.quantity(m, c.get("unit")), fmt.signed_pct(rel), _status(c), c.get("note") or ""])
    s.blocks.append(Table(["constraint", "budget", "observed", "margin", "margin (% of budget)", "status", "note"],
                          rows, caption="Constraints"))
    fv, fatal = r.get("first_violation"), r.get("fatal")
    if fatal:
        s.blocks.append(f"**Fatal: {fatal.get('kind')}** at t = {fmt.seconds(fatal.get('time_s'))} in op "
                        f"{fatal.get('op')}: {str(fatal.get('message') or '').rstrip('.')}. The run stopped there.")
    if fv:
        s.blocks.append(f"**First violation: {fv.get('constraint')}** at t = {fmt.seconds(fv.get('time_s'))}"
                        f" (op {fv.get('op')}): {fv.get('message')}")
    s.blocks.append(Table(["figure", "value"], [
        ["peak RAM (workload + runtime)", peak_ram(r)[1]],
        ["RAM budget", fmt.nbytes(r.get("ram_budget_bytes"))],
        ["flash (model + firmware) / budget", f"{fmt.nbytes(r.get('flash_bytes'))} / {fmt.nbytes(r.get('flash_budget_bytes'))}"],
        ["worst training-step latency", fmt.seconds(r.get("step_latency_s"))],
        ["inferences / dropped frames", f"{fmt.count(r.get('inferences'))} / {fmt.count(r.get('dropped_frames'))}"],
        ["inference deadline miss rate", fmt.pct(r.get("deadline_miss_rate"), 2)],
        ["training steps", fmt.count(r.get("training_steps"))],
        ["training MACs (after techniques)", fmt.count(r.get("macs_total"))],
        ["energy per day", _energy(r)],
        ["battery life", _battery_life(r)],
        ["flash writes / wear per year", f"{fmt.nbytes(r.get('flash_writes_bytes'))} / "
                                         f"{fmt.pct(r.get('flash_wear_fraction_per_year'), 3)}"],
        ["techniques", ", ".join(r.get("techniques") or []) or "none (plain backprop)"],
    ], caption="Key figures"))
    return s


def _energy(r: dict) -> str:
    e = r.get("energy_per_day_j")
    return fmt.quantity(e, "J/day") if e is not None else "not observed (the run stopped before it used energy)"


def _battery_life(r: dict) -> str:
    d = r.get("battery_life_days")
    return fmt.quantity(d, "days") if d is not None else "not observed"


def memory_section(r: dict, tl: dict) -> Section:
    s = Section("Memory")
    naive, lower, planned = r.get("naive_ram_bytes"), r.get("lower_bound_ram_bytes"), r.get("planned_ram_bytes")
    reserved = _runtime_reserved(r)
    s.blocks.append("Left: RAM in use over the run, stacked by tensor kind (the runtime's reserve at the "
                    "bottom), with the device's RAM budget. Right: what was live at the peak, beside the "
                    "memory planner's figures for one training step (each on top of the runtime reserve).")
    s.blocks.append(Image("memory.png", plots.memory_plot(tl.get("memory") or {}, r.get("ram_budget_bytes"),
                                                          reserved, naive, planned, lower, _span(r), _ended(r),
                                                          (r.get("fatal") or {}).get("ram_needed_bytes")),
                          "Memory over time stacked by tensor kind, with the RAM budget"))

    def ratio(a: Any, b: Any) -> str:
        return f"{a / b:.2f}x" if fmt.finite(a) and fmt.finite(b) and b else "n/a"

    s.blocks.append(Table(["figure", "bytes", "note"], [
        ["naive (every tensor live for the whole step)", fmt.nbytes(naive), f"{ratio(naive, planned)} the planned arena"],
        ["liveness lower bound", fmt.nbytes(lower), "max bytes live at any op: the floor without recompute"],
        ["planned arena", fmt.nbytes(planned), f"{ratio(planned, lower)} the lower bound"],
        ["runtime reserve", fmt.nbytes(reserved), "taken before the workload starts"],
        ["peak observed (workload + runtime)", peak_ram(r)[1], ""],
        ["RAM budget", fmt.nbytes(r.get("ram_budget_bytes")), ""],
    ], caption="Memory planner figures (one training step)"))
    return s


def cpu_section(r: dict, tl: dict) -> Section:
    s = Section("CPU timeline")
    cpu = tl.get("cpu") or []
    dur = _span(r) or max((c["end_s"] for c in cpu), default=0.0)
    s.blocks.append("Who held the CPU: inference preempts training; preempted training slices are hatched.")
    s.blocks.append(Image("cpu.png", plots.cpu_plot(cpu, dur, tl.get("cpu_busy_by_hour"), _ended(r)),
                          "CPU timeline: inference vs training"))
    rows = []
    hours = tl.get("cpu_busy_by_hour")
    for task in ("inference", "training"):
        iv = [c for c in cpu if c.get("task") == task]
        busy = (sum(h.get(task) or 0.0 for h in hours) if hours
                else sum(c["end_s"] - c["start_s"] for c in iv))
        rows.append([task, fmt.seconds(busy), fmt.pct(busy / dur if dur else None, 3),
                     fmt.count(sum(bool(c.get("preempted")) for c in iv))])
    s.blocks.append(Table(["task", "busy time", "share of run", "preempted slices"], rows, caption="CPU use"))
    extra = [["preemptions (training interrupted by inference)", fmt.count(r.get("preemptions"))],
             ["worst inference latency", fmt.seconds(r.get("worst_inference_latency_s"))],
             ["inference deadline misses", fmt.count(r.get("deadline_misses"))],
             ["dropped frames / windows", f"{fmt.count(r.get('dropped_frames'))} / {fmt.count(r.get('dropped_windows'))}"]]
    s.blocks.append(Table(["figure", "value"], extra, caption="Scheduling"))
    if tl.get("cpu_truncated"):
        s.blocks.append("The slice list in the result is capped (every training slice and its preemptors are "
                        "kept); the left panel uses the run's exact per-hour totals.")
    return s


def battery_section(r: dict, tl: dict) -> Section:
    s = Section("Battery")
    bat = tl.get("battery") or {}
    q = bat.get("charge_j") or []
    if len(q) >= 2 and _span(r) > 0:
        s.blocks.append(Image("battery.png", plots.battery_plot(bat, r.get("energy_per_day_j"), _ended(r)),
                              "Battery charge over the run"))
    else:
        s.blocks.append(f"No battery plot: the run covered {fmt.seconds(_span(r))} of simulated time "
                        f"({len(q)} charge sample{'s' if len(q) != 1 else ''}), nothing to draw.")
    s.blocks.append(Table(["figure", "value"], [
        ["capacity", fmt.quantity(bat.get("capacity_j"), "J")],
        ["charge at start / end", f"{fmt.quantity(q[0] if q else None, 'J')} / {fmt.quantity(q[-1] if q else None, 'J')}"],
        ["energy per day", _energy(r)],
        ["battery life", _battery_life(r)],
    ], caption="Energy"))
    return s


def learning_section(r: dict, tl: dict) -> Section:
    s = Section("Learning")
    learning = tl.get("learning") or {}
    if learning.get("step"):
        s.blocks.append(Image("learning.png", plots.learning_plot(learning),
                              "Learning curve and accuracy during personalisation"))
    else:
        s.blocks.append("No learning plot: no training step ran (the accuracies below are of the model as deployed).")
    s.blocks.append(Table(["accuracy", "before personalisation", "after", "change"], [
        ["user data (new)", fmt.pct(r.get("accuracy_before")), fmt.pct(r.get("accuracy_after")),
         _delta(r.get("accuracy_after"), r.get("accuracy_before"))],
        ["old classes (retention)", fmt.pct(r.get("retention_before")), fmt.pct(r.get("retention_after")),
         _delta(r.get("retention_after"), r.get("retention_before"))],
    ], caption="Accuracy before and after (held-out data)"))
    return s


def _delta(a: Any, b: Any) -> str:
    return f"{100 * (a - b):+.1f} pp" if fmt.finite(a) and fmt.finite(b) else "n/a"


def _variant_label(v: dict, i: int) -> str:
    lab = v.get("label") or v.get("name")
    if lab:
        return str(lab)
    t = v.get("techniques")
    if isinstance(t, dict):
        return ", ".join(f"{k}={t[k]}" for k in sorted(t)) or "baseline"
    if isinstance(t, list):
        return ", ".join(map(str, t)) or "baseline"
    return f"variant {i + 1}"


def comparison_section(variants: list[dict]) -> Section:
    s = Section("Technique comparison")
    s.blocks.append("Each variant re-runs the same scenario with different technique switches; MACs, peak RAM "
                    "and accuracy are measured from the run, not assumed.")
    labels = [_variant_label(v, i) for i, v in enumerate(variants)]
    base = variants[0] if variants else {}
    rows = []
    for lab, v in zip(labels, variants, strict=True):
        macs, b_macs = v.get("macs_total"), base.get("macs_total")
        rows.append([lab, fmt.count(macs), (f"{100 * (macs - b_macs) / b_macs:+.1f} %"
                                            if fmt.finite(macs) and fmt.finite(b_macs) and b_macs else "n/a"),
                     fmt.nbytes(v.get("peak_ram_bytes")), fmt.nbytes(v.get("lower_bound_ram_bytes")),
                     fmt.count(v.get("training_steps")), fmt.quantity(v.get("energy_per_day_j"), "J/day"),
                     fmt.pct(v.get("accuracy_after")), fmt.pct(v.get("retention_after")),
                     {True: "fits", False: "does not fit"}.get(v.get("fits"), "n/a")])
    s.blocks.append(Table(["variant", "training MACs", "MACs vs first", "peak RAM", "liveness lower bound",
                           "training steps", "energy per day", "user accuracy after", "retention after",
                           "verdict"], rows,
                          caption="Technique variants"))
    if variants:
        s.blocks.append(Image("techniques.png", plots.comparison_plot(
            labels, [v.get("macs_total") for v in variants], [v.get("peak_ram_bytes") for v in variants],
            [v.get("accuracy_after") for v in variants], [v.get("fits") for v in variants]),
            "Technique comparison: MACs, peak RAM, accuracy"))
    return s


def build_run_document(result: dict, emulation: dict | None = None) -> Document:
    if not isinstance(result, dict) or "fits" not in result:
        raise ValueError("render_run: result must be a run result dict (simulator/result.py); "
                         f"got {type(result).__name__} without 'fits'")
    tl = result.get("timelines") or {}
    doc = Document(title=f"edgesim report: {result.get('scenario')}",
                   subtitle=f"{result.get('workload')} on {result.get('device')} ({result.get('runtime')}), "
                            f"seed {result.get('seed')}: will on-device training fit this device on this schedule?")
    doc.sections.append(verdict_section(result))
    if result.get("verification"):
        doc.sections.append(verification_section(result["verification"]))
    doc.sections.append(memory_section(result, tl))
    doc.sections.append(cpu_section(result, tl))
    doc.sections.append(battery_section(result, tl))
    doc.sections.append(learning_section(result, tl))
    if result.get("comparison"):
        doc.sections.append(comparison_section(list(result["comparison"])))
    emu = emulation or result.get("emulation")
    if emu:
        doc.sections.append(emulation_section(emu))
    return doc


def render_run(result: dict, out_dir: str | Path, emulation: dict | None = None) -> Path:
    """Write report.html, report.md and the PNGs for one run into ``out_dir``; returns report.html."""
    return write_report(build_run_document(result, emulation), out_dir)
