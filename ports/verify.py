"""Verify a plan on the device's twin: one training step of the scenario's schedule (its model, batch,
optimiser and techniques) in MicroPython on the virtual twin, beside the simulator's prediction for
the same step (cost model with per-kind costs and the collector, heap model).

``verify_scenario`` returns the ``verification`` record ``edgesim plan --verify`` adds to the verdict,
``result.json`` and the report: measured and predicted heap peak, instructions per step and step time at
the profile's clock and cycles per instruction, their relative errors, and whether they agree.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

RUNTIME = "micropython"


def verify_scenario(scenario: Any, *, where: str | None = None, log_path: str | Path | None = None,
                    progress: bool = False, steps: int = 1) -> dict:
    """Run ``steps`` training step(s) of ``scenario`` (a dict, TOML path or Scenario) on its device's
    twin. A scenario the twin cannot run (no twin, the native runtime, a technique the port lacks) gives
    a record with ``verified: False`` and the reason, not an error."""
    from simulator.agreement import AGREEMENT_RELATIVE
    from simulator.inputs import job_for, profile_for
    from simulator.scenario import load_scenario

    from .boards import board_from_profile, missing_requirements
    from .emulate import emulate_twin
    from .errors import PortError

    sc = load_scenario(scenario, where=where)
    profile = profile_for(sc)
    base = {"device": profile.name, "workload": sc.workload.model, "batch": sc.schedule.batch,
            "runtime": sc.runtime, "techniques": sc.techniques.active(), "tolerance_relative": AGREEMENT_RELATIVE}
    if sc.runtime != RUNTIME:
        return base | {"verified": False, "reason": f"the scenario plans for the {sc.runtime} runtime; the twins "
                                                    "verify MicroPython (edgesim port checks generated C)"}
    if profile.emulator is None or not profile.emulator.twin:
        why = profile.no_twin_reason or "its profile has no [emulator] twin"
        return base | {"verified": False, "reason": f"{profile.name} has no virtual twin: {why}"}
    board = board_from_profile(profile)
    missing = missing_requirements(board)
    if missing:
        return base | {"verified": False, "reason": "; ".join(missing)}
    job = job_for(sc)
    try:
        res = emulate_twin(board, sc.workload.model, steps, job=job, batch=sc.schedule.batch, log_path=log_path,
                           progress=progress)
    except ValueError as e:            # the port's limits or techniques: said before any boot
        return base | {"verified": False, "reason": str(e)}
    except PortError as e:
        return base | {"verified": False, "reason": f"the twin failed: {e.message}", "serial_log": e.log_path}
    return base | verification_record(res, board)


def verification_record(res: dict, board: Any) -> dict:
    """Measured vs predicted from an emulation result: heap, instructions, time, errors, agreement."""
    from simulator.agreement import AGREEMENT_RELATIVE

    hz, cpi = board.clock_hz, board.cycles_per_instruction
    out: dict[str, Any] = {
        "verified": True, "board": board.name, "machine": res["machine"], "firmware": res["firmware"],
        "heap_bytes": res.get("heap_bytes"), "serial_log": res["serial_log"], "clock_hz": hz,
        "cycles_per_instruction": cpi, "steps": res["steps"], "port_footprint_bytes": res.get("port_footprint_bytes"),
        "predicted": {"fits": res["predicted_fits"], "heap_peak_bytes": res["predicted_heap_peak_bytes"],
                      "instructions_per_step": res["predicted_instructions_per_step"],
                      "step_s": res["predicted_instructions_per_step"] * cpi / hz,
                      "gc_instructions_per_step": res.get("predicted_gc_instructions_per_step")},
    }
    if not res["fits"]:
        out["measured"] = {"fits": False, "guest_memory_error": res.get("guest_memory_error")}
        out["agree"] = res["predicted_fits"] is False
        return out
    ips = res["instructions_per_step"]
    out["measured"] = {"fits": True, "heap_peak_bytes": res["heap_peak_bytes"], "instructions_per_step": ips,
                       "step_s": ips * cpi / hz, "losses": res["losses"], "host_losses": res["host_losses"],
                       "losses_match_host": res["losses_match_host"]}
    out["errors"] = {"heap_peak": res["heap_error"], "instructions_per_step": res["instructions_error"],
                     "step_s": res["instructions_error"]}
    out["agree"] = bool(res["predicted_fits"] and abs(res["heap_error"]) <= AGREEMENT_RELATIVE
                        and abs(res["instructions_error"]) <= AGREEMENT_RELATIVE)
    return out


def verification_rows(v: dict) -> list[list[str]]:
    """Rows for a terminal or report table: figure, twin, simulator, error (units in every figure)."""
    from simulator.units import human_bytes

    if not v.get("verified"):
        return [["verification", "not run", "-", v.get("reason", "")]]
    m, p = v["measured"], v["predicted"]
    if not m["fits"]:
        return [["heap", f"out of memory ({m.get('guest_memory_error')})",
                 "fits" if p["fits"] else "does not fit", "agree" if v["agree"] else "DISAGREE"]]
    e = v["errors"]
    return [
        ["heap peak", f"{m['heap_peak_bytes']:,} B ({human_bytes(m['heap_peak_bytes'])})",
         f"{p['heap_peak_bytes']:,} B ({human_bytes(p['heap_peak_bytes'])})", f"{100 * e['heap_peak']:+.1f} %"],
        ["instructions per step", f"{m['instructions_per_step']:,.0f}", f"{p['instructions_per_step']:,.0f}",
         f"{100 * e['instructions_per_step']:+.1f} %"],
        [f"step time at {v['clock_hz'] / 1e6:g} MHz, CPI {v['cycles_per_instruction']:g}",
         f"{1e3 * m['step_s']:.1f} ms", f"{1e3 * p['step_s']:.1f} ms", f"{100 * e['step_s']:+.1f} %"],
    ]
