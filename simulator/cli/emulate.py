"""``edgesim emulate`` and ``edgesim calibrate``: the workload on a QEMU-emulated board (docs/architecture.md §4)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from simulator.agreement import AGREEMENT_RELATIVE as AGREEMENT
from simulator.files import emit_json, jsonable, write_atomic

from .common import EXIT_INTERNAL, EXIT_NOFIT, EXIT_OK, add_command, exit_codes, finite_float, format_table


def _write_json_atomic(obj: dict, path: Path) -> None:
    write_atomic(path, json.dumps(obj, sort_keys=True, indent=2, default=jsonable) + "\n")


def _board(name: str):
    from ports.boards import load_board, missing_requirements

    board = load_board(name)
    missing = missing_requirements(board)
    if missing:
        from ports.boards import INSTALL_HINT
        raise FileNotFoundError(f"cannot emulate {board.name}: {'; '.join(missing)}: {INSTALL_HINT}")
    return board


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f} %"


def _not_a_file(flag: str, path: str | None) -> None:
    """An output directory given as a path that is a file is refused before any work (exit 2)."""
    if path and Path(path).exists() and not Path(path).is_dir():
        raise ValueError(f"{flag} {path}: is an existing file, not a directory")


def _emulate(args) -> int:
    from ports.emulate import emulate
    from ports.errors import PortError

    _not_a_file("--out", args.out)
    board = _board(args.board)
    out_dir = Path(args.out) if args.out else Path("edgesim-out") / "emulation" / \
        f"{board.name}-{args.workload.replace(':', '_')}"
    log = out_dir / "serial.log"
    try:
        res = emulate(board, args.workload, args.steps, seed=args.seed, lr=args.lr, momentum=args.momentum,
                      log_path=log, progress=True)  # progress goes to stderr: --json keeps stdout to the one object
    except PortError as e:
        print(f"edgesim emulate: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_INTERNAL
    _write_json_atomic(res, out_dir / "emulation.json")
    report = None
    try:
        from reports import render_emulation
    except ImportError:
        render_emulation = None
    if render_emulation is not None:
        report = render_emulation(res, out_dir)
    if args.json:
        emit_json(res)
    else:
        _print_emulation(res, out_dir, report)
    return EXIT_OK if res["fits"] else EXIT_NOFIT


def _print_emulation(res: dict, out_dir: Path, report) -> None:
    print(f"{res['workload']} on emulated {res['board']} ({res['firmware']}), {res['steps']} steps, batch 1")
    if not res["fits"]:
        print(f"the board ran out of memory: {res['guest_memory_error']}")
        print(f"the simulator predicted: {'fits' if res['predicted_fits'] else 'does not fit'} "
              f"(heap peak {res['predicted_heap_peak_bytes']} B of a {res['heap_total_bytes']} B GC heap)")
    else:
        rows = [
            ["heap peak (bytes)", res["heap_peak_bytes"], res["predicted_heap_peak_bytes"], _pct(res["heap_error"])],
            ["instructions per step", round(res["instructions_per_step"]), round(res["predicted_instructions_per_step"]),
             _pct(res["instructions_error"])],
            ["device time per step (ms)", round(1e3 * res["device_seconds_per_step"], 2),
             round(1e3 * res["predicted_device_seconds_per_step"], 2), _pct(res["instructions_error"])],
        ]
        print(format_table(["", "emulator", "simulator", "error"], rows))
        ops = res.get("predicted_ops") or []
        if len(ops) == len(res.get("op_instructions_step0", [])):
            print("\nper op, step 0 (instructions):")
            print(format_table(["op", "emulator", "simulator", "error"],
                               [[name, b, round(p), _pct((p - b) / b if b else None)] for name, b, p in
                                zip(ops, res["op_instructions_step0"], res["predicted_op_instructions_step0"],
                                    strict=True)]))
        print(f"\nloss per step (nats)     board vs host (float32, rtol {res['loss_tolerance']['rtol']:g}): "
              f"{'match' if res['losses_match_host'] else 'DIFFER'} (max |diff| {res['loss_max_abs_diff']:.2e})")
        n = len(res["losses"])
        show = list(range(n)) if n <= 12 else list(range(6)) + list(range(n - 6, n))
        print(format_table(["step", "board", "host"], [[i, f"{res['losses'][i]:.5f}", f"{res['host_losses'][i]:.5f}"]
                                                       for i in show]))
        if res.get("loss_falls") is not None:
            print(f"loss {'falls' if res['loss_falls'] else 'does not fall'} (mean of the second half vs the first)")
        ok = abs(res["heap_error"]) <= AGREEMENT and abs(res["instructions_error"]) <= AGREEMENT
        print(f"\nagreement within ±{AGREEMENT:.0%}: {'yes' if ok else 'NO'}; "
              f"emulation wall time {res['wall_per_step_s'] * 1e3:.0f} ms per step")
    print(f"results: {out_dir / 'emulation.json'}" + (f"; report: {report}" if report else ""))


def _calibrate(args) -> int:
    if args.write:              # checked before the board boots: a calibration takes minutes
        w = Path(args.write)
        if w.is_dir():
            raise ValueError(f"--write {args.write}: is a directory; give the profile file to write")
        if w.exists():
            raise ValueError(f"--write {args.write}: already exists; choose another path (or --in-place to "
                             "update the board's own profile)")
        if w.parent.exists() and not w.parent.is_dir():
            raise ValueError(f"--write {args.write}: {w.parent} is a file, not a directory")
    if args.runtime == "native":
        from .port import calibrate_native
        return calibrate_native(args)
    from ports.boards import load_board
    from ports.calibrate import calibrate
    from ports.calibration_profile import write_calibration
    from ports.errors import PortError

    board = _board(args.board)
    if args.in_place and args.write:
        raise ValueError("calibrate: give --write PATH or --in-place, not both")
    dst = Path(board.profile.path) if args.in_place else Path(args.write) if args.write else \
        Path("edgesim-out") / "calibration" / f"{board.name}.toml"
    try:
        res = calibrate(board, log_path=dst.parent / f"{board.name}-calibration.serial.log" if not args.in_place
                        else None, progress=True)
    except PortError as e:
        print(f"edgesim calibrate: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_INTERNAL
    path = write_calibration(board.profile.path, dst, res)
    res["written_to"] = str(path)
    load_board(path)      # the written profile loads
    if args.json:
        emit_json(res)
        return EXIT_OK
    rt = board.profile.runtime_for("micropython")
    on = f"twin {res['machine']}, heap {res['heap_bytes']:,} B" if res.get("heap_bytes") else f"QEMU -M {res['machine']}"
    print(f"calibrated {board.name} [runtime.micropython] on {on}: {res['firmware']}")
    cpi = res["cycles_per_instruction"]
    print(f"\nper-kind costs (cycles = instructions x {cpi:g} CPI): cycles = overhead + MACs x a + bytes read x b "
          "+ bytes written x c")
    print(format_table(["kind", "overhead (cycles)", "a (cycles/MAC)", "b (cycles/B read)", "c (cycles/B written)",
                        "ops", "residual rms", "residual max"],
                       [[k, f"{c['overhead_cycles']:.0f}", f"{c['cycles_per_mac']:.1f}", f"{c['cycles_per_byte_read']:.2f}",
                         f"{c['cycles_per_byte_written']:.2f}", res["kind_residuals"][k]["ops"],
                         _pct(res["kind_residuals"][k]["residual_rms"]).lstrip("+"),
                         _pct(res["kind_residuals"][k]["residual_max_abs"]).lstrip("+")]
                        for k, c in res["kind_costs"].items()]))
    print("\nper op (micro-benchmarks; residual = (fit - measured) / measured):")
    print(format_table(["micro-benchmark", "kind", "MACs", "instructions", "fit", "residual"],
                       [[b["label"], b["kind"], b["macs"], b["instructions"], round(b["fit_cycles"] / cpi),
                         _pct(b["residual"])] for b in res["benchmarks"]]))
    ok = "acceptable" if res["acceptable"] else "NOT acceptable"
    print(f"op residuals: rms {100 * res['residual_rms']:.1f} %, max {100 * res['residual_max_abs']:.1f} % "
          f"({ok}: rms <= {100 * res['residual_rms_acceptable']:.0f} % is)")
    rows = [[k, getattr(rt, k), v] for k, v in res["coefficients"].items()]
    if res.get("heap_bytes"):
        rows.append(["port_heap_bytes", rt.port_heap_bytes, res["footprint"]["port_bytes"]])
    else:
        rows.append(["ram_reserved_bytes", rt.ram_reserved_bytes, res["ram_reserved_bytes"]])
    print("\none-overhead figures (used for kinds without a per-kind cost):")
    print(format_table(["figure", "before", "fitted"], rows))
    f = res["footprint"]
    print(f"port footprint: {f['port_bytes']:,} B of the {f['heap_total_bytes']:,} B GC heap beside the workload's "
          f"tensors (device code loaded, no model: {f['base_alloc_bytes']:,} B)")
    print(f"written to {path}")
    return EXIT_OK


def register(sub) -> None:
    p = add_command(sub, "emulate", help="run training on a QEMU-emulated board beside the simulator's prediction",
                    description="Run a workload's training in MicroPython on a QEMU-emulated board and print,\n"
                                "beside the simulator's prediction for the same board, workload and batch: heap peak,\n"
                                "instructions per step (guest time under -icount shift=0), and the loss curve against\n"
                                "the host's.",
                    example="edgesim emulate --board bbc-microbit-v1 --workload mlp:16-12-10 --steps 20",
                    exits=exit_codes("0 the workload trained on the emulated board", "3 the board ran out of memory",
                                     "1 also when the emulator fails (the message names the serial log)"))
    p.add_argument("--board", default="bbc-microbit-v1", help="profile name or path with an [emulator] table")
    p.add_argument("--workload", default="mlp-microbit",
                   help="zoo name or spec (a twin: any spec; the micro:bit v1: mlp: specs)")
    p.add_argument("--steps", type=int, default=10, help="training steps (batch 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the host job (weights, data order)")
    p.add_argument("--lr", type=finite_float, default=None,
                   help="SGD learning rate (default: the micro:bit port 0.05, a twin the workload's default)")
    p.add_argument("--momentum", type=finite_float, default=None,
                   help="SGD momentum (twins only; default 0.9; the micro:bit port trains without)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--out", default=None, help="directory for emulation.json, the serial log and the report "
                                               "(default ./edgesim-out/emulation/BOARD-WORKLOAD/)")
    p.set_defaults(func=_emulate)
    c = add_command(sub, "calibrate", help="fit a profile's micropython cost coefficients on the emulated board",
                    description="Run micro-benchmarks on the emulated board (one kernel per op kind at several\n"
                                "sizes, an empty op, an empty training step), fit the simulator's micropython cost\n"
                                "coefficients and the port's heap footprint, print the fit and its residuals, and\n"
                                "write them into a profile.",
                    example="edgesim calibrate --board bbc-microbit-v1 --write my-microbit.toml",
                    exits=exit_codes("0 calibrated and written",
                                     "1 also when the emulator fails (the message names the serial log)"))
    c.add_argument("--board", default="bbc-microbit-v1", help="profile name or path with an [emulator] table")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--write", default=None, metavar="PATH",
                   help="write the calibrated profile here (default ./edgesim-out/calibration/BOARD.toml)")
    g.add_argument("--in-place", action="store_true", help="update the profile file itself")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c.add_argument("--runtime", choices=("micropython", "native"), default="micropython",
                   help="native: per-kind instruction costs of generated C on the board's twin (edgesim port)")
    c.set_defaults(func=_calibrate)
