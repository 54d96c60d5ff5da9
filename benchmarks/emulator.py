"""Emulator benchmark: the simulator's prediction vs the QEMU-emulated micro:bit, per MLP spec.

Prints, per spec: heap peak and instructions per step (board vs simulator, error), whether the loss
curve matches the host's, the wall time per emulated training step, and the simulator's speed-up over
the emulator for the same steps (pricing the host's op trace vs running them in MicroPython on QEMU).
Run: .venv/bin/python benchmarks/emulator.py [--steps N] [SPEC ...]
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ports.boards import load_board, missing_requirements  # noqa: E402
from ports.emulate import emulate, make_mlp_job  # noqa: E402
from ports.predict import predict_trace  # noqa: E402
from simulator.cli.common import format_table  # noqa: E402

# the zoo's micro:bit workload first, then specs nobody calibrated on (calibration runs micro-benchmarks only)
FITTING = ("mlp-microbit", "mlp:16-8-10", "mlp:16-10-10", "mlp:16-6-10", "mlp:16-10-8-10", "mlp:16-8-8-10")
TOO_BIG = ("mlp:16-24-10",)


def sim_seconds(board, workload: str, steps: int) -> float:
    """Wall time of the simulator's side for the same steps: the host's traced training steps priced by
    the cost and heap models (job construction excluded, as QEMU's boot is excluded on the other side)."""
    job = make_mlp_job(workload)
    samples = list(itertools.islice(iter(job.labelled_stream()), steps))
    t0 = time.perf_counter()
    predict_trace(board.profile, job, samples)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("specs", nargs="*", default=list(FITTING + TOO_BIG))
    args = ap.parse_args(argv)
    board = load_board("bbc-microbit-v1")
    missing = missing_requirements(board)
    if missing:
        print(f"emulator benchmark skipped: {'; '.join(missing)} (`make test` installs them)")
        return 0
    sim_seconds(board, "mlp-microbit", 1)       # warm-up: imports, data set, pre-training cache
    rows = []
    for spec in args.specs:
        t0 = time.perf_counter()
        r = emulate(board, spec, args.steps, log_path=f"edgesim-out/bench-emulator/{spec.replace(':', '_')}.log")
        wall = time.perf_counter() - t0
        if not r["fits"]:
            rows.append([spec, "OOM", r["predicted_heap_peak_bytes"], "-", "-", "-", "-",
                         "no" if not r["predicted_fits"] else "YES (disagrees)", "-", "-", "-"])
            continue
        sim_s = sim_seconds(board, spec, args.steps) / args.steps
        emu_s = r["wall_per_step_s"]
        rows.append([spec, r["heap_peak_bytes"], r["predicted_heap_peak_bytes"], f"{100 * r['heap_error']:+.1f} %",
                     round(r["instructions_per_step"]), round(r["predicted_instructions_per_step"]),
                     f"{100 * r['instructions_error']:+.1f} %", "yes" if r["predicted_fits"] else "NO (disagrees)",
                     "yes" if r["losses_match_host"] else "NO", f"{1e3 * emu_s:.0f}", f"{emu_s / sim_s:.0f}x"])
        print(f"  {spec}: {wall:.1f} s including boot", file=sys.stderr)
    print(f"bbc-microbit-v1 under QEMU (-icount shift=0), {args.steps} training steps per spec, batch 1")
    print(format_table(["spec", "heap B (board)", "heap B (sim)", "heap err", "instr/step (board)",
                        "instr/step (sim)", "instr err", "sim: fits", "loss = host", "emu ms/step",
                        "sim speed-up"], rows))
    errs = [abs(float(r[3].split()[0])) for r in rows if r[1] != "OOM"] + \
           [abs(float(r[6].split()[0])) for r in rows if r[1] != "OOM"]
    if errs:
        print(f"worst prediction error over the specs that fit: {max(errs):.1f} % (target 10 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
