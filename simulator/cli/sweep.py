"""``edgesim sweep``: run a grid of scenarios, write results.jsonl, the feasibility matrix and a report."""
from __future__ import annotations

import signal
import sys
from pathlib import Path

from simulator.files import emit_json

from .common import Terminated, add_command, exit_codes, format_table

DESCRIPTION = """\
capacity planning: which devices can personalise this model, on which schedule?  Expands a sweep
file (devices x workloads x schedule fields x seeds, plus named schedules), runs every scenario
through the simulator on a local process pool (default) or a Dask cluster (--scheduler), and
streams one line per finished scenario to OUT/results.jsonl. An interrupted sweep (Ctrl-C, a
killed worker) loses nothing finished: rerun with --resume. Writes OUT/matrix.json (device x
schedule: fits, binding constraint, margin; the best schedule per device) and OUT/report.html,
OUT/report.md with the heat map beside them. The grid is checked whole before anything runs; a resumed
sweep reruns the scenarios whose resolved scenario changed since. With --verify, each fitting cell's
training step then runs once on its device's virtual twin (QEMU) on the same runner, and its measured
heap peak and instructions per step go beside the prediction in matrix.json, the summary and the report."""

EXAMPLE = "edgesim sweep simulator/sweeps/boards.toml --workers 2 --out edgesim-out/boards"


def _on_sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
    """SIGTERM (``timeout``, a CI cancel): stops the sweep like Ctrl-C, but exits 143."""
    raise Terminated


MAX_ERRORS_SHOWN = 10


def _run(args) -> int:
    from reports import render_sweep
    from simulator.sweep import MATRIX_FILE, RESULTS_FILE, load_grid, run_sweep, write_matrix

    if args.retry_errors and not args.resume:
        raise ValueError("--retry-errors reruns the error rows of an earlier sweep: it needs --resume "
                         "(and the same --out)")
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out}: is an existing file, not a directory")
    grid = load_grid(args.grid)
    out = Path(args.out) if args.out else Path("edgesim-out") / grid.name
    n = len(grid.points())
    # a kill (SIGTERM) ends the sweep like Ctrl-C: the pool is stopped, finished rows are on disk
    old = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        outcome = run_sweep(grid, out, workers=args.workers, scheduler=args.scheduler,
                            resume=args.resume, progress=not args.quiet, retry_errors=args.retry_errors)
    except KeyboardInterrupt as e:
        from simulator.sweep import ResultsLog

        done = len({r["key"] for r in ResultsLog(out / RESULTS_FILE).read()})
        again = f"edgesim sweep {args.grid} --resume" + (f" --out {args.out}" if args.out else "")
        print(f"edgesim sweep: {'terminated' if isinstance(e, Terminated) else 'interrupted'}: {done} of {n} "
              f"scenarios finished are in {out / RESULTS_FILE}; to continue: {again}", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, old)
    fz = write_matrix(out, outcome.rows)
    if args.verify:
        old = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            fz = verify_cells(grid, fz, outcome.rows, out, args)
        except KeyboardInterrupt as e:
            again = f"edgesim sweep {args.grid} --resume --verify" + (f" --out {args.out}" if args.out else "")
            print(f"edgesim sweep: verification {'terminated' if isinstance(e, Terminated) else 'interrupted'}: "
                  f"the cells that finished are in {out / MATRIX_FILE}; to continue: {again}", file=sys.stderr)
            return 143 if isinstance(e, Terminated) else 130
        finally:
            signal.signal(signal.SIGTERM, old)
    report = render_sweep(outcome.rows, out, title=grid.name) if outcome.rows else None
    any_fit = any(c.get("fits") for d in fz["cells"].values() for c in d.values())
    if args.json:
        emit_json({"grid": grid.name, "out_dir": str(out), "scenarios": n, "ran": outcome.ran,
                   "skipped": outcome.skipped, "stale": outcome.stale, "errors": outcome.errors,
                   "error_rows": [{"key": r["key"], "error": r.get("error")} for r in outcome.rows
                                  if r["status"] != "ok"],
                   "pool_restarts": outcome.pool_restarts,
                   "worker_deaths": outcome.worker_deaths,
                   "results": str(out / RESULTS_FILE), "report": str(report) if report else None,
                   "best": fz["best"], "objective": fz["objective"], "matrix": fz["cells"]}
                  | ({"verification": fz.get("verification")} if args.verify else {}))
    else:
        rows = []
        for d in fz["devices"]:
            b = fz["best"][d]
            n_fit = sum(bool(c.get("fits")) for c in fz["cells"][d].values())
            rows.append([d, f"{n_fit}/{len(fz['cells'][d])}", b["schedule"] if b else "none fits",
                         f"{100 * b['accuracy_gain']:+.1f} pp" if b and b.get("accuracy_gain") is not None else "-",
                         f"{b['energy_per_day_j']:.1f}" if b and b.get("energy_per_day_j") is not None else "-"])
        print(format_table(["device", "schedules that fit", "best schedule", "accuracy gain",
                            "energy per day (J/day)"], rows))
        print(f"\n{n} scenarios ({outcome.ran} run now, {outcome.skipped} already done, {outcome.errors} errors"
              f"{f', {outcome.stale} rerun because their scenario changed' if outcome.stale else ''}"
              f"{f', {outcome.pool_restarts} pool restarts' if outcome.pool_restarts else ''})")
        errs = [r for r in outcome.rows if r["status"] != "ok"]
        for r in errs[:MAX_ERRORS_SHOWN]:
            print(f"error: {r['key']}: {r.get('error')}")
        if len(errs) > MAX_ERRORS_SHOWN:
            print(f"... and {len(errs) - MAX_ERRORS_SHOWN} more error rows in {out / RESULTS_FILE}")
        if args.verify:
            print()
            print(verification_text(fz))
        print(f"objective: {fz['objective']}")
        print(f"results: {out / RESULTS_FILE}\nmatrix:  {out / MATRIX_FILE}\nreport:  {report}")
    return 0 if any_fit else 3


