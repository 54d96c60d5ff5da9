"""The sim-vs-emulator part of a report: what the simulator predicted for a board beside what the
emulated board measured (heap peak, instructions per step, the loss curve against the host's)."""
from __future__ import annotations

from pathlib import Path

from . import fmt, plots
from .document import Document, Image, Section, Table, write_report

AGREEMENT = 0.10   # DESIGN.md goal: sim vs QEMU within +-10 %


def _ratio_row(what: str, measured, predicted, show) -> list[str]:
    if plots.finite(measured) and plots.finite(predicted) and measured:
        err = (predicted - measured) / measured
        ok = "yes" if abs(err) <= AGREEMENT else "no"
        return [what, show(measured), show(predicted), fmt.signed_pct(err), ok]
    return [what, show(measured), show(predicted), "n/a", "n/a"]


def emulation_section(emu: dict, prefix: str = "") -> Section:
    """A section comparing the emulator's measurements with the simulator's predictions."""
    board = str(emu.get("board") or "board")
    sec = Section("Simulator vs emulator")
    sec.blocks.append(f"Board **{board}** running firmware {emu.get('firmware') or 'n/a'}. Agreement goal: "
                      f"the prediction within ±{AGREEMENT:.0%} of the measurement.")
    sec.blocks.append(Table(
        ["quantity", "emulator (measured)", "simulator (predicted)", "error (predicted vs measured)",
         f"within ±{AGREEMENT:.0%}"],
        [_ratio_row("heap peak", emu.get("heap_peak_bytes"), emu.get("predicted_heap_peak_bytes"), fmt.nbytes),
         _ratio_row("instructions per training step", emu.get("instructions_per_step"),
                    emu.get("predicted_instructions_per_step"), fmt.count)],
        caption="Measured on the emulated board vs predicted by the simulator"))
    losses, host = list(emu.get("losses") or []), list(emu.get("host_losses") or [])
    if losses or host:
        n = min(len(losses), len(host))
        diffs = [abs(a - b) for a, b in zip(losses[:n], host[:n], strict=True)]
        sec.blocks.append(Table(["steps (board)", "steps (host)", "first loss (board / host)",
                                 "last loss (board / host)", "max |board - host| (nats)"],
                                [[str(len(losses)), str(len(host)),
                                  f"{losses[0]:.4f} / {host[0]:.4f}" if n else "n/a",
                                  f"{losses[n - 1]:.4f} / {host[n - 1]:.4f}" if n else "n/a",
                                  f"{max(diffs):.2e}" if diffs else "n/a"]],
                                caption="Loss curve: emulated board vs host oracle"))
        sec.blocks.append(Image(f"{prefix}emulation_loss.png", plots.loss_compare_plot(losses, host, board),
                                "Training loss per step on the emulated board and on the host"))
    return sec


def render_emulation(emu: dict, out_dir: str | Path) -> Path:
    """Write the report for one ``edgesim emulate`` run; returns the path of report.html."""
    if not isinstance(emu, dict):
        raise ValueError(f"render_emulation: emu must be the emulate command's dict (got {type(emu).__name__})")
    board = str(emu.get("board") or "board")
    heap_ok = _ratio_row("", emu.get("heap_peak_bytes"), emu.get("predicted_heap_peak_bytes"), str)[-1]
    ins_ok = _ratio_row("", emu.get("instructions_per_step"), emu.get("predicted_instructions_per_step"), str)[-1]
    verdict = Section("Verdict")
    agree = heap_ok == "yes" and ins_ok == "yes"
    verdict.blocks.append(f"**{'AGREES' if agree else 'DISAGREES'}**: simulator vs emulated {board} — heap peak "
                          f"within ±{AGREEMENT:.0%}: {heap_ok}; instructions per step within ±{AGREEMENT:.0%}: "
                          f"{ins_ok}.")
    doc = Document(title=f"edgesim emulation report: {board}",
                   subtitle="the ported MicroPython workload on an emulated board vs the simulator's prediction",
                   sections=[verdict, emulation_section(emu)])
    return write_report(doc, out_dir)
