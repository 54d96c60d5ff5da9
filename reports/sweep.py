"""The report of a sweep: the feasibility matrix (device x schedule) as a heat map and a table, the best
feasible schedule per device, and the scenarios that failed to run."""
from __future__ import annotations

from pathlib import Path

from simulator.agreement import AGREEMENT_RELATIVE as AGREEMENT

from . import fmt
from .document import Document, Image, Section, Table, write_report
from .plots import gain_heatmap_plot, heatmap_plot


def _cell_text(c: dict | None) -> str:
    if not c:
        return "not run"
    if c.get("fits") is None:
        return "error"
    verdict = "fits" if c["fits"] else "no"
    margin = fmt.signed_pct(c.get("rel_margin")) if c.get("rel_margin") is not None else "n/a"
    return f"{verdict}: {c.get('binding') or '-'} {margin}"


def build_sweep_document(fz: dict, rows: list[dict], title: str = "sweep") -> Document:
    """The sweep's report from its feasibility matrix ``fz`` (as the sweep wrote it) and its rows."""
    rows = sorted(rows, key=lambda r: r.get("index", 0))
    # the matrix on disk has its keys sorted: order follows its device and schedule lists, not dict order
    devices, schedules, cells, best = fz["devices"], fz["schedules"], fz["cells"], fz["best"]
    n_err = sum(r["status"] != "ok" for r in rows)
    n_fit = sum(bool(c.get("fits")) for d in devices for c in cells[d].values())
    n_cells = sum(len(cells[d]) for d in devices)
    doc = Document(title=f"edgesim sweep report: {title}",
                   subtitle=f"{len(rows)} scenarios: {len(devices)} devices x {len(schedules)} schedules"
                            f"{' (seeds merged: a cell fits only if every seed fits)' if len(rows) > n_cells else ''}")
    v = Section("Verdict")
    v.blocks.append(f"**{n_fit} of {n_cells}** device x schedule combinations fit; "
                    f"{sum(b is not None for b in best.values())} of {len(devices)} devices have a feasible "
                    f"schedule; {n_err} scenario(s) failed to run.")
    v.blocks.append(Table(["device", "best schedule", "accuracy gain", "energy per day", "binding constraint",
                           "margin (% of budget)"],
                          [[d, b["schedule"], _pp(b.get("accuracy_gain")), fmt.quantity(b.get("energy_per_day_j"), "J/day"),
                            str(b.get("binding") or "-"), fmt.signed_pct(b.get("rel_margin"))] if b else
                           [d, "none fits", "n/a", "n/a", "-", "n/a"] for d, b in ((d, best.get(d)) for d in devices)],
                          caption="Best feasible schedule per device"))
    v.blocks.append(f"Objective: {fz['objective']}.")
    doc.sections.append(v)
    m = Section("Feasibility matrix")
    m.blocks.append("Each cell: the verdict, the binding constraint (the violated one, or the one with the "
                    "least margin) and its margin as a percentage of its budget.")
    m.blocks.append(Image("feasibility.png", heatmap_plot(devices, schedules, cells),
                          "Feasibility heat map: device x schedule"))
    m.blocks.append(Image("accuracy_gain.png", gain_heatmap_plot(devices, schedules, cells),
                          "Accuracy gain from personalisation: device x schedule"))
    m.blocks.append(Table(["device"] + schedules, [[d] + [_cell_text(cells[d].get(s)) for s in schedules]
                                                   for d in devices], caption="Device x schedule"))
    m.blocks.append(Table(["device", "schedule", "fits", "binding constraint", "margin", "peak RAM / budget",
                           "accuracy gain", "energy per day"],
                          [[d, s, {True: "yes", False: "no"}.get(c.get("fits"), "error"), str(c.get("binding") or "-"),
                            fmt.quantity(c.get("margin"), c.get("unit")),
                            f"{fmt.nbytes(c.get('peak_ram_bytes'))} / {fmt.nbytes(c.get('ram_budget_bytes'))}"
                            if c.get("fits") is not None else "n/a",
                            _pp(c.get("accuracy_gain")), fmt.quantity(c.get("energy_per_day_j"), "J/day")]
                           for d in devices for s in schedules if (c := cells[d].get(s)) is not None], caption="All cells"))
    doc.sections.append(m)
    if any("verification" in c for d in devices for c in cells[d].values()):
        doc.sections.append(_verification_section(devices, schedules, cells, fz.get("verification")))
    if n_err:
        e = Section("Errors")
        e.blocks.append("Scenarios that raised or whose worker died; the sweep went on without them.")
        e.blocks.append(Table(["scenario", "error"], [[r["key"], str(r.get("error"))[:300]] for r in rows
                                                      if r["status"] != "ok"]))
        doc.sections.append(e)
    return doc


