"""Sweep throughput: scenarios per second on the local process pool and on a Dask LocalCluster (worker
processes), each with 1 and 2 workers, side by side in one run on the same grid, with a free-cores control
measured beside every run. Also checks that every runner gives identical results (the simulator is
deterministic).

Each round runs the four runners in turn on fresh workers: a new pool (forked from the fork server, which
has imported the simulator once) and a new LocalCluster whose workers have imported it too
(``WarmWorker``); those start-ups are timed apart and excluded, so every runner starts from the same
state: modules imported, no pre-trained state cached. A row's wall time is its best round (the least
disturbed by other load on the host); the control column is the median of the controls measured
right after that runner's runs.

    .venv/bin/python benchmarks/sweep.py [--duration-s 21600] [--devices 6] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# one BLAS thread per worker process in every runner, as a Dask worker sets it for itself (OMP/OPENBLAS/
# MKL_NUM_THREADS=1): a pool worker would otherwise spin a second BLAS thread per process, so the rows
# would compare BLAS threading rather than the runners. Set before numpy loads, inherited by the pool.
BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
for _var in BLAS_ENV:
    os.environ.setdefault(_var, "1")

from simulator.sweep import parse_grid, run_sweep  # noqa: E402

DEVICES = ["bbc-microbit-v2", "arduino-nano-33-ble", "rpi-pico", "stm32f405-pyboard", "stm32l476-nucleo",
           "stm32f746-disco"]
TARGET = 1.6     # issue #13: Dask with 2 workers >= 1.6x a 1-worker pool


def make_grid(duration_s: float, n_devices: int) -> dict:
    return {
        "name": "bench",
        "base": "demo",
        "set": {"duration_s": duration_s, "workload.model": "mlp:64-16-10",
                "eval.points": 2},
        "axes": {"device": DEVICES[:n_devices]},
        "schedules": {"light": {"schedule.batch": 4, "schedule.steps": 1}, "default": {},
                      "heavy": {"schedule.batch": 16, "schedule.steps": 4, "schedule.every_n": 16}},
    }


def _burn(n: int) -> int:
    s = 0
    for i in range(n):
        s += i * i
    return s


def free_cores_control(n: int = 2_000_000) -> float:
    """Speed-up of 2 processes over 1 on pure-Python work: what the host can give a 2-worker sweep
    right now (other load on the machine shows up here, not only in the sweep rows)."""
    from concurrent.futures import ProcessPoolExecutor

    t0 = time.perf_counter()
    for _ in range(4):
        _burn(n)
    serial = time.perf_counter() - t0
    with ProcessPoolExecutor(2) as ex:
        ex.submit(int).result()
        t0 = time.perf_counter()
        list(ex.map(_burn, [n] * 4))
        par = time.perf_counter() - t0
    return serial / par


def run_pool(grid, out: Path, workers: int) -> tuple[float, list[dict], float]:
    """(sweep wall time, rows, excluded start-up) on a fresh pool."""
    t0 = time.perf_counter()
    outcome = run_sweep(grid, out, workers=workers, progress=False)
    return time.perf_counter() - t0, outcome.rows, 0.0


def run_dask(grid, out: Path, workers: int) -> tuple[float, list[dict], float]:
    """(sweep wall time, rows, excluded start-up) on a fresh LocalCluster of ``workers`` processes."""
    from dask.distributed import Client, LocalCluster

    from simulator.sweep.dask_worker import warm_workers

    t0 = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
            Client(cl) as client:
        warm_workers(client)
        start = time.perf_counter() - t0
        t0 = time.perf_counter()
        outcome = run_sweep(grid, out, scheduler=cl.scheduler_address, progress=False)
        wall = time.perf_counter() - t0
    return wall, outcome.rows, start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration-s", type=float, default=21600.0, help="simulated time per scenario (s)")
    ap.add_argument("--devices", type=int, default=6, help=f"devices in the grid (max {len(DEVICES)})")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of all runners; each row keeps its best")
    args = ap.parse_args()
    if not 1 <= args.devices <= len(DEVICES):
        ap.error(f"--devices must be in 1..{len(DEVICES)} (got {args.devices})")
    if args.rounds < 1:
        ap.error(f"--rounds must be >= 1 (got {args.rounds})")
    grid = parse_grid(make_grid(args.duration_s, args.devices))
    n = len(grid.points())
    print(f"grid: {args.devices} devices x 3 schedules = {n} scenarios of {args.duration_s:g} s simulated; "
          f"host CPUs: {os.cpu_count()}; {args.rounds} round(s); BLAS threads per worker: "
          f"{os.environ['OPENBLAS_NUM_THREADS']}")
    # start the pool's fork server once, untimed (it imports the simulator and scikit-learn once for
    # every later pool in this process)
    from simulator.sweep.pool import new_pool

    t0 = time.perf_counter()
    ex = new_pool(1)
    ex.submit(int).result()
    ex.shutdown()
    print(f"fork server start-up (excluded below): {time.perf_counter() - t0:.2f} s", file=sys.stderr)
    runners = [("process pool, 1 worker", run_pool, 1), ("process pool, 2 workers", run_pool, 2)]
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        print("dask.distributed missing: pip install 'edgesim[dask]' to add the Dask rows")
    else:
        runners += [("Dask LocalCluster, 1 worker", run_dask, 1), ("Dask LocalCluster, 2 workers", run_dask, 2)]
    walls: dict[str, list[float]] = {r[0]: [] for r in runners}
    controls: dict[str, list[float]] = {r[0]: [] for r in runners}
    starts: dict[str, list[float]] = {r[0]: [] for r in runners}
    rows_of: dict[str, list[dict]] = {}
    busy: dict[str, list[float]] = {r[0]: [] for r in runners}    # per round: sum of the rows' own times
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            for i, (label, fn, w) in enumerate(runners):
                print(f"round {rnd + 1}/{args.rounds}: {label} ...", file=sys.stderr, flush=True)
                wall, rows, start = fn(grid, Path(tmp) / f"r{rnd}-{i}", w)
                walls[label].append(wall)
                starts[label].append(start)
                rows_of.setdefault(label, rows)
                busy[label].append(sum(r.get("elapsed_s") or 0.0 for r in rows))
                controls[label].append(free_cores_control())
    base = min(walls[runners[0][0]])
    print(f"\n{'runner':30s} {'best wall (s)':>13s} {'scenarios/s':>12s} {'x 1-worker pool':>16s} "
          f"{'all rounds (s)':>20s} {'in scenarios (s)':>16s} {'start-up (s)':>12s} {'free-cores control':>19s}")
    for label, _, _ in runners:
        best = min(walls[label])
        st = statistics.median(starts[label])
        print(f"{label:30s} {best:13.2f} {n / best:12.2f} {base / best:15.2f}x "
              f"{' '.join(f'{w:.2f}' for w in walls[label]):>20s} "
              f"{busy[label][walls[label].index(best)]:16.2f} {(f'{st:.2f}' if st else '-'):>12s} {statistics.median(controls[label]):18.2f}x")
    print("in scenarios: the sum of the scenarios' own run times in the best round (inside the workers; the "
          "rest of the wall time x workers is waiting, start-up and overhead)")
    print("start-up: cluster start and worker warm-up, excluded from the wall time (the pool's fork server "
          "likewise); free-cores control: 2 processes of pure-Python work vs 1, measured right after each run "
          "(about 2x on two idle cores; lower means other load on the host, which caps a sweep's speed-up too)")
    ref = {r["key"]: json.dumps(r.get("result"), sort_keys=True) for r in rows_of[runners[0][0]]}
    same = all({r["key"]: json.dumps(r.get("result"), sort_keys=True) for r in rows} == ref
               for rows in rows_of.values())
    errors = sum(r["status"] != "ok" for rows in rows_of.values() for r in rows)
    print(f"identical results across runners: {'yes' if same else 'NO'}; error rows: {errors}")
    dask2 = "Dask LocalCluster, 2 workers"
    if dask2 in walls:
        sp = base / min(walls[dask2])
        print(f"Dask with 2 workers: {sp:.2f}x a 1-worker pool (target >= {TARGET}x): "
              f"{'MET' if sp >= TARGET else 'NOT MET'} (free-cores control beside it: "
              f"{statistics.median(controls[dask2]):.2f}x)")
    return 0 if same and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