def verify_cells(grid, fz: dict, rows: list[dict], out: Path, args) -> dict:
    """``--verify``: each fitting cell's training step on its device's twin, on the sweep's runner.

    The sweep package (simulator core) must not import ``ports``; the command line sits above both, so
    it hands ``ports.verify.verify_scenario`` to ``simulator.sweep.run_verification`` as a plain callable
    (module-level, so it pickles by reference to a pool or Dask worker). The core keeps the one runner
    (pool or Dask), the per-cell log and the atomic matrix writes; it never learns what a twin is."""
    from ports.verify import verify_scenario
    from simulator.sweep import run_verification

    return run_verification(grid, fz, rows, out, verify_scenario, workers=args.workers, scheduler=args.scheduler,
                            progress=not args.quiet)


def verification_text(fz: dict) -> str:
    """The --verify table: per fitting cell, heap peak and instructions per step measured on the twin
    beside the prediction, and whether both agree within the tolerance."""
    from simulator.agreement import AGREEMENT_RELATIVE
    from simulator.units import human_bytes

    rows, below = [], []
    for d in fz["devices"]:
        for s in fz["schedules"]:
            v = (fz["cells"][d].get(s) or {}).get("verification")
            if v is None:
                continue
            # a cell whose step another cell ran says so (same device always: the device is in the step)
            same = f" (= {str(v['shared_with']).removeprefix(d + ' / ')})" if v.get("shared_with") else ""
            if not v.get("verified"):
                below.append(f"[{len(below) + 1}] {d} / {s}: {v.get('reason')}")
                rows.append([d, s, "-", "-", "-",
                             f"not run: {'no twin' if v.get('no_twin') else 'see'} [{len(below)}]{same}"])
                continue
            m, p = v["measured"], v["predicted"]
            if not m.get("fits"):
                rows.append([d, s, v["machine"], "out of memory", "-", ("agrees" if v["agree"] else "DISAGREES") + same])
                continue
            e = v["errors"]
            rows.append([d, s, v["machine"],
                         f"{human_bytes(m['heap_peak_bytes'])} / {human_bytes(p['heap_peak_bytes'])} "
                         f"({100 * e['heap_peak']:+.1f} %)",
                         f"{m['instructions_per_step']:,.0f} / {p['instructions_per_step']:,.0f} "
                         f"({100 * e['instructions_per_step']:+.1f} %)", ("agrees" if v["agree"] else "DISAGREES") + same])
    if not rows:
        return "verification on the twins: no cell fits, nothing to verify"
    return (f"verification on the twins (one training step of each fitting cell; agree: heap peak and "
            f"instructions per step within ±{AGREEMENT_RELATIVE:.0%}; (= s): the same step as schedule s, one "
            f"twin run for both):\n"
            + format_table(["device", "schedule", "twin", "heap peak twin / simulator (error)",
                            "instructions per step twin / simulator (error)", "verdict"], rows)
            + "".join(f"\n{b}" for b in below) + verification_count(fz.get("verification")))


def verification_count(sm: dict | None) -> str:
    """The pass in one line: "15 cells, 6 twin runs (9 shared a twin run of the same step, ...)"."""
    if not sm:
        return ""
    parts = [f"{sm[k]} {what}" for k, what in (("refused", "of the runs did not run the step: see above"),
                                                ("shared", "shared a twin run of the same step"),
                                                ("verified_earlier", "verified earlier"),
                                                ("no_twin", "without a twin")) if sm.get(k)]
    return (f"\n{sm['cells']} cells, {sm['twin_runs']} twin run{'s' if sm['twin_runs'] != 1 else ''}"
            + (f" ({', '.join(parts)})" if parts else ""))


def register(sub) -> None:
    p = add_command(sub, "sweep", help="capacity-planning sweep over devices x workloads x schedules",
                    description=DESCRIPTION, example=EXAMPLE,
                    exits=exit_codes("0 done (some combination fits: see the matrix)", "3 no combination fits"))
    p.add_argument("grid", metavar="GRID.toml", help="sweep file (see simulator/sweeps/*.toml)")
    p.add_argument("--workers", type=int, default=None, help="local worker processes (default: CPU count)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", default=None,
                   help="run on this Dask scheduler instead of the local pool (needs edgesim[dask])")
    p.add_argument("--resume", action="store_true", help="continue the sweep in --out, skipping finished scenarios")
    p.add_argument("--retry-errors", action="store_true",
                   help="with --resume (required): run the scenarios that ended in an error row again")
    p.add_argument("--out", metavar="DIR", default=None, help="output directory (default: edgesim-out/<grid name>)")
    p.add_argument("--json", action="store_true", help="print the summary and matrix as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--verify", action="store_true",
                   help="after the sweep, run one training step of each fitting cell on its device's virtual twin "
                        "(QEMU, MicroPython 1.25) on the same pool or Dask runner, and add measured vs predicted "
                        "(heap peak, instructions per step) to matrix.json, the summary and the report")
    p.set_defaults(func=_run)