def _verification_section(devices: list[str], schedules: list[str], cells: dict, summary: dict | None = None) -> Section:
    """``edgesim sweep --verify``: each fitting cell's training step on its device's twin beside the
    simulator's prediction (the cell's ``verification`` record, as ports/verify.py writes it; a cell whose
    identical step another cell ran names it: ``shared_with``)."""
    s = Section("Verification on the virtual twins")
    s.blocks.append(f"One training step of each fitting cell's schedule (its first seed) in MicroPython 1.25 on "
                    f"its device's QEMU twin (-icount shift=0,sleep=off). Agree: heap peak and instructions per "
                    f"step within ±{AGREEMENT:.0%} of the prediction. Cells whose device has no twin say why. "
                    f"Cells with the same training step (device, runtime, workload, techniques, batch, seed) share "
                    f"one twin run: \"same step as\" names the cell that ran it.")
    if summary:
        s.blocks.append(f"{summary['cells']} cells, {summary['twin_runs']} twin run(s) in this pass "
                        f"({summary.get('refused', 0)} of them did not run the step: see the reasons); "
                        f"{summary.get('shared', 0)} cell(s) shared a run of the same step, "
                        f"{summary.get('verified_earlier', 0)} were verified earlier, "
                        f"{summary.get('no_twin', 0)} have no twin.")
    rows = []
    for d in devices:
        for sched in schedules:
            v = (cells[d].get(sched) or {}).get("verification")
            if v is None:
                continue
            same = f" (same step as {v['shared_with']})" if v.get("shared_with") else ""
            if not v.get("verified"):
                rows.append([d, sched, "-", "n/a", "n/a", "n/a", "n/a", f"not run: {v.get('reason')}{same}"])
                continue
            m, p = v["measured"], v["predicted"]
            if not m.get("fits"):
                rows.append([d, sched, v["machine"], "out of memory", fmt.nbytes(p.get("heap_peak_bytes")), "n/a",
                             fmt.count(p.get("instructions_per_step")), ("yes" if v.get("agree") else "no") + same])
                continue
            e = v["errors"]
            rows.append([d, sched, v["machine"], fmt.nbytes(m["heap_peak_bytes"]), fmt.nbytes(p["heap_peak_bytes"])
                         + f" ({fmt.signed_pct(e['heap_peak'])})", fmt.count(m["instructions_per_step"]),
                         fmt.count(p["instructions_per_step"]) + f" ({fmt.signed_pct(e['instructions_per_step'])})",
                         ("yes" if v.get("agree") else "no") + same])
    s.blocks.append(Table(["device", "schedule", "twin", "heap peak (twin)", "heap peak (simulator, error)",
                           "instructions per step (twin)", "instructions per step (simulator, error)",
                           f"agree within ±{AGREEMENT:.0%}"], rows, caption="measured vs predicted, one training step"))
    return s


def _pp(x) -> str:
    return f"{100 * x:+.1f} pp" if fmt.finite(x) else "n/a"


def render_sweep(rows: list[dict], out_dir: str | Path, title: str = "sweep") -> Path:
    """Write report.html, report.md and the heat maps for sweep ``rows`` into ``out_dir``, from the
    feasibility matrix the sweep wrote there (``matrix.json``, never recomputed); returns report.html."""
    from simulator.sweep import read_matrix

    if not rows:
        raise ValueError("render_sweep: no finished scenarios to report")
    return write_report(build_sweep_document(read_matrix(out_dir), list(rows), title), out_dir)
