"""``edgesim port``: the workload as generated C in the planner's arena on the board's twin (issue #11)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from simulator.files import emit_json, jsonable, write_atomic

from .common import EXIT_INTERNAL, EXIT_NOFIT, EXIT_OK, add_command, format_table


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f} %"


def _techniques(items: list[str] | None) -> dict:
    """``--techniques fused_update etf update=last-k last_k=2`` -> a Techniques dict."""
    out: dict = {}
    for item in items or []:
        key, eq, val = item.partition("=")
        if not eq:
            out[key] = True
            continue
        if val.lower() in ("true", "false"):
            out[key] = val.lower() == "true"
            continue
        try:
            out[key] = int(val)
        except ValueError:
            try:
                out[key] = float(val)
            except ValueError:
                out[key] = val
    return out


def _port(args) -> int:
    from ports.ctrain.errors import DoesNotFit
    from ports.ctrain.port import default_out, port
    from ports.errors import PortError

    out = Path(args.out) if args.out else default_out(args.board, args.workload)
    try:
        res = port(args.board, args.workload, steps=args.steps, batch=args.batch,
                   techniques=_techniques(args.techniques), seed=args.seed, out=out, machine=args.twin,
                   progress=not args.json)
    except DoesNotFit as e:
        print(f"edgesim port: does not fit ({e.region}): {e.message}", file=sys.stderr)
        if args.json:
            emit_json({"board": args.board, "workload": args.workload, "fits": False, "region": e.region,
                       "message": e.message})
        return EXIT_NOFIT
    except FileNotFoundError as e:   # toolchain or QEMU missing: how to install it
        print(f"edgesim port: {e}", file=sys.stderr)
        return EXIT_INTERNAL
    except PortError as e:
        print(f"edgesim port: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_INTERNAL
    res["fits"] = True
    write_atomic(out / "port.json", json.dumps(res, sort_keys=True, indent=2, default=jsonable) + "\n")
    if args.json:
        emit_json(res)
    else:
        _print(res, out)
    return EXIT_OK


def _print(res: dict, out: Path) -> None:
    print(f"{res['workload']} ({res['spec']}) as C on {res['board']}'s twin {res['machine']} "
          f"({res['core']}), {res['steps']} steps, batch {res['batch']}")
    rows = [
        ["instructions per step", round(res["instructions_per_step"]), round(res["predicted_instructions_per_step"]),
         _pct(res["instructions_error"])],
        ["RAM peak (bytes)", res["ram_peak_bytes"], res["predicted_ram_peak_bytes"], _pct(res["ram_error"])],
        ["flash (bytes)", res["flash_bytes"], res["predicted_flash_bytes"], _pct(res["flash_error"])],
        ["device time per step (ms)", round(1e3 * res["device_seconds_per_step"], 3),
         round(1e3 * res["predicted_device_seconds_per_step"], 3), _pct(res["instructions_error"])],
    ]
    print(format_table(["", "twin", "simulator", "error"], rows))
    print(f"RAM = .data {res['data_bytes']} B + .bss {res['bss_bytes']} B + arena {res['arena_bytes']} B "
          f"(planner {res['planned_arena_bytes']} B, lower bound {res['lower_bound_bytes']} B) + stack peak "
          f"{res['stack_peak_bytes']} B, of {res['ram_budget_bytes']} B")
    print(f"flash = text+rodata {res['text_bytes']} B (weights {res['weights_bytes']} B) + .data "
          f"{res['data_bytes']} B, of {res['flash_budget_bytes']} B")
    print(f"device time at {res['cycles_per_instruction']} cycles per instruction "
          f"({res['cycles_per_instruction_source'] or 'no source given'})")
    tol = res["loss_tolerance"]
    print(f"\nloss per step (nats), twin vs host (rtol {tol['rtol']:g}, atol {tol['atol']:g}): "
          f"{'match' if res['losses_match_host'] else 'DIFFER'} (max |diff| {res['loss_max_abs_diff']:.2e})")
    n = len(res["losses"])
    show = list(range(n)) if n <= 10 else list(range(5)) + list(range(n - 5, n))
    print(format_table(["step", "twin", "host"], [[i, f"{res['losses'][i]:.6g}", f"{res['host_losses'][i]:.6g}"]
                                                 for i in show]))
    t = res["tolerances"]
    print(f"\nagreement (instructions ±{t['instructions']:.0%}, RAM ±{t['ram']:.0%}, flash ±{t['flash']:.0%}, "
          f"losses): {'yes' if res['agrees'] else 'NO'}; {res['emulated_steps_per_s']:.1f} emulated steps/s")
    print(f"results: {out / 'port.json'}; sources, ELF and arena map in {out}")


def register(sub) -> None:
    p = add_command(sub, "port", help="run the workload as generated C on the board's twin and compare",
                    description="Generate C for one training step (every tensor at the memory planner's offset in "
                                "one static arena), build it for the board's core, run it on the board's QEMU twin "
                                "and compare losses with the host and instructions, RAM and flash with the "
                                "simulator's native prediction. Exit 3 when it does not fit.",
                    example="edgesim port --board stm32f405-pyboard --workload lenet-digits --steps 20 --json")
    p.add_argument("--board", required=True, help="profile name or path whose [emulator] table names a twin")
    p.add_argument("--workload", required=True, help="zoo name or model spec (e.g. cnn:8x8x1-c4k3-p2-d10)")
    p.add_argument("--steps", type=int, default=20, help="training steps")
    p.add_argument("--batch", type=int, default=1, help="samples per step")
    p.add_argument("--techniques", nargs="*", metavar="NAME[=VALUE]",
                   help="training techniques the C implements: fused_update, etf, update=bias|last-k, last_k=K")
    p.add_argument("--seed", type=int, default=0, help="seed of the host job (weights, data order)")
    p.add_argument("--twin", default=None, help="twin machine to use instead of the profile's (ports/twin/machines.py)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--out", default=None, help="directory for port.json, the generated sources, the ELF and the "
                                               "arena map (default edgesim-out/port/BOARD-WORKLOAD)")
    p.set_defaults(func=_port)


def calibrate_native(args) -> int:
    """``edgesim calibrate --board B --runtime native``: fit, print the residuals, write the profile."""
    from device_profiles.loader import load_profile
    from ports.ctrain.calibrate import calibrate, write_profile
    from ports.errors import PortError

    profile = load_profile(args.board)
    if args.in_place and args.write:
        raise ValueError("calibrate: give --write PATH or --in-place, not both")
    dst = Path(profile.path) if args.in_place else Path(args.write) if args.write else \
        Path("edgesim-out") / "calibration" / f"{profile.name}-native.toml"
    try:
        res = calibrate(profile, progress=not args.json)
    except FileNotFoundError as e:
        print(f"edgesim calibrate: {e}", file=sys.stderr)
        return EXIT_INTERNAL
    except PortError as e:
        print(f"edgesim calibrate: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_INTERNAL
    res["written_to"] = str(write_profile(res, dst))
    if args.json:
        emit_json({k: v for k, v in res.items() if k != "rows"})
        return EXIT_OK
    cpi = res["cycles_per_instruction"]
    print(f"calibrated {profile.name} [runtime.native] on twin {res['machine']} ({res['compiler']})")
    print(format_table(["op kind", "overhead (instr)", "per MAC (instr)", "per byte read", "per byte written"],
                       [[k, round(c["overhead"], 1), round(c["per_mac"], 3), round(c["per_byte_read"], 3),
                         round(c["per_byte_written"], 3)] for k, c in res["instruction_costs"].items()]))
    print(f"\nper op: residual rms {100 * res['op_residual_rms']:.1f} %, max {100 * res['op_residual_max']:.0f} %; "
          f"per micro-benchmark step (fit - measured) / measured:")
    print(format_table(["micro-benchmark", "instructions", "fit", "residual"],
                       [[p["spec"], round(p["measured"]), round(p["fitted"]), _pct(p["residual"])]
                        for p in res["programs"]]))
    ok = res["step_residual_max"] <= 0.10
    print(f"\nstep residuals {'within' if ok else 'NOT within'} ±10 % (max {100 * res['step_residual_max']:.1f} %): "
          f"{'acceptable' if ok else 'not acceptable'}")
    print(f"runtime RAM besides the arena {res['ram_reserved_bytes']} B; code flash {res['flash_reserved_bytes']} B "
          f"(range {res['code_flash_bytes_range'][0]}-{res['code_flash_bytes_range'][1]} B)")
    print(f"cycles = instructions x {cpi} CPI (core.cycles_per_instruction, an estimate)")
    print(f"written to {res['written_to']}")
    return EXIT_OK
