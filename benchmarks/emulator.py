"""Emulator benchmark: the simulator's prediction vs MicroPython on every virtual twin (and the micro:bit v1).

Prints one row per twin x model: heap peak and instructions per step (twin vs simulator, error), whether
the losses match the host's, the wall time per emulated training step, and the simulator's speed-up over
the emulator for the same steps (pricing the host's op trace vs running them in MicroPython under QEMU).
Run: .venv/bin/python benchmarks/emulator.py [--steps N] [--boards B,...] [--workloads W,...]
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ports.boards import load_board, missing_requirements, twin_boards  # noqa: E402
from ports.emulate import emulate, make_mlp_job, make_twin_job  # noqa: E402
from ports.predict import predict_trace  # noqa: E402
from simulator.agreement import AGREEMENT_RELATIVE  # noqa: E402
from simulator.cli.common import format_table  # noqa: E402

ZOO = ("mlp-microbit", "mlp-digits", "lenet-digits", "dscnn-digits", "cnn1d-accel")
MICROBIT = ("bbc-microbit-v1", ("mlp-microbit", "mlp:16-8-10", "mlp:16-24-10"))


def sim_seconds(board, workload: str, steps: int) -> float:
    """Wall time of the simulator's side for the same steps: the host's traced training steps priced by
    the cost and heap models (job construction excluded, as QEMU's boot is excluded on the other side)."""
    job = make_twin_job(workload) if board.twin is not None else make_mlp_job(workload)
    samples = list(itertools.islice(iter(job.labelled_stream()), steps))
    t0 = time.perf_counter()
    predict_trace(board.profile, job, samples)
    return time.perf_counter() - t0


def row(board, workload: str, steps: int) -> list:
    r = emulate(board, workload, steps, log_path=f"edgesim-out/bench-emulator/{board.name}-"
                f"{workload.replace(':', '_')}.log")
    machine = board.twin.name if board.twin is not None else board.machine
    if not r["fits"]:
        return [board.name, machine, workload, "out of memory", f"{r['predicted_heap_peak_bytes']:,} B", "-", "-",
                "-", "-", "does not fit" if not r["predicted_fits"] else "FITS (disagrees)", "-", "-", "-"]
    sim_s = sim_seconds(board, workload, steps) / steps
    emu_s = r["wall_per_step_s"]
    return [board.name, machine, workload, f"{r['heap_peak_bytes']:,} B", f"{r['predicted_heap_peak_bytes']:,} B",
            f"{100 * r['heap_error']:+.1f} %", f"{r['instructions_per_step']:,.0f}",
            f"{r['predicted_instructions_per_step']:,.0f}", f"{100 * r['instructions_error']:+.1f} %",
            "fits" if r["predicted_fits"] else "NO (disagrees)", "yes" if r["losses_match_host"] else "NO",
            f"{1e3 * emu_s:.0f} ms", f"{emu_s / sim_s:.0f}x"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--boards", default=None, help="comma-separated profiles (default: every twin + micro:bit v1)")
    ap.add_argument("--workloads", default=",".join(ZOO), help="comma-separated zoo names or specs for the twins")
    args = ap.parse_args(argv)
    if args.boards:
        boards = [(load_board(b), None) for b in args.boards.split(",")]
    else:
        boards = [(b, None) for b in twin_boards()] + [(load_board(MICROBIT[0]), MICROBIT[1])]
    rows, skipped = [], []
    for board, own in boards:
        missing = missing_requirements(board)
        if missing:
            skipped.append(f"{board.name}: {'; '.join(missing)}")
            continue
        workloads = own or (MICROBIT[1] if board.twin is None else args.workloads.split(","))
        for w in workloads:
            t0 = time.perf_counter()
            rows.append(row(board, w, args.steps))
            print(f"  {board.name} {w}: {time.perf_counter() - t0:.1f} s including boot", file=sys.stderr)
    print(f"MicroPython training under QEMU (-icount shift=0[,sleep=off]) vs the simulator, {args.steps} steps, batch 1")
    print(format_table(["board", "twin", "workload", "heap (twin)", "heap (sim)", "heap err", "instr/step (twin)",
                        "instr/step (sim)", "instr err", "sim: fits", "loss = host", "emu per step",
                        "sim speed-up"], rows))
    errs = [abs(float(r[5].split()[0])) for r in rows if r[5] != "-"] + \
           [abs(float(r[8].split()[0])) for r in rows if r[8] != "-"]
    if errs:
        worst = max(errs)
        within = sum(e <= 100 * AGREEMENT_RELATIVE for e in errs)
        print(f"{within} of {len(errs)} heap/instruction figures within ±{AGREEMENT_RELATIVE:.0%}; worst {worst:.1f} %")
    for s in skipped:
        print(f"skipped {s} (`make test` installs what is missing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
