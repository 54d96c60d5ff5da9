"""The sim-vs-emulator part of a report: what the simulator predicted for a board beside what the
emulated board measured (heap peak, instructions per step, the loss curve against the host's).
Reads the ``edgesim emulate`` dict (ports/emulate.py); optional fields are shown when present."""
from __future__ import annotations

from pathlib import Path

from simulator.agreement import AGREEMENT_RELATIVE as AGREEMENT

from . import fmt, plots
from .document import Document, Image, Section, Table, write_report


def _ratio_row(what: str, measured, predicted, show) -> list[str]:
    if fmt.finite(measured) and fmt.finite(predicted) and measured:
        err = (predicted - measured) / measured
        ok = "yes" if abs(err) <= AGREEMENT else "no"
        return [what, show(measured), show(predicted), fmt.signed_pct(err), ok]
    return [what, show(measured), show(predicted), "n/a", "n/a"]


def _agreement_rows(emu: dict) -> list[list[str]]:
    """Measured vs predicted, one row per quantity; the last cell says whether it is within the goal."""
    rows = [_ratio_row("heap peak", emu.get("heap_peak_bytes"), emu.get("predicted_heap_peak_bytes"), fmt.nbytes)]
    if "predicted_workload_heap_peak_bytes" in emu:
        rows.append(_ratio_row("heap peak of the workload alone", emu.get("workload_heap_peak_bytes"),
                               emu.get("predicted_workload_heap_peak_bytes"), fmt.nbytes))
    rows.append(_ratio_row("instructions per training step", emu.get("instructions_per_step"),
                           emu.get("predicted_instructions_per_step"), fmt.count))
    if "predicted_device_seconds_per_step" in emu:
        rows.append(_ratio_row("device time per training step", emu.get("device_seconds_per_step"),
                               emu.get("predicted_device_seconds_per_step"), fmt.seconds))
    return rows


def _board_oom(emu: dict) -> bool:
    return emu.get("fits") is False


def emulation_section(emu: dict, prefix: str = "") -> Section:
    """A section comparing the emulator's measurements with the simulator's predictions."""
    board = str(emu.get("board") or "board")
    sec = Section("Simulator vs emulator")
    sec.blocks.append(f"Board **{board}** running firmware {emu.get('firmware') or 'n/a'}"
                      f"{', workload ' + str(emu['workload']) if emu.get('workload') else ''}"
                      f"{', ' + str(emu['steps']) + ' training steps (batch 1)' if emu.get('steps') else ''}. "
                      f"Agreement goal: the prediction within ±{AGREEMENT:.0%} of the measurement.")
    if _board_oom(emu):
        sec.blocks.append(f"**The board ran out of memory**: {emu.get('guest_memory_error') or 'MemoryError'}. "
                          f"The simulator predicted: {'fits' if emu.get('predicted_fits') else 'does not fit'}.")
    rows = _agreement_rows(emu)
    sec.blocks.append(Table(["quantity", "emulator (measured)", "simulator (predicted)",
                             "error (predicted vs measured)", f"within ±{AGREEMENT:.0%}"], rows,
                            caption="Measured on the emulated board vs predicted by the simulator"))
    by_step, pred_by_step = emu.get("instructions_by_step") or [], emu.get("predicted_instructions_by_step") or []
    if pred_by_step:
        sec.blocks.append(Image(f"{prefix}emulation_instructions.png",
                                plots.instructions_plot(by_step, pred_by_step, board),
                                "Instructions per training step: emulated board vs simulator"))
    heap_rows = [[label, fmt.nbytes(emu.get(key))] for label, key in (
        ("GC heap on the board", "heap_total_bytes"), ("port's own footprint (code + staging)", "port_footprint_bytes"),
        ("footprint measured on the board", "board_footprint_bytes"), ("failed allocation", "failed_alloc_bytes"))
        if emu.get(key) is not None]
    if heap_rows:
        sec.blocks.append(Table(["heap figure", "bytes"], heap_rows, caption="Heap on the board"))
    ops, meas, pred = emu.get("predicted_ops"), emu.get("op_instructions_step0"), emu.get("predicted_op_instructions_step0")
    if ops and meas and pred and len(ops) == len(meas) == len(pred):
        sec.blocks.append(Table(["op (step 1)", "instructions (board)", "instructions (simulator)", "error"],
                                [[str(o), fmt.count(m), fmt.count(p),
                                  fmt.signed_pct((p - m) / m) if fmt.finite(m) and m else "n/a"]
                                 for o, m, p in zip(ops, meas, pred, strict=True)],
                                caption="Per-op instructions in the first step"))
    losses, host = list(emu.get("losses") or []), list(emu.get("host_losses") or [])
    if losses or host:
        n = min(len(losses), len(host))
        diffs = [abs(a - b) for a, b in zip(losses[:n], host[:n], strict=True)]
        match = emu.get("losses_match_host")
        tol = emu.get("loss_tolerance") or {}
        sec.blocks.append(Table(["steps (board)", "steps (host)", "first loss (board / host)",
                                 "last loss (board / host)", "max |board - host| (nats)", "match"],
                                [[str(len(losses)), str(len(host)),
                                  f"{losses[0]:.4f} / {host[0]:.4f}" if n else "n/a",
                                  f"{losses[n - 1]:.4f} / {host[n - 1]:.4f}" if n else "n/a",
                                  f"{max(diffs):.2e}" if diffs else "n/a",
                                  ({True: "yes", False: "no"}.get(match, "n/a")
                                   + (f" (rtol {tol['rtol']:g})" if match is not None and "rtol" in tol else ""))]],
                                caption="Loss curve: emulated board vs host oracle"))
        sec.blocks.append(Image(f"{prefix}emulation_loss.png", plots.loss_compare_plot(losses, host, board),
                                "Training loss per step on the emulated board and on the host"))
    return sec


