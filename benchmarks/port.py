"""Native C on the twins: twin x model, the simulator's prediction vs the measurement.

    python benchmarks/port.py [--steps 20] [--profiles DIR] [--boards a,b] [--models x,y] [--json PATH]

Prints per twin and model: instructions per step (predicted, measured, error), RAM peak and flash (same),
whether the losses equal the host's, emulated steps per second; then soft-float / hard-float instructions
per model (mps2-an385's Cortex-M3 without FPU vs the M4F twin). ``--profiles DIR`` reads the profiles from
DIR/<board>-native.toml when present (e.g. written by ``edgesim calibrate --runtime native``).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ports.ctrain.calibrate import HELD_OUT_SPECS  # noqa: E402
from ports.ctrain.errors import DoesNotFit  # noqa: E402
from ports.ctrain.port import port  # noqa: E402
from simulator.cli.common import format_table  # noqa: E402

BOARDS = ("mps2-an385", "stm32f405-pyboard", "stm32l476-nucleo", "stm32f746-disco")
SOFT, HARD = "mps2-an385", "stm32l476-nucleo"


def _pct(x):
    return "-" if x is None else f"{100 * x:+.1f} %"


def main(argv=None) -> int:
    from workloads import zoo

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--profiles", default=None, help="directory with calibrated <board>-native.toml profiles")
    ap.add_argument("--boards", default=",".join(BOARDS))
    ap.add_argument("--models", default=",".join(list(zoo()) + list(HELD_OUT_SPECS)))
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    rows, table = [], []
    for board in args.boards.split(","):
        prof = board
        if args.profiles and (Path(args.profiles) / f"{board}-native.toml").is_file():
            prof = str(Path(args.profiles) / f"{board}-native.toml")
        for model in args.models.split(","):
            print(f"\r{board} x {model} ...{' ' * 30}", end="", file=sys.stderr, flush=True)
            try:
                r = port(prof, model, steps=args.steps, out=tempfile.mkdtemp(prefix="edgesim-bench-port-"))
            except DoesNotFit as e:
                table.append([board, model, "does not fit", e.region, "", "", "", "", "", "", "", ""])
                rows.append({"board": board, "model": model, "fits": False, "region": e.region})
                continue
            rows.append({k: r[k] for k in ("board", "machine", "workload", "instructions_per_step",
                                           "predicted_instructions_per_step", "instructions_error", "ram_peak_bytes",
                                           "predicted_ram_peak_bytes", "ram_error", "flash_bytes",
                                           "predicted_flash_bytes", "flash_error", "losses_match_host",
                                           "emulated_steps_per_s", "float_abi")} | {"fits": True, "model": model})
            table.append([board, model, r["machine"], round(r["instructions_per_step"]),
                          round(r["predicted_instructions_per_step"]), _pct(r["instructions_error"]),
                          r["ram_peak_bytes"], _pct(r["ram_error"]), r["flash_bytes"], _pct(r["flash_error"]),
                          "yes" if r["losses_match_host"] else "NO", f"{r['emulated_steps_per_s']:.1f}"])
    print(file=sys.stderr)
    print(format_table(["board", "model", "twin", "instr/step", "predicted", "error", "RAM (B)", "error",
                        "flash (B)", "error", "losses=host", "steps/s"], table))
    by = {(r["board"], r["model"]): r for r in rows if r.get("fits")}
    ratios = [[m, round(by[(SOFT, m)]["instructions_per_step"] / by[(HARD, m)]["instructions_per_step"], 2)]
              for m in args.models.split(",") if (SOFT, m) in by and (HARD, m) in by]
    if ratios:
        print(f"\nsoft float ({SOFT}, Cortex-M3) / hard float ({HARD} twin, Cortex-M4F) instructions per step:")
        print(format_table(["model", "soft / hard"], ratios))
    ok = [r for r in rows if r.get("fits")]
    if ok:
        def within(key, tol):
            return sum(1 for r in ok if r[key] is not None and abs(r[key]) <= tol)
        print(f"\nwithin tolerance: instructions ±10 % {within('instructions_error', 0.10)}/{len(ok)}, "
              f"RAM ±5 % {within('ram_error', 0.05)}/{len(ok)}, flash ±10 % {within('flash_error', 0.10)}/{len(ok)}, "
              f"losses = host {sum(r['losses_match_host'] for r in ok)}/{len(ok)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "soft_over_hard": ratios}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