def render_emulation(emu: dict, out_dir: str | Path) -> Path:
    """Write the report for one ``edgesim emulate`` run; returns the path of report.html."""
    if not isinstance(emu, dict):
        raise ValueError(f"render_emulation: emu must be the emulate command's dict (got {type(emu).__name__})")
    board = str(emu.get("board") or "board")
    rows = _agreement_rows(emu)
    # a red row below never sits under an "AGREES": every row shown must be within the goal (or n/a)
    red = [r[0] for r in rows if r[-1] == "no"] + (["loss curve vs host"] if emu.get("losses_match_host") is False
                                                   else [])
    verdict = Section("Verdict")
    if _board_oom(emu):
        agree = emu.get("predicted_fits") is False and not red
        verdict.blocks.append(f"**{'AGREES' if agree else 'DISAGREES'}**: the emulated {board} ran out of memory; "
                              f"the simulator predicted {'it would not fit' if emu.get('predicted_fits') is False else 'it would fit'}"
                              f"{'; outside ±' + format(AGREEMENT, '.0%') + ': ' + ', '.join(red) if red else ''}.")
    else:
        measured = [r[0] for r in rows if r[-1] == "yes"]
        agree = bool(measured) and not red
        verdict.blocks.append(f"**{'AGREES' if agree else 'DISAGREES'}**: simulator vs emulated {board} — "
                              + "; ".join(f"{r[0]} within ±{AGREEMENT:.0%}: {r[-1]}" for r in rows)
                              + (f"; loss curve matches the host: {'yes' if emu['losses_match_host'] else 'no'}"
                                 if emu.get("losses_match_host") is not None else "") + ".")
    doc = Document(title=f"edgesim emulation report: {board}",
                   subtitle="the ported MicroPython workload on an emulated board vs the simulator's prediction",
                   sections=[verdict, emulation_section(emu)])
    return write_report(doc, out_dir)


def verification_section(v: dict) -> Section:
    """``edgesim plan --verify``: one training step of the schedule on the device's twin beside the
    simulator's prediction for that step (ports/verify.py's record)."""
    s = Section("Verification on the virtual twin")
    if not v.get("verified"):
        s.blocks.append(f"Not run: {v.get('reason', '')}")
        return s
    s.blocks.append(f"One training step (batch {v['batch']}, techniques {', '.join(v['techniques']) or 'none'}) "
                    f"ran in {v['firmware'].split(';')[0]} on {v['board']}'s twin {v['machine']} (QEMU, "
                    f"-icount shift=0,sleep=off); time = instructions x {v['cycles_per_instruction']:g} CPI at "
                    f"{v['clock_hz'] / 1e6:g} MHz. Serial log: {v['serial_log']}.")
    m, p = v["measured"], v["predicted"]
    if not m["fits"]:
        s.blocks.append(Table(["", "twin (measured)", "simulator (predicted)", "agree"],
                              [["fits", f"no: {m.get('guest_memory_error')}", "yes" if p["fits"] else "no",
                                "yes" if v["agree"] else "no"]]))
        return s
    rows = [_ratio_row("heap peak", m["heap_peak_bytes"], p["heap_peak_bytes"], fmt.nbytes),
            _ratio_row("instructions per training step", m["instructions_per_step"], p["instructions_per_step"],
                       fmt.count),
            _ratio_row("time per training step", m["step_s"], p["step_s"], fmt.seconds)]
    s.blocks.append(Table(["", "twin (measured)", "simulator (predicted)", "error", f"within ±{AGREEMENT:.0%}"],
                          rows, caption="measured vs predicted, one training step"))
    return s
